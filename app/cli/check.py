"""``gonogo check``: start a check on a server and wait for its final decision (``docs/api.md``).

Exit codes: 0 go, 1 no_go, 2 rollback, 3 error or cancelled.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from app.cli.ci import default_idempotency_key
from app.cli.client import POLL_SECONDS, ClientError, GonogoClient
from app.cli.gatefiles import value_with_baseline
from app.cli.options import JsonOption, ServerOption, TokenOption, VarError, parse_vars
from app.cli.output import console as make_console
from app.cli.output import print_json
from gates.judgements import comparison_summary, judged_value_text
from gates.units import unit_named

EXIT_GO, EXIT_NO_GO, EXIT_ROLLBACK, EXIT_ERROR = 0, 1, 2, 3
EXIT_BY_DECISION = {"go": EXIT_GO, "no_go": EXIT_NO_GO, "rollback": EXIT_ROLLBACK}
CLIENT_DEADLINE_SECONDS = 25 * 3600  # the server ends every check by its deadline (≤ 24 h)
OUTCOME_STYLE = {"pass": "green", "fail": "yellow", "breach": "red", "inconclusive": "magenta"}
DECISION_STYLE = {"go": "bold green", "no_go": "bold yellow", "rollback": "bold red"}


def summary_line(check: dict[str, Any]) -> str:
    decision = check.get("decision") or check.get("state")
    steady = check.get("steady") or {}
    line = (
        f"{check.get('state')}: {decision} (steady {steady.get('passes', 0)}/"
        f"{steady.get('needed', '?')})"
    )
    reasons = check.get("reasons") or []
    if reasons:
        line += " - " + "; ".join(reasons)
    return line


def criteria_table(check: dict[str, Any]) -> Group:
    decision = check.get("decision") or check.get("state") or ""
    header = Text.assemble(
        (f"{check.get('gate')} ", "bold"),
        (f"{check.get('version')} ", ""),
        (decision, DECISION_STYLE.get(decision, "bold")),
        f"  [{check.get('state')}]",
    )
    table = Table(show_lines=False, expand=False)
    for column in ("criterion", "outcome", "value", "go", "rollback", "reason"):
        table.add_column(column)
    for criterion in check.get("criteria") or []:
        outcome = criterion.get("outcome", "")
        unit = unit_named(criterion.get("unit"))
        table.add_row(
            criterion.get("name", "") + (" (dry run)" if criterion.get("dry_run") else ""),
            Text(outcome, style=OUTCOME_STYLE.get(outcome, "")),
            judged_value_text(criterion.get("comparison"), criterion.get("value"))
            or value_with_baseline(criterion.get("value"), criterion.get("baseline"), unit),
            criterion.get("go") or "",
            criterion.get("rollback") or "",
            "\n".join(
                filter(
                    None,
                    [
                        criterion.get("reason"),
                        comparison_summary(criterion.get("comparison"), unit),
                    ],
                )
            ),
        )
    reasons = Text("\n".join(check.get("reasons") or []), style="dim")
    return Group(header, table, reasons)


def follow(
    client: GonogoClient,
    check: dict[str, Any],
    *,
    show: Callable[[dict[str, Any]], None],
    poll_seconds: float = POLL_SECONDS,
    client_deadline: float,
    notice: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Long-poll until the check is no longer running (bounded by ``client_deadline``),
    riding out a server that is away for a while (``GonogoClient.poll``)."""
    show(check)
    while check.get("state") == "running":
        if time.monotonic() > client_deadline:
            raise ClientError(f"check {check['id']} did not finish in time; it keeps running")
        check = client.poll(check["id"], wait=poll_seconds, notice=notice)
        show(check)
    return check


def exit_code(check: dict[str, Any]) -> int:
    if check.get("state") != "final":
        return EXIT_ERROR
    return EXIT_BY_DECISION.get(str(check.get("decision")), EXIT_ERROR)


def follow_to_the_end(
    client: GonogoClient, check: dict[str, Any], *, live: bool, console: Console
) -> dict[str, Any]:
    """Follow a running check until it ends, showing its progress on ``console``: a live
    criteria table on a terminal, a line per change otherwise."""
    limit = time.monotonic() + CLIENT_DEADLINE_SECONDS
    if live:
        with Live(criteria_table(check), console=console, refresh_per_second=4) as display:
            return follow(
                client,
                check,
                show=lambda c: display.update(criteria_table(c)),
                client_deadline=limit,
                notice=lambda line: console.print(line, markup=False),
            )
    seen: list[str] = []

    def show(c: dict[str, Any]) -> None:
        line = summary_line(c)
        if not seen or seen[-1] != line:
            seen.append(line)
            console.print(line, markup=False)

    return follow(
        client,
        check,
        show=show,
        client_deadline=limit,
        notice=lambda line: console.print(line, markup=False),
    )


def report_final(final: dict[str, Any], *, console: Console, as_json: bool) -> int:
    """Say how the check ended (and print its body with ``--json``); its exit code."""
    code = exit_code(final)
    verdict = final.get("decision") or final.get("state")
    console.print(
        f"final: {verdict} (decided by {final.get('decided_by')}); exit {code}", markup=False
    )
    if as_json:
        print_json(final)
    return code


