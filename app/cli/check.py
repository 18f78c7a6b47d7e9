"""``gonogo check``: start a check on a server and wait for its final decision (``docs/api.md``).

Exit codes: 0 go, 1 no_go, 2 rollback, 3 error or cancelled.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from app.cli.gatefiles import value_with_baseline
from app.cli.options import VarError, parse_vars

EXIT_GO, EXIT_NO_GO, EXIT_ROLLBACK, EXIT_ERROR = 0, 1, 2, 3
EXIT_BY_DECISION = {"go": EXIT_GO, "no_go": EXIT_NO_GO, "rollback": EXIT_ROLLBACK}
POLL_SECONDS = 5.0  # each long poll returns at once when the check ends
START_ATTEMPTS = 4
OUTCOME_STYLE = {"pass": "green", "fail": "yellow", "breach": "red", "inconclusive": "magenta"}
DECISION_STYLE = {"go": "bold green", "no_go": "bold yellow", "rollback": "bold red"}


class CheckError(Exception):
    """Something that ends ``gonogo check`` with exit code 3 and a one-line message."""


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    text = f"HTTP {response.status_code}: {body.get('detail') or body.get('title', '')}"
    for error in body.get("errors") or []:
        loc = ".".join(str(p) for p in error.get("loc", []))
        text += f"\n  {loc}: {error.get('msg')}"
    return text


class GonogoClient:
    def __init__(
        self, server: str, token: str | None, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        headers = {"User-Agent": "gonogo-check"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=server.rstrip("/") + "/api/v1",
            headers=headers,
            timeout=httpx.Timeout(10.0, read=POLL_SECONDS + 30),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise CheckError(f"cannot reach the server: {type(error).__name__}: {error}") from None

    def start(self, gate: str, body: dict[str, Any]) -> dict[str, Any]:
        # One key for every attempt: a retried request returns the same check.
        key = uuid.uuid4().hex
        last: str = ""
        for attempt in range(START_ATTEMPTS):
            try:
                response = self._http.post(
                    f"/gates/{gate}/checks", json=body, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError as error:
                last = f"cannot reach the server: {type(error).__name__}: {error}"
            else:
                if response.status_code in (200, 201):
                    result: dict[str, Any] = response.json()
                    return result
                if response.status_code < 500:
                    raise CheckError(f"the server refused the check: {_problem_text(response)}")
                last = f"the server failed: {_problem_text(response)}"
            time.sleep(min(2**attempt * 0.5, 4.0))  # backoff between start attempts
        raise CheckError(last)

    def wait(self, check_id: str, seconds: float) -> dict[str, Any]:
        response = self._request("GET", f"/checks/{check_id}", params={"wait": seconds})
        if response.status_code != 200:
            raise CheckError(f"reading the check failed: {_problem_text(response)}")
        result: dict[str, Any] = response.json()
        return result

    def cancel(self, check_id: str) -> dict[str, Any]:
        response = self._request(
            "POST", f"/checks/{check_id}/cancel", json={"reason": "gonogo check interrupted"}
        )
        if response.status_code != 200:
            raise CheckError(f"cancelling the check failed: {_problem_text(response)}")
        result: dict[str, Any] = response.json()
        return result


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
        table.add_row(
            criterion.get("name", "") + (" (dry run)" if criterion.get("dry_run") else ""),
            Text(outcome, style=OUTCOME_STYLE.get(outcome, "")),
            value_with_baseline(criterion.get("value"), criterion.get("baseline")),
            criterion.get("go") or "",
            criterion.get("rollback") or "",
            criterion.get("reason") or "",
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
) -> dict[str, Any]:
    """Long-poll until the check is no longer running (bounded by ``client_deadline``)."""
    show(check)
    while check.get("state") == "running":
        if time.monotonic() > client_deadline:
            raise CheckError(f"check {check['id']} did not finish in time; it keeps running")
        check = client.wait(check["id"], poll_seconds)
        show(check)
    return check


def exit_code(check: dict[str, Any]) -> int:
    if check.get("state") != "final":
        return EXIT_ERROR
    return EXIT_BY_DECISION.get(str(check.get("decision")), EXIT_ERROR)


def run_check(
    *,
    server: str,
    gate: str,
    body: dict[str, Any],
    token: str | None,
    cancel_on_interrupt: bool,
    live: bool,
    console: Console,
    transport: httpx.BaseTransport | None = None,
) -> int:
    client = GonogoClient(server, token, transport=transport)
    check: dict[str, Any] | None = None
    try:
        check = client.start(gate, body)
        console.print(f"check {check['id']} started on gate {gate} for version {body['version']}")
        limit = time.monotonic() + 25 * 3600  # the server ends every check by its deadline
        if live:
            with Live(criteria_table(check), console=console, refresh_per_second=4) as display:
                final = follow(
                    client,
                    check,
                    show=lambda c: display.update(criteria_table(c)),
                    client_deadline=limit,
                )
        else:
            seen: list[str] = []

            def show(c: dict[str, Any]) -> None:
                line = summary_line(c)
                if not seen or seen[-1] != line:
                    seen.append(line)
                    console.print(line, highlight=False, soft_wrap=True)

            final = follow(client, check, show=show, client_deadline=limit)
        code = exit_code(final)
        verdict = final.get("decision") or final.get("state")
        console.print(f"final: {verdict} (decided by {final.get('decided_by')}); exit {code}")
        return code
    except KeyboardInterrupt:
        if check is None:
            console.print("interrupted before the check started")
            return EXIT_ERROR
        if cancel_on_interrupt:
            try:
                client.cancel(check["id"])
                console.print(f"interrupted: check {check['id']} cancelled")
            except CheckError as error:
                console.print(f"interrupted; {error}")
        else:
            console.print(
                f"interrupted: check {check['id']} keeps running on the server"
                " (use --cancel-on-interrupt to cancel it)"
            )
        return EXIT_ERROR
    except CheckError as error:
        Console(stderr=True).print(f"gonogo check: {error}", highlight=False, soft_wrap=True)
        return EXIT_ERROR
    finally:
        client.close()


def check(
    server: Annotated[
        str, typer.Option("--server", help="gonogo base URL, e.g. http://127.0.0.1:8080")
    ],
    gate: Annotated[str, typer.Option("--gate", help="the gate to check")],
    version: Annotated[str, typer.Option("--version", help="the release version")],
    environment: Annotated[str | None, typer.Option("--environment")] = None,
    stage: Annotated[str | None, typer.Option("--stage")] = None,
    var: Annotated[
        list[str] | None, typer.Option("--var", help="placeholder value key=value (repeatable)")
    ] = None,
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="overrides the gate's timeout, e.g. 10m")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", envvar="GONOGO_TOKEN", show_envvar=True, help="API token (pipeline role)"
        ),
    ] = None,
    cancel_on_interrupt: Annotated[
        bool, typer.Option("--cancel-on-interrupt", help="cancel the check on Ctrl-C")
    ] = False,
) -> None:
    """Start a check and wait for its final decision: exit 0 go, 1 no_go, 2 rollback, 3 error."""
    try:
        check_vars = parse_vars(var or [])
    except VarError as bad:
        raise typer.BadParameter(str(bad), param_hint="--var") from None
    body: dict[str, Any] = {"version": version, "vars": check_vars}
    if environment is not None:
        body["environment"] = environment
    if stage is not None:
        body["stage"] = stage
    if timeout is not None:
        body["timeout"] = timeout
    console = Console()
    code = run_check(
        server=server,
        gate=gate,
        body=body,
        token=token,
        cancel_on_interrupt=cancel_on_interrupt,
        live=sys.stdout.isatty(),
        console=console,
    )
    raise typer.Exit(code)


def register(cli: typer.Typer) -> None:
    cli.command("check")(check)
