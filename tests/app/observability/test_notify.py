from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from app.core.clock import SystemClock
from app.observability import metrics
from app.observability.notify import SIGNATURE_HEADER, Notifier, sign, slack_body
from gates.engine import Decision
from gates.model import Notify
from tests.app.fakes import eventually, make_gate, verdict_for

CRITERIA = (
    {"name": "availability", "go": "> 99.9%", "rollback": "< 95%"},
    {"name": "error-rate", "go": "< 1%", "rollback": "> 5%"},
    {"name": "latency-p95", "go": "< 2s"},
)


@dataclass
class Receiver:
    """A local webhook receiver whose behaviour the test sets."""

    mode: str = "ok"  # ok | fail | hang | reject
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if self.mode == "hang":
            await self.release.wait()
        if self.mode == "fail":
            return web.Response(status=500)
        if self.mode == "reject":
            return web.Response(status=404)
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", state.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    state.release.set()
    await runner.cleanup()


def counted(result: str) -> float:
    return metrics.NOTIFICATIONS.labels(result)._value.get()


def fast_notifier(**overrides: Any) -> Notifier:
    options: dict[str, Any] = {
        "attempts": 3,
        "attempt_timeout": 0.3,
        "backoff": timedelta(milliseconds=10),
        "max_backoff": timedelta(milliseconds=20),
    }
    options.update(overrides)
    return Notifier(clock=SystemClock(), **options)


