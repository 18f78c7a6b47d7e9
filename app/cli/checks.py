"""``gonogo checks``: list, show, follow, sign off, decide and cancel checks on a server.

Exit codes: 0 done (``attach``: 0 go, 1 no_go, 2 rollback), 3 an error or a cancelled check.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from app.cli.check import EXIT_ERROR, criteria_table, follow_to_the_end, report_final
from app.cli.client import ClientError, GonogoClient
from app.cli.options import JsonOption, ServerOption, TokenOption
from app.cli.output import console as make_console
from app.cli.output import print_json

EXIT_OK = 0

checks_cli = typer.Typer(
    name="checks",
    help="List, show, follow, sign off, decide and cancel checks on a server.",
    no_args_is_help=True,
)

CheckIdArgument = Annotated[
    str, typer.Argument(metavar="ID", help="the check's id", show_default=False)
]
State = Literal["running", "final", "cancelled"]


def _run(server: str, token: str | None, command: str, work: Callable[[GonogoClient], int]) -> None:
    """Run ``work`` with a client; a server or auth error is one line on stderr, exit 3."""
    try:
        with GonogoClient(server, token) as client:
            code = work(client)
    except ClientError as error:
        make_console(stderr=True).print(f"gonogo checks {command}: {error}", markup=False)
        raise typer.Exit(EXIT_ERROR) from None
    raise typer.Exit(code)


def _line(check: dict[str, Any]) -> str:
    decision = check.get("decision") or "-"
    where = " ".join(
        f"{key}={check[key]}" for key in ("environment", "stage") if check.get(key) is not None
    )
    return (
        f"check {check.get('id')} on gate {check.get('gate')} for version"
        f" {check.get('version')}{' ' + where if where else ''}: {check.get('state')},"
        f" decision {decision}"
    )


def _show(check: dict[str, Any], console: Console) -> None:
    console.print(_line(check), markup=False)
    console.print(criteria_table(check))
    details = [
        f"created {check.get('created_at')}, deadline {check.get('deadline')}",
        f"decided {check.get('decided_at') or '-'} by {check.get('decided_by') or '-'}",
    ]
    for signed in check.get("signoffs") or []:
        comment = f": {signed['comment']}" if signed.get("comment") else ""
        details.append(
            f"sign-off {signed.get('signoff')} by {signed.get('signed_by')}"
            f" at {signed.get('signed_at')}{comment}"
        )
    for line in details:
        console.print(line, markup=False)


@checks_cli.command("list")
def list_checks(
    server: ServerOption,
    token: TokenOption = None,
    gate: Annotated[
        str | None, typer.Option("--gate", help="only this gate's checks (default: every gate)")
    ] = None,
    state: Annotated[
        State | None,
        typer.Option("--state", help="only checks in this state (default: any)"),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=500, help="at most this many, newest first")
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List checks, newest first."""

    def work(client: GonogoClient) -> int:
        items = client.list(gate=gate, state=state, limit=limit)
        if as_json:
            print_json({"items": items})
            return EXIT_OK
        console = make_console()
        if not items:
            console.print("no checks", markup=False)
            return EXIT_OK
        table = Table()
        columns = ("id", "gate", "version", "environment", "stage", "state", "decision", "created")
        for column in columns:
            table.add_column(column, overflow="fold")
        for item in items:
            table.add_row(
                *(
                    str(item.get(key) or "-")
                    for key in (
                        "id",
                        "gate",
                        "version",
                        "environment",
                        "stage",
                        "state",
                        "decision",
                        "created_at",
                    )
                )
            )
        console.print(table)
        return EXIT_OK

    _run(server, token, "list", work)


@checks_cli.command("show")
def show(
    check_id: CheckIdArgument,
    server: ServerOption,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a check: its decision, criteria, reasons and sign-offs."""

    def work(client: GonogoClient) -> int:
        check = client.get(check_id)
        if as_json:
            print_json(check)
        else:
            _show(check, make_console())
        return EXIT_OK

    _run(server, token, "show", work)


@checks_cli.command("attach")
def attach(
    check_id: CheckIdArgument,
    server: ServerOption,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Follow a check until it ends, as ``gonogo check`` does: exit 0 go, 1 no_go,
    2 rollback, 3 error or cancelled."""

    def work(client: GonogoClient) -> int:
        console = make_console(stderr=as_json)
        check = client.get(check_id)
        console.print(_line(check), markup=False)
        final = follow_to_the_end(
            client, check, live=sys.stdout.isatty() and not as_json, console=console
        )
        return report_final(final, console=console, as_json=as_json)

    _run(server, token, "attach", work)


def _changed(check: dict[str, Any], what: str, as_json: bool) -> int:
    if as_json:
        print_json(check)
    else:
        make_console().print(f"{what}; {_line(check)}", markup=False)
    return EXIT_OK


@checks_cli.command("signoff")
def signoff(
    check_id: CheckIdArgument,
    signoff_id: Annotated[
        str, typer.Argument(metavar="SIGNOFF", help="the sign-off's id, as the gate names it")
    ],
    server: ServerOption,
    token: TokenOption = None,
    comment: Annotated[
        str | None, typer.Option("--comment", help="recorded with the sign-off (default: none)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Record a sign-off the gate requires (approver role; the signer is the token)."""
    _run(
        server,
        token,
        "signoff",
        lambda client: _changed(
            client.signoff(check_id, signoff_id, comment), f"signed off {signoff_id}", as_json
        ),
    )


@checks_cli.command("decide")
def decide(
    check_id: CheckIdArgument,
    server: ServerOption,
    decision: Annotated[
        Literal["go", "no_go", "rollback"],
        typer.Option(
            "--decision",
            help="the decision (no_go, rollback: approver role; go: admin)",
            show_default=False,
        ),
    ],
    reason: Annotated[
        str,
        typer.Option("--reason", help="why, recorded in the audit trail", show_default=False),
    ],
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Decide a running check by hand, with a reason."""
    _run(
        server,
        token,
        "decide",
        lambda client: _changed(
            client.decide(check_id, decision, reason), f"decided {decision}", as_json
        ),
    )


@checks_cli.command("cancel")
def cancel(
    check_id: CheckIdArgument,
    server: ServerOption,
    token: TokenOption = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="recorded with the cancellation (default: none)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a running check (pipeline role)."""
    _run(
        server,
        token,
        "cancel",
        lambda client: _changed(client.cancel(check_id, reason), "cancelled", as_json),
    )


def register(cli: typer.Typer) -> None:
    cli.add_typer(checks_cli)