def run_check(
    *,
    server: str,
    gate: str,
    body: dict[str, Any],
    token: str | None,
    idempotency_key: str,
    cancel_on_interrupt: bool,
    live: bool,
    console: Console,
    as_json: bool = False,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """Start (or attach to) the check and follow it; the exit code."""
    client = GonogoClient(server, token, transport=transport)
    errors = make_console(stderr=True)
    check: dict[str, Any] | None = None
    try:
        check, created = client.start(gate, body, idempotency_key)
        if created:
            console.print(
                f"check {check['id']} started on gate {gate} for version {body['version']}"
                f" (idempotency key {idempotency_key})",
                markup=False,
            )
        else:
            console.print(
                f"check {check['id']} on gate {gate} for version {body['version']} was started"
                f" earlier with idempotency key {idempotency_key}: following it",
                markup=False,
            )
        final = follow_to_the_end(client, check, live=live, console=console)
        return report_final(final, console=console, as_json=as_json)
    except KeyboardInterrupt:
        if check is None:
            errors.print("interrupted before the check started")
            return EXIT_ERROR
        if cancel_on_interrupt:
            try:
                client.cancel(check["id"], "gonogo check interrupted")
                errors.print(f"interrupted: check {check['id']} cancelled", markup=False)
            except ClientError as error:
                errors.print(f"interrupted; {error}", markup=False)
        else:
            errors.print(
                f"interrupted: check {check['id']} keeps running on the server"
                " (use --cancel-on-interrupt to cancel it)",
                markup=False,
            )
        return EXIT_ERROR
    except ClientError as error:
        message = str(error)
        if "409" in message and "Idempotency-Key" in message:
            message += " (pass --idempotency-key to start a separate check)"
        errors.print(f"gonogo check: {message}", markup=False)
        return EXIT_ERROR
    finally:
        client.close()


def choose_idempotency_key(
    given: str | None, env: Mapping[str, str], *, gate: str, stage: str | None
) -> str:
    """``--idempotency-key``, else the CI run's key, else a new one for this run alone."""
    if given is not None:
        return given
    return default_idempotency_key(env, gate=gate, stage=stage) or f"gonogo-check:{uuid.uuid4()}"


IDEMPOTENCY_HELP = (
    "the same key returns the same check, so a retried CI step attaches to the check it"
    " started instead of starting a second (default: the CI run and its attempt, the gate"
    " and the stage: GitHub Actions GITHUB_RUN_ID + GITHUB_RUN_ATTEMPT, GitLab CI_JOB_ID"
    " (or CI_PIPELINE_ID + CI_JOB_NAME), Azure Pipelines BUILD_BUILDID + SYSTEM_JOBID +"
    " SYSTEM_JOBATTEMPT, Jenkins BUILD_TAG, Buildkite BUILDKITE_JOB_ID +"
    " BUILDKITE_RETRY_COUNT; a re-run is a new attempt and starts a new check. Outside CI,"
    " a new key for each run)"
)


def check(
    server: ServerOption,
    gate: Annotated[str, typer.Option("--gate", help="the gate to check", show_default=False)],
    version: Annotated[
        str,
        typer.Option("--version", help="the release version", show_default=False),
    ],
    environment: Annotated[
        str | None,
        typer.Option("--environment", help="where it is deployed, e.g. prod (default: none)"),
    ] = None,
    stage: Annotated[
        str | None,
        typer.Option("--stage", help="the rollout stage, e.g. canary-10 (default: none)"),
    ] = None,
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var",
            help="placeholder value name=value (repeatable) (default: none)",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout", help="overrides the gate's timeout, e.g. 10m (default: the gate's)"
        ),
    ] = None,
    token: TokenOption = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help=IDEMPOTENCY_HELP, show_default=False),
    ] = None,
    cancel_on_interrupt: Annotated[
        bool,
        typer.Option(
            "--cancel-on-interrupt",
            help="cancel the check on Ctrl-C (default: off: it keeps running on the server)",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Start a check and wait for its final decision: exit 0 go, 1 no_go, 2 rollback, 3 error."""
    try:
        check_vars = parse_vars(var or [])
    except VarError as bad:
        raise typer.BadParameter(str(bad), param_hint="--var") from None
    if idempotency_key is not None and not (
        0 < len(idempotency_key) <= 255 and idempotency_key.isprintable()
    ):
        raise typer.BadParameter("1 to 255 printable characters", param_hint="--idempotency-key")
    body: dict[str, Any] = {"version": version, "vars": check_vars}
    if environment is not None:
        body["environment"] = environment
    if stage is not None:
        body["stage"] = stage
    if timeout is not None:
        body["timeout"] = timeout
    code = run_check(
        server=server,
        gate=gate,
        body=body,
        token=token,
        idempotency_key=choose_idempotency_key(idempotency_key, os.environ, gate=gate, stage=stage),
        cancel_on_interrupt=cancel_on_interrupt,
        live=sys.stdout.isatty() and not as_json,
        console=make_console(stderr=as_json),
        as_json=as_json,
    )
    raise typer.Exit(code)


def register(cli: typer.Typer) -> None:
    cli.command("check")(check)
