"""The ``gonogo`` command line (SPEC §7). Each group of commands lives in ``app/commands``."""

from __future__ import annotations

import typer

cli = typer.Typer(
    name="gonogo",
    help="Automated go/no-go gates for deployments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    from app.commands import register_all

    register_all(cli)
    cli()
