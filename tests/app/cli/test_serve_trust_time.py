"""Time through a real ``gonogo serve``: the process SIGSTOPped past its freshness bound
serves no old ``go`` when it wakes, on any read path, and a restart in the middle of a
steady run (with a check created just before it) needs ``steady_for`` fresh passes.

The gate samples every 1 s, so both its freshness bound and its gap bound are 10 s; the
pause and the downtime are a little longer than that.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.cli.serve_support import Answer, ScriptedPrometheus, Serve, wait_for
from tests.app.conftest import TOKENS

PAST_THE_BOUND = 11.0  # seconds: one more than the 10 s gap and freshness bound
QUERY = 'steady{version="all"}'
CHECK_QUERY = 'steady{version="7.0"}'
GATE = """\
interval: 1s
steady_for: 3
timeout: 60s
vars: {version: all}
probes:
  prom: {type: prometheus, url: "URL", timeout: 2, retries: 0}
criteria:
  - {name: rate, probe: prom, query: 'steady{version="${version}"}', go: "< 1%"}
"""


class Switch:
    """The source's answer, flipped by the test: failing (2 %) or passing (0.1 %)."""

    def __init__(self) -> None:
        self.passing = False

    def answer(self, _call: int) -> Answer:
        return Answer(0.001 if self.passing else 0.02)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Serve, Switch]]:
    switch = Switch()
    with ScriptedPrometheus().running() as source:
        source.script(QUERY, switch.answer)
        source.script(CHECK_QUERY, switch.answer)
        gates = tmp_path / "gates"
        gates.mkdir()
        (gates / "steady.yaml").write_text(GATE.replace("URL", source.url))
        # Passing from the start; its checks wait for a sign-off.
        source.script('signed{version="8.0"}', lambda _call: Answer(0.001))
        (gates / "signed.yaml").write_text(
            GATE.replace("URL", source.url)
            .replace("steady_for: 3", "steady_for: 1")
            .replace("steady{", "signed{")
            + "signoffs:\n  - {id: uat, role: approver}\n"
        )
        server = Serve(gates, f"sqlite+aiosqlite:///{tmp_path / 'gonogo.db'}", tmp_path / "log")
        server.start()
        try:
            yield server, switch
        finally:
            server.stop()


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Pending:
    """A request sent now that the server will answer whenever it can."""

    def __init__(self, send: Callable[[], httpx.Response]) -> None:
        self.response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, args=(send,), daemon=True)
        self._thread.start()

    def _run(self, send: Callable[[], httpx.Response]) -> None:
        self.response = send()

    def result(self) -> httpx.Response:
        self._thread.join(timeout=20)
        assert self.response is not None, "no answer within 20s"
        return self.response


def reads_during_the_pause(server: Serve) -> dict[str, Pending]:
    viewer = {"Authorization": f"Bearer {TOKENS['viewer']}"}

    def get(path: str, **kw: Any) -> Callable[[], httpx.Response]:
        return lambda: httpx.get(f"{server.url}{path}", headers=viewer, timeout=30, **kw)

    pipeline = {"Authorization": f"Bearer {TOKENS['pipeline']}"}
    flagger = {
        "name": "web",
        "namespace": "prod",
        "phase": "Progressing",
        "checksum": "r1",
        "metadata": {"version": "1.0"},
    }
    return {
        "decision": Pending(get("/api/v1/gates/steady/decision")),
        "gate": Pending(get("/api/v1/gates/steady")),
        "status.json": Pending(get("/status.json")),
        "metrics": Pending(get("/metrics")),
        "flagger": Pending(
            lambda: httpx.post(
                f"{server.url}/api/v1/integrations/flagger/steady",
                headers=pipeline,
                json=flagger,
                timeout=30,
            )
        ),
    }


def assert_no_go(name: str, response: httpx.Response) -> None:
    if name == "flagger":
        assert response.status_code == 403, response.text
        return
    assert response.status_code == 200, response.text
    if name == "metrics":
        assert 'gonogo_gate_decision{decision="go",gate="steady"} 1.0' not in response.text
        assert 'gonogo_gate_decision{decision="no_go",gate="steady"} 1.0' in response.text
        return
    body = response.json()
    if name == "status.json":
        body = next(g for g in body["gates"] if g["name"] == "steady")
    if name == "gate":
        body = body["decision"]
    assert body["decision"] == "no_go", body


