"""The ``gonogo`` command line (``docs/api.md``). Each group of commands is a module here."""

from __future__ import annotations

import sys

import typer
from typer import rich_utils
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

# Click's usage errors exit 2, which ``gonogo check`` uses for rollback: a mistyped flag in a
# pipeline must read as an error (3), never as a decision.
EXIT_USAGE = 3

cli = typer.Typer(
    name="gonogo",
    help="Automated go/no-go gates for deployments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    from app.cli.commands import register_all

    register_all(cli)
    try:
        code = cli(standalone_mode=False)
    except ClickException as error:
        rich_utils.rich_format_error(error)
        usage = isinstance(error, UsageError) and not isinstance(error, NoArgsIsHelpError)
        sys.exit(EXIT_USAGE if usage else error.exit_code)
    except typer.Abort:
        rich_utils.rich_abort_error()
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
