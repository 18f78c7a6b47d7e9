"""The notification outbox on SQLite and PostgreSQL: a row commits with its caller's
transaction or not at all, is posted once by one of several racing senders, is taken over
(and posted once more, with the same delivery id) when its sender dies, is retried on a
5xx and given up on a 4xx, never waits behind a hanging receiver, and never puts a
webhook URL's secret part in a log line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
from aiohttp import web
from sqlalchemy import select
from structlog.testing import capture_logs

from app.core.clock import ManualClock
from app.core.db import (
    NOTIFICATION_DELIVERED,
    NOTIFICATION_FAILED,
    NOTIFICATION_WAITING,
    Database,
    NotificationOutboxRow,
)
from app.observability import metrics
from app.observability.notify import SIGNATURE_HEADER, sign
from app.observability.outbox import (
    CLAIM_TTL_S,
    DELIVERY_HEADER,
    NotificationOutbox,
    enqueue_decision_change,
)
from gates.engine import Decision
from gates.model import Gate, Notify
from tests.app.fakes import eventually, make_gate, verdict_for
from tests.conftest import T0
from tests.support import free_port

# An HTTP status to answer, "slow" (204 after 50 ms, a receiver's latency), or "hang"
# (204 once the test releases it).
Action = int | str


@dataclass
class Receiver:
    """A local webhook receiver; ``script[path]`` lists its answers to that path in turn
    (204 once the list is spent)."""

    url: str = ""
    script: dict[str, list[Action]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    hanging: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.path, dict(request.headers), body))
        actions = self.script.get(request.path, [])
        action: Action = actions.pop(0) if actions else 204
        if action == "slow":
            await asyncio.sleep(0.05)
            return web.Response(status=204)
        if action == "hang":
            self.hanging += 1
            try:
                await self.release.wait()
            finally:
                self.hanging -= 1
            return web.Response(status=204)
        return web.Response(status=int(action))

    def deliveries(self, path: str | None = None) -> list[str]:
        return [h[DELIVERY_HEADER] for p, h, _ in self.requests if path in (None, p)]


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


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False) as shared:
        yield shared


def counted(result: str) -> float:
    return metrics.NOTIFICATIONS.labels(result)._value.get()


def gate_to(*urls: str, name: str = "portal", secret_env: str | None = None) -> Gate:
    return make_gate(name, notify=[Notify(url=url, secret_env=secret_env) for url in urls])


async def enqueue(db: Database, gate: Gate, key: str) -> int:
    verdict = verdict_for(gate, {"availability": 0.5})
    async with db.session() as session:
        return await enqueue_decision_change(
            session, gate=gate, verdict=verdict, previous=Decision.GO, key=key
        )


async def rows(db: Database) -> list[NotificationOutboxRow]:
    async with db.session() as session:
        result = await session.scalars(
            select(NotificationOutboxRow).order_by(NotificationOutboxRow.id)
        )
        return list(result.all())


def outbox(
    db: Database, clock: ManualClock, client: httpx.AsyncClient, **options: object
) -> NotificationOutbox:
    return NotificationOutbox(db, clock=clock, client=client, **options)  # type: ignore[arg-type]


async def send_due(box: NotificationOutbox) -> None:
    """One pass of the sender, waited to its end."""
    await box.run_due()
    await box.idle()


async def test_the_row_holds_the_signed_request_with_its_delivery_id(
    db: Database, receiver: Receiver, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GONOGO_NOTIFY_HOOK", "hook-secret-value")
    gate = gate_to(receiver.url + "/a", receiver.url + "/b", secret_env="GONOGO_NOTIFY_HOOK")
    assert await enqueue(db, gate, "gate:portal:sample:7") == 2
    # The sending replica has neither the gate nor its secret: the row is enough.
    monkeypatch.delenv("GONOGO_NOTIFY_HOOK")
    clock = ManualClock(T0)
    await send_due(outbox(db, clock, client))

    assert sorted(receiver.deliveries()) == ["gate:portal:sample:7/0", "gate:portal:sample:7/1"]
    for _, headers, body in receiver.requests:
        assert headers[SIGNATURE_HEADER] == sign(body, "hook-secret-value")
        assert json.loads(body)["decision"] == "no_go"
    assert [row.state for row in await rows(db)] == [NOTIFICATION_DELIVERED] * 2


async def test_a_replayed_change_adds_nothing(db: Database, receiver: Receiver) -> None:
    gate = gate_to(receiver.url + "/a")
    assert await enqueue(db, gate, "check:c1:final") == 1
    assert await enqueue(db, gate, "check:c1:final") == 0
    assert len(await rows(db)) == 1


async def test_a_rolled_back_enqueue_leaves_no_row_and_wakes_nobody(
    db: Database, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    gate = gate_to(receiver.url + "/a")
    clock = ManualClock(T0)
    box = outbox(db, clock, client)
    woken: list[bool] = []
    box.wake = lambda: woken.append(True)  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="fence refused"):
        async with db.session() as session:
            written = await box.enqueue(
                session, gate=gate, verdict=verdict_for(gate, {}), previous=None, key="k:1"
            )
            assert written == 1
            raise RuntimeError("fence refused the write")
    assert await rows(db) == []
    assert woken == []
    await send_due(box)
    assert receiver.requests == []

    async with db.session() as session:  # committed: the outbox is woken
        await box.enqueue(
            session, gate=gate, verdict=verdict_for(gate, {}), previous=None, key="k:2"
        )
    assert woken == [True]


async def test_two_senders_racing_post_each_row_exactly_once(
    database_url: str, receiver: Receiver
) -> None:
    for index in range(12):  # answers that take a while, so the two senders overlap
        receiver.script[f"/g{index}"] = ["slow"]
    db_a, db_b = Database(database_url), Database(database_url)
    clock = ManualClock(T0)
    try:
        keys = []
        for index in range(12):
            gate = gate_to(receiver.url + f"/g{index}", receiver.url + "/all", name=f"g{index}")
            await enqueue(db_a, gate, f"gate:g{index}:sample:1")
            keys += [f"gate:g{index}:sample:1/0", f"gate:g{index}:sample:1/1"]
        a = NotificationOutbox(db_a, clock=clock, replica="a", concurrency=3)
        b = NotificationOutbox(db_b, clock=clock, replica="b", concurrency=3)
        await a.start()
        await b.start()
        try:
            a.wake()
            b.wake()
            await eventually(lambda: len(receiver.requests) >= len(keys), timeout=15)
            await eventually(lambda: a.sending == 0 and b.sending == 0)
            states = [row.state for row in await rows(db_a)]
        finally:
            await a.stop()
            await b.stop()
    finally:
        await db_a.dispose()
        await db_b.dispose()
    assert sorted(receiver.deliveries()) == sorted(keys)
    assert states == [NOTIFICATION_DELIVERED] * len(keys)


async def test_a_sender_that_dies_mid_send_is_taken_over_and_posts_once_more(
    database_url: str, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.script["/hook"] = ["hang"]
    db_a, db_b = Database(database_url), Database(database_url)
    clock = ManualClock(T0)
    try:
        await enqueue(db_a, gate_to(receiver.url + "/hook"), "gate:portal:sample:9")
        a = NotificationOutbox(db_a, clock=clock, replica="a")
        await a.start()
        a.wake()
        await eventually(lambda: receiver.hanging == 1)
        await a.stop(drain_timeout=0)  # dies while the receiver holds its request

        b = outbox(db_b, clock, client)
        await send_due(b)  # the claim still holds: b leaves the row alone
        assert len(receiver.requests) == 1
        await clock.advance(CLAIM_TTL_S + 1)
        ok_before = counted("ok")
        await send_due(b)
        [row] = await rows(db_b)
    finally:
        await db_a.dispose()
        await db_b.dispose()
    # At least once: the receiver may have seen it before, with the same delivery id.
    assert receiver.deliveries() == ["gate:portal:sample:9/0"] * 2
    assert row.state == NOTIFICATION_DELIVERED
    assert counted("ok") == ok_before + 1


async def test_a_paused_sender_cannot_record_an_outcome_after_its_claim_was_taken(
    database_url: str, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.script["/hook"] = ["hang", 503]
    db_a, db_b = Database(database_url), Database(database_url)
    clock = ManualClock(T0)
    try:
        await enqueue(db_a, gate_to(receiver.url + "/hook"), "gate:portal:sample:3")
        a = outbox(db_a, clock, client, attempt_timeout=30.0, claim_ttl=31.0)
        await a.run_due()
        await eventually(lambda: receiver.hanging == 1)
        await clock.advance(32)  # a's claim lapses while its request hangs
        b = outbox(db_b, clock, client)
        await send_due(b)  # b posts again; the receiver answers 503: b schedules a retry
        receiver.release.set()  # a's request ends with 204, too late
        await a.idle()
        [row] = await rows(db_b)
    finally:
        await db_a.dispose()
        await db_b.dispose()
    assert row.state == NOTIFICATION_WAITING, "a must not mark delivered what b now holds"
    assert row.attempts == 1
    assert row.last_error == "HTTP 503"


async def test_a_503_is_retried_after_a_backoff_then_delivered(
    db: Database, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.script["/hook"] = [503, 503]
    await enqueue(db, gate_to(receiver.url + "/hook"), "gate:portal:sample:1")
    clock = ManualClock(T0)
    box = outbox(db, clock, client, first_backoff=2.0)
    ok_before = counted("ok")
    await send_due(box)
    [row] = await rows(db)
    assert (row.state, row.attempts, row.due_at) == (
        NOTIFICATION_WAITING,
        1,
        T0 + timedelta(seconds=2),
    )
    assert await box.run_due() == pytest.approx(2.0)  # nothing due: the loop sleeps 2 s
    await clock.advance(2)
    await send_due(box)
    [row] = await rows(db)
    assert (row.attempts, row.due_at) == (2, T0 + timedelta(seconds=6))  # doubled
    await clock.advance(4)
    await send_due(box)
    [row] = await rows(db)
    assert (row.state, row.attempts, row.last_error) == (NOTIFICATION_DELIVERED, 3, None)
    assert len(receiver.requests) == 3
    assert counted("ok") == ok_before + 1


async def test_a_4xx_is_given_up_at_once_and_so_is_the_last_attempt(
    db: Database, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.script["/gone"] = [404]
    receiver.script["/busy"] = [429, 429]
    await enqueue(db, gate_to(receiver.url + "/gone"), "gate:a:sample:1")
    await enqueue(db, gate_to(receiver.url + "/busy"), "gate:b:sample:1")
    clock = ManualClock(T0)
    box = outbox(db, clock, client, max_attempts=2, first_backoff=1.0)
    errors_before = counted("error")
    for _ in range(3):
        await send_due(box)
        await clock.advance(5)
    gone, busy = await rows(db)
    assert (gone.state, gone.attempts, gone.last_error) == (NOTIFICATION_FAILED, 1, "HTTP 404")
    assert (busy.state, busy.attempts, busy.last_error) == (NOTIFICATION_FAILED, 2, "HTTP 429")
    assert receiver.deliveries("/gone") == ["gate:a:sample:1/0"]
    assert len(receiver.deliveries("/busy")) == 2
    assert counted("error") == errors_before + 2


async def test_a_hanging_receiver_delays_no_other_row_and_times_out(
    db: Database, receiver: Receiver
) -> None:
    receiver.script["/slow"] = ["hang"]
    await enqueue(db, gate_to(receiver.url + "/slow", name="slow"), "gate:slow:sample:1")
    await enqueue(db, gate_to(receiver.url + "/fast", name="fast"), "gate:fast:sample:1")
    clock = ManualClock(T0)
    box = NotificationOutbox(db, clock=clock, attempt_timeout=2.0, claim_ttl=5.0)
    await box.start()
    try:
        box.wake()
        await eventually(lambda: receiver.deliveries("/fast") != [])
        await eventually(lambda: box.sending == 1)
        slow, fast = await rows(db)
        # The fast row was sent and settled while the slow one's attempt was still open.
        assert fast.state == NOTIFICATION_DELIVERED
        assert (slow.attempts, slow.claimed_by is not None) == (0, True)
        await eventually(lambda: box.sending == 0)
        slow, fast = await rows(db)
    finally:
        await box.stop()
    assert fast.state == NOTIFICATION_DELIVERED
    assert (slow.state, slow.attempts, slow.last_error) == (
        NOTIFICATION_WAITING,
        1,
        "no answer in time",
    )


async def test_webhook_urls_and_secrets_never_reach_the_logs(
    db: Database, receiver: Receiver, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GONOGO_NOTIFY_SLACK", "signing-secret-42")
    secret_path = "/services/T0SECRET/B0SECRET/xoxb-secret-path"
    receiver.script[secret_path] = [404]
    refused = f"http://127.0.0.1:{free_port()}{secret_path}"  # nothing listens there
    gate = gate_to(receiver.url + secret_path, refused, secret_env="GONOGO_NOTIFY_SLACK")
    with capture_logs() as logs:
        await enqueue(db, gate, "gate:portal:sample:5")
        clock = ManualClock(T0)
        await send_due(outbox(db, clock, client))
    stored = await rows(db)
    text = repr(logs) + repr([row.last_error for row in stored])
    signature = stored[0].headers[SIGNATURE_HEADER]
    for secret in ("SECRET", "secret-path", "signing-secret-42", signature):
        assert secret not in text
    assert {log.get("receiver") for log in logs if "receiver" in log} == {"http://127.0.0.1"}
    assert [row.state for row in stored] == [NOTIFICATION_FAILED, NOTIFICATION_WAITING]


async def test_settled_rows_are_pruned_after_the_retention(
    db: Database, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    await enqueue(db, gate_to(receiver.url + "/a"), "gate:portal:sample:1")
    clock = ManualClock(T0)
    box = outbox(db, clock, client, retention=timedelta(days=1))
    await send_due(box)
    await clock.advance(timedelta(days=1, hours=2).total_seconds())
    await send_due(box)
    assert await rows(db) == []


async def test_a_key_that_cannot_be_a_header_is_refused(db: Database) -> None:
    gate = gate_to("http://127.0.0.1/a")
    with pytest.raises(ValueError, match="printable ASCII"):
        await enqueue(db, gate, "gate:portal\r\nX-Injected: 1")
    assert await rows(db) == []


async def test_a_sender_claims_no_more_rows_than_it_has_slots(
    db: Database, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.script["/hook"] = ["hang"] * 20
    for index in range(20):
        await enqueue(db, gate_to(receiver.url + "/hook"), f"gate:portal:sample:{index}")
    clock = ManualClock(T0)
    box = outbox(db, clock, client, concurrency=3)
    await box.run_due()
    await eventually(lambda: receiver.hanging == 3)
    claimed = [row for row in await rows(db) if row.claimed_by is not None]
    assert (box.sending, len(claimed)) == (3, 3)
    await box.run_due()  # no free slot: claims nothing more
    assert len([row for row in await rows(db) if row.claimed_by is not None]) == 3
    receiver.release.set()
    await box.idle()