def samples_between(server: Serve, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The stored continuous samples evaluated in ``[since, until]``, oldest first."""
    items = server.call("GET", "/gates/steady/samples", "viewer", params={"limit": 100}).json()
    found = [s for s in items["items"] if since <= instant(s["evaluated_at"]) <= until]
    return sorted(found, key=lambda s: instant(s["evaluated_at"]))


def test_a_paused_process_serves_no_old_go_when_it_wakes(setup: tuple[Serve, Switch]) -> None:
    server, switch = setup
    switch.passing = True
    check = server.start_check("signed", version="8.0")
    wait_for(
        lambda: server.check(check["id"])["reasons"] == ["missing sign-off: uat"],
        20,
        "the check waits only for its sign-off",
    )
    wait_for(lambda: server.decision("steady")["decision"] == "go", 20, "go before the pause")
    server.signal(signal.SIGSTOP)
    paused = datetime.now(UTC)
    try:
        time.sleep(0.5)  # let the reads reach the stopped process's socket
        pending = reads_during_the_pause(server)
        pending["signoff"] = Pending(
            lambda: server.call(
                "POST",
                f"/checks/{check['id']}/signoffs",
                "approver",
                timeout=30,
                json={"signoff": "uat"},
            )
        )
        time.sleep(PAST_THE_BOUND)  # the pause itself is the scenario
    finally:
        server.signal(signal.SIGCONT)
    signoff = pending.pop("signoff").result()
    assert signoff.status_code == 201, signoff.text
    for name, read in pending.items():
        assert_no_go(name, read.result())
    # The sign-off came with only a sample from before the pause: the go waits for a
    # fresh one.
    final = server.final(check["id"], 20)
    assert final["decision"] == "go", final
    deciding = set(final["deciding_samples"])
    events = [e for e in server.events(check["id"]) if e["kind"] == "sample"]
    assert deciding and all(
        instant(e["at"]) > paused for e in events if e["data"]["sample_id"] in deciding
    ), (final, events)
    # The gap broke the steady run: go again only after three fresh passes.
    body = wait_for(
        lambda: (b := server.decision("steady"))["decision"] == "go" and b, 20, "go again"
    )
    # From the pause on: the process took no sample while stopped, and its first sample
    # after SIGCONT may start a moment before this side reads the clock.
    after = samples_between(server, paused, instant(body["evaluated_at"]))
    assert len(after) >= 3, after
    assert after[0]["decision"] == "no_go", after[0]
    assert any("gap of" in reason for reason in after[0]["reasons"]), after[0]["reasons"]


def test_a_restart_mid_run_and_a_check_created_before_it_need_fresh_passes(
    setup: tuple[Serve, Switch],
) -> None:
    server, switch = setup
    wait_for(lambda: server.decision("steady")["evaluated_at"], 20, "first sample")
    switch.passing = True
    wait_for(lambda: server.decision("steady")["steady"]["passes"] >= 1, 20, "in a steady run")
    check = server.start_check("steady", version="7.0")
    wait_for(
        lambda: any(e["kind"] == "sample" for e in server.events(check["id"])),
        20,
        "the check's first sample",
    )
    server.kill()
    time.sleep(PAST_THE_BOUND)  # the downtime is the scenario
    restarted = datetime.now(UTC)
    server.start()
    first = wait_for(
        lambda: (
            (b := server.decision("steady"))["evaluated_at"]
            and instant(b["evaluated_at"]) >= restarted
            and b
        ),
        20,
        "first sample after the restart",
    )
    assert first["decision"] == "no_go", first
    assert any("gap of" in reason for reason in first["reasons"]), first["reasons"]
    final = server.final(check["id"], 30)
    assert final["decision"] == "go", final
    samples = [e for e in server.events(check["id"]) if e["kind"] == "sample"]
    broken = [n for n, e in enumerate(samples) if "gap of" in " ".join(e["data"]["reasons"])]
    assert broken, samples
    after_gap = samples[broken[0] :]
    assert instant(after_gap[0]["at"]) >= restarted, after_gap[0]
    assert len(after_gap) >= 3, samples  # steady_for fresh passes after the restart
    assert all(e["data"]["decision"] == "no_go" for e in samples[:-1]), samples
