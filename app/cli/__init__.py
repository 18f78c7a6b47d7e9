"""The ``gonogo`` command line (``docs/api.md``). Each group of commands is a module here."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer import rich_utils
from typer._click.exceptions import ClickException, UsageError

# Click's usage errors exit 2, which ``gonogo check`` uses for rollback: a mistyped flag in a
# pipeline, or a command given nothing to do (its help is shown), must read as an error (3),
# never as a decision.
EXIT_USAGE = 3

cli = typer.Typer(
    name="gonogo",
    help="Automated go/no-go gates for deployments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Every command's subcommands inherit these from the root context.
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from app.core.version import package_version

        typer.echo(f"gonogo {package_version()}")  # plain text: never styled as a number
        raise typer.Exit()


@cli.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            is_eager=True,
            callback=_print_version,
            help="print gonogo's version and exit",
        ),
    ] = False,
) -> None:
    """Automated go/no-go gates for deployments."""


def main() -> None:
    from app.cli.commands import register_all

    register_all(cli)
    try:
        code = cli(standalone_mode=False)
    except ClickException as error:
        rich_utils.rich_format_error(error)
        sys.exit(EXIT_USAGE if isinstance(error, UsageError) else error.exit_code)
    except typer.Abort:
        rich_utils.rich_abort_error()
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
