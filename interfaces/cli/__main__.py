"""``python -m interfaces.cli``: the ``tafsir`` command."""

from interfaces.cli import main

main()
