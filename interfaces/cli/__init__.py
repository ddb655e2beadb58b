"""The ``tafsir`` command: one module per group of commands, sharing ``interfaces.cli.common``.

Settings are built here, once per command, and passed down. Each module imports its heavy dependencies
(torch, the store, the trainer) inside the command, so ``tafsir --help`` and a search stay quick.
"""

from __future__ import annotations

import typer

from interfaces.cli import ingest, migrate, query, serve, train

app = typer.Typer(
    name="tafsir",
    help="Quran tafsir in Qdrant for chatbots: ingest, inspect and search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(ingest.ingest)
app.command()(query.status)
app.command()(query.search)
app.command()(query.editions)
app.command()(ingest.remove)
app.command()(migrate.migrate)
app.command(name="eval")(query.evaluate)
app.add_typer(query.model_app, name="model")
app.command()(train.train)
app.command()(serve.serve)
app.command()(serve.mcp)


def main() -> None:
    app()
