"""The faces people and programs touch: the ``tafsir`` command (``interfaces.cli``) and the HTTP API
(``interfaces.http``). They stand on the two paths (``ingest``, ``retriever``, ``training``) and on the ground
floor (``services``); nothing below imports them (docs/ARCHITECTURE.md).
"""