async def test_json_body_is_signed_with_the_secret_from_the_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cr3t-value")
    gate = make_gate(
        criteria=CRITERIA,
        notify=[Notify(url=receiver.url + "/hook", format="json", secret_env="HOOK_SECRET")],
    )
    verdict = verdict_for(gate, {"availability": 0.93, "error-rate": 0.001, "latency-p95": 0.3})
    notifier = fast_notifier()
    ok_before = counted("ok")
    await notifier.start()
    try:
        notifier.decision_changed(
            gate, verdict, previous=Decision.GO, check={"id": "c1", "version": "2.1"}
        )
        await eventually(lambda: counted("ok") == ok_before + 1)
    finally:
        await notifier.stop()

    [(headers, body)] = receiver.requests
    expected = hmac.new(b"s3cr3t-value", body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["gate"] == "portal"
    assert payload["decision"] == "no_go"
    assert payload["previous"] == "go"
    assert payload["evaluated_at"] == "2026-11-24T10:00:00Z"
    assert payload["check"] == {"id": "c1", "version": "2.1"}
    assert any(r.startswith("availability:") for r in payload["reasons"])
    assert [c["name"] for c in payload["criteria"]] == ["availability", "error-rate", "latency-p95"]
    assert b"s3cr3t-value" not in body


async def test_no_signature_without_a_secret(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNSET_SECRET", raising=False)
    gate = make_gate(
        notify=[
            Notify(url=receiver.url + "/a"),
            Notify(url=receiver.url + "/b", secret_env="UNSET_SECRET"),
        ]
    )
    notifier = fast_notifier()
    await notifier.start()
    try:
        notifier.decision_changed(gate, verdict_for(gate, {"availability": 1.0}), previous=None)
        await eventually(lambda: len(receiver.requests) == 2)
    finally:
        await notifier.stop()
    assert all(SIGNATURE_HEADER not in headers for headers, _ in receiver.requests)
    assert json.loads(receiver.requests[0][1])["previous"] is None


async def test_a_hanging_receiver_never_delays_the_caller_and_ends_as_an_error(
    receiver: Receiver,
) -> None:
    receiver.mode = "hang"
    gate = make_gate(notify=[Notify(url=receiver.url + "/slow")])
    notifier = fast_notifier(attempts=2, attempt_timeout=0.2)
    error_before = counted("error")
    await notifier.start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(20):
            notifier.decision_changed(gate, verdict_for(gate, {"availability": 1.0}), previous=None)
        assert loop.time() - started < 0.05  # enqueued, not sent
        assert receiver.requests == []
        await eventually(lambda: counted("error") >= error_before + 1)
    finally:
        receiver.release.set()
        await notifier.stop(drain_timeout=0)
    # Each failed delivery was tried twice before it was given up.
    assert len(receiver.requests) >= 2


async def test_a_failing_receiver_is_retried_then_counted_as_an_error(receiver: Receiver) -> None:
    receiver.mode = "fail"
    gate = make_gate(notify=[Notify(url=receiver.url + "/broken")])
    notifier = fast_notifier(attempts=3)
    error_before, ok_before = counted("error"), counted("ok")
    await notifier.start()
    try:
        notifier.decision_changed(gate, verdict_for(gate, {"availability": 1.0}), previous=None)
        await eventually(lambda: counted("error") == error_before + 1)
    finally:
        await notifier.stop()
    assert len(receiver.requests) == 3
    assert counted("ok") == ok_before


async def test_a_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.mode = "reject"
    gate = make_gate(notify=[Notify(url=receiver.url + "/gone")])
    notifier = fast_notifier(attempts=3)
    error_before = counted("error")
    await notifier.start()
    try:
        notifier.decision_changed(gate, verdict_for(gate, {"availability": 1.0}), previous=None)
        await eventually(lambda: counted("error") == error_before + 1)
    finally:
        await notifier.stop()
    assert len(receiver.requests) == 1


async def test_a_refused_connection_is_an_error_and_the_url_secret_is_not_logged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    gate = make_gate(notify=[Notify(url=f"http://127.0.0.1:{port}/services/T0/B0/SECRETPATH")])
    notifier = fast_notifier(attempts=2)
    error_before = counted("error")
    await notifier.start()
    try:
        notifier.decision_changed(gate, verdict_for(gate, {"availability": 1.0}), previous=None)
        await eventually(lambda: counted("error") == error_before + 1)
    finally:
        await notifier.stop()
    output = capsys.readouterr()
    assert "notification failed" in output.out + output.err
    assert "SECRETPATH" not in output.out + output.err


async def test_a_full_queue_drops_and_counts() -> None:
    gate = make_gate(notify=[Notify(url="http://127.0.0.1:9/hook")])
    notifier = fast_notifier(queue_size=2)  # not started: nothing drains the queue
    dropped_before = counted("dropped")
    for _ in range(5):
        notifier.decision_changed(gate, verdict_for(gate, {"availability": 1.0}), previous=None)
    assert notifier.pending == 2
    assert counted("dropped") == dropped_before + 3


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"gate":"portal"}'
    assert sign(body, "k") == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign(body + b" ", "k") != sign(body, "k")


@pytest.mark.parametrize(
    ("values", "samples", "colour", "decision"),
    [
        ({"availability": 0.9995, "error-rate": 0.002, "latency-p95": 0.35}, 3, "Green", "go"),
        ({"availability": 0.9985, "error-rate": 0.002, "latency-p95": 2.5}, 1, "Yellow", "no_go"),
        ({"availability": 0.93, "error-rate": 0.08, "latency-p95": 0.35}, 2, "Red", "rollback"),
    ],
)
def test_slack_body_follows_the_status_update_template(
    values: dict[str, float], samples: int, colour: str, decision: str
) -> None:
    gate = make_gate(criteria=CRITERIA, interval="30s")
    verdict = verdict_for(gate, values, samples=samples)
    assert verdict.decision.value == decision

    body = slack_body(gate, verdict, previous=Decision.NO_GO, check={"version": "2.1"})

    assert set(body) == {"text", "blocks"}
    assert body["blocks"][0]["type"] == "header"
    assert "portal" in body["blocks"][0]["text"]["text"]
    assert "version 2.1" in body["blocks"][0]["text"]["text"]
    sections = {
        block["text"]["text"].split(":*")[0].strip("*"): block["text"]["text"]
        for block in body["blocks"][1:]
    }
    assert list(sections) == [
        "Status",
        "Availability",
        "Critical issues",
        "Performance",
        "Next update",
    ]
    assert f"{colour}* ({decision})" in sections["Status"]
    assert "was Yellow (no_go)" in sections["Status"]
    shown = {0.9995: "99.95 %", 0.9985: "99.85 %", 0.93: "93 %"}[values["availability"]]
    assert f"{shown} (go: > 99.9%)" in sections["Availability"]
    latency = {0.35: "350 ms", 2.5: "2.5 s"}[values["latency-p95"]]
    assert f"latency-p95: {latency} (go: < 2s)" in sections["Performance"]
    assert "every 30s" in sections["Next update"]
    if decision == "go":
        assert sections["Critical issues"].endswith("None")
    if decision == "no_go":
        assert "latency-p95 (fail)" in sections["Critical issues"]
        assert "steady" in sections["Critical issues"]
    if decision == "rollback":
        assert "availability (breach)" in sections["Critical issues"]
        assert "error-rate (breach)" in sections["Critical issues"]
    for label in sections:
        assert f"*{label}:*" in body["text"]


def test_a_dry_run_criterion_is_no_critical_issue_and_is_said_apart() -> None:
    gate = make_gate(
        criteria=(
            {"name": "availability", "go": "> 99.9%"},
            {"name": "latency-p95", "go": "< 2s", "dry_run": True},
        )
    )
    verdict = verdict_for(gate, {"availability": 0.9995, "latency-p95": 2.5}, samples=3)
    assert verdict.decision is Decision.GO
    body = slack_body(gate, verdict, previous=Decision.NO_GO, check=None)
    sections = {
        block["text"]["text"].split(":*")[0].strip("*"): block["text"]["text"]
        for block in body["blocks"][1:]
    }
    assert sections["Critical issues"].endswith("None")
    assert "latency-p95" in sections["Dry run (not deciding)"]


def test_slack_body_without_availability_or_latency_criteria_says_so() -> None:
    gate = make_gate(criteria=({"name": "new-fatal-issues", "go": "== 0"},))
    verdict = verdict_for(gate, {"new-fatal-issues": None})
    text = slack_body(gate, verdict, previous=None, check=None)["text"]
    assert "not measured by this gate" in text
    assert "no latency criteria" in text
    assert "new-fatal-issues (inconclusive): no data: no series" in text
    assert "was " not in text
    assert "(next at 10:00:30 UTC)" in text  # evaluated at T0, default interval 30s
