"""History on the status page and a check's own page, from stored rows (SQLite and
PostgreSQL): decision spans with gaps, sparklines against thresholds, worst-first cards,
recent checks, the check page and its JSON, 404s, escaping, and the bounded reads."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from app.core.db import Database
from app.web import check_page, history
from app.web.history import (
    BAND_SLOTS,
    GAP,
    SPARK_SLOTS,
    Span,
    band,
    decision_spans,
    gate_history,
    worst_first,
)
from gates.engine import Decision, Verdict
from tests.app.web.history_fakes import (
    FINAL_ID,
    HOSTILE,
    RUNNING_ID,
    SECRET_COMMENT,
    SECRET_METADATA,
    seed_checks,
    seed_history,
    slow_gate,
)
from tests.app.web.status_fakes import (
    T0,
    FakeCatalog,
    FakeLoaded,
    FakeScheduler,
    make_gate,
    status_app,
    verdict,
)

MINUTE = timedelta(minutes=1)
BOUND = timedelta(seconds=10)


def test_spans_follow_samples_and_show_gaps_where_no_sample_was_taken() -> None:
    start, end = T0 - 10 * MINUTE, T0
    points = [
        (T0 - 8 * MINUTE, "go"),
        (T0 - 8 * MINUTE + timedelta(seconds=5), "go"),
        # 2 minutes without a sample: a gap once the last go has expired (10 s bound).
        (T0 - 6 * MINUTE, "rollback"),
        (T0 - 6 * MINUTE + timedelta(seconds=10), "no_go"),
    ]
    spans = decision_spans(points, start=start, end=end, bound=BOUND)
    assert spans == [
        Span(start, T0 - 8 * MINUTE, GAP),
        Span(T0 - 8 * MINUTE, T0 - 8 * MINUTE + timedelta(seconds=15), "go"),
        Span(T0 - 8 * MINUTE + timedelta(seconds=15), T0 - 6 * MINUTE, GAP),
        Span(T0 - 6 * MINUTE, T0 - 6 * MINUTE + timedelta(seconds=10), "rollback"),
        Span(
            T0 - 6 * MINUTE + timedelta(seconds=10),
            T0 - 6 * MINUTE + timedelta(seconds=20),
            "no_go",
        ),
        Span(T0 - 6 * MINUTE + timedelta(seconds=20), end, GAP),
    ]
    assert decision_spans([], start=start, end=end, bound=BOUND) == [Span(start, end, GAP)]


def test_cards_sort_rollback_then_no_go_then_go() -> None:
    cards = [
        {"name": "a-go", "decision": "go"},
        {"name": "b-rollback", "decision": "rollback"},
        {"name": "c-stale", "decision": "no_go"},
        {"name": "a-no-go", "decision": "no_go"},
    ]
    assert [c["name"] for c in worst_first(cards)] == ["b-rollback", "a-no-go", "c-stale", "a-go"]


async def test_a_stale_go_sorts_with_the_no_gos() -> None:
    catalog = FakeCatalog([FakeLoaded(make_gate(n)) for n in ("alpha", "beta", "gamma")])
    scheduler = FakeScheduler(
        {
            "alpha": verdict("alpha", Decision.GO, 0.9995),
            "beta": verdict("beta", Decision.GO, 0.9995),
            "gamma": verdict("gamma", Decision.ROLLBACK, 0.9, passes=0),
        }
    )
    app = status_app(catalog, scheduler)
    async with _client(app) as client:
        scheduler.now = T0 + timedelta(seconds=5)
        fresh = (await client.get("/status.json")).json()["gates"]
        # beta is not evaluated again: expired, shown as a stale no_go.
        scheduler.now = T0 + timedelta(seconds=11)
        scheduler.verdicts["alpha"] = _at(verdict("alpha", Decision.GO, 0.9995), 10)
        scheduler.verdicts["gamma"] = _at(verdict("gamma", Decision.ROLLBACK, 0.9, passes=0), 10)
        later = (await client.get("/status.json")).json()["gates"]
    assert [g["name"] for g in fresh] == ["gamma", "alpha", "beta"]
    assert [(g["name"], g["decision"]) for g in later] == [
        ("gamma", "rollback"),
        ("beta", "no_go"),
        ("alpha", "go"),
    ]


def _at(v: Verdict, seconds: int) -> Verdict:
    return Verdict(
        v.gate, v.decision, T0 + timedelta(seconds=seconds), v.reasons, v.steady, v.criteria
    )


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gonogo")


@pytest.fixture
async def history_app(database_url: str) -> AsyncIterator[tuple[FastAPI, Database]]:
    db = Database(database_url)
    await seed_history(db)
    await seed_checks(db)
    catalog = FakeCatalog([FakeLoaded(slow_gate("portal")), FakeLoaded(make_gate("billing"))])
    scheduler = FakeScheduler(
        {
            "portal": verdict("portal", Decision.GO, 0.9995),
            "billing": verdict("billing", Decision.ROLLBACK, 0.9, passes=0),
        }
    )
    app = status_app(catalog, scheduler)
    app.state.db = db
    try:
        yield app, db
    finally:
        await db.dispose()


def _section(html: str, gate: str) -> str:
    match = re.search(rf'<section class="history" data-history="{gate}".*?</section>', html, re.S)
    assert match is not None, f"no history section for {gate}"
    return match.group(0)


async def test_status_page_shows_each_gates_timeline_and_sparklines(
    history_app: tuple[FastAPI, Database],
) -> None:
    app, _ = history_app
    async with _client(app) as client:
        response = await client.get("/")
    assert response.status_code == 200
    html = response.text
    portal = _section(html, "portal")
    decisions = re.findall(r'<rect class="span span-(\w+)"', portal)
    # The hour before the window's go stretch is empty, then go, a 10-minute gap,
    # rollback, and no_go up to now; the sample older than the window is not read.
    assert decisions == ["gap", "go", "gap", "rollback", "no_go"]
    assert "(601 samples" in portal
    sparks = re.findall(r'<svg class="spark".*?</svg>', portal, re.S)
    assert len(sparks) == 2
    availability, latency = sparks
    assert availability.count("threshold-go") == 1
    assert availability.count("threshold-rollback") == 1
    assert latency.count("threshold-go") == 1 and "threshold-rollback" not in latency
    # 601 values thinned to each slot's lowest and highest: the rollback dip (0.90, the
    # bottom of the scale) and the go values (0.9995, the top) are both still drawn.
    points = re.findall(r"(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)", availability)
    assert 0 < len(points) <= 2 * SPARK_SLOTS
    assert {y for _, y in points} >= {"37.0", "3.0"}
    # A gate with no stored sample: one gap over the whole window.
    billing = _section(html, "billing")
    assert re.findall(r'<rect class="span span-(\w+)"', billing) == ["gap"]
    # Worst first: billing (rollback) before portal (go).
    assert html.index('data-gate="billing"') < html.index('data-gate="portal"')


async def test_recent_checks_list_final_checks_with_who_decided_and_a_link(
    history_app: tuple[FastAPI, Database],
) -> None:
    app, _ = history_app
    async with _client(app) as client:
        html = (await client.get("/")).text
    recent = re.search(r'<section id="recent".*?</section>', html, re.S)
    assert recent is not None
    rows = re.findall(r'<tr data-recent="(\w+)">(.*?)</tr>', recent.group(0), re.S)
    assert [check_id for check_id, _ in rows] == [FINAL_ID, "b" * 32]  # newest first
    hostile_row = rows[0][1]
    assert f'href="/checks/{FINAL_ID}"' in hostile_row
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;amp;" in hostile_row
    assert "alice" in hostile_row and "4m" in hostile_row and "rollback" in hostile_row
    assert "engine" in rows[1][1] and "5m" in rows[1][1]
    assert RUNNING_ID not in recent.group(0)
    assert "<script>alert" not in html
    assert SECRET_METADATA not in html


async def test_one_render_reads_two_bounded_queries_and_no_probe(
    history_app: tuple[FastAPI, Database],
) -> None:
    app, db = history_app
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with _client(app) as client:
            assert (await client.get("/")).status_code == 200
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 2, statements
    samples, checks = reads
    assert "row_number() OVER" in samples and "LIMIT" not in samples.upper().split("OVER")[0]
    assert "samples.evaluated_at >" in samples and "newest <=" in samples
    assert "LIMIT" in checks.upper()


async def test_the_check_page_shows_timeline_signoffs_reasons_and_escapes_stored_text(
    history_app: tuple[FastAPI, Database],
) -> None:
    app, _ = history_app
    async with _client(app) as client:
        page = await client.get(f"/checks/{FINAL_ID}")
        data = await client.get(f"/checks/{FINAL_ID}.json")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;amp;" in html  # version, reason
    assert SECRET_METADATA not in html and SECRET_COMMENT not in html and "acme" not in html
    assert re.findall(r'<rect class="span span-(\w+)"', html) == ["no_go", "rollback"]
    assert "<strong>uat</strong> by alice" in html
    assert "<strong>override</strong> by alice · rollback" in html
    body = data.json()
    assert data.status_code == 200
    assert (body["id"], body["state"], body["decision"], body["decided_by"]) == (
        FINAL_ID,
        "final",
        "rollback",
        "alice",
    )
    assert body["version"] == HOSTILE
    assert body["reasons"] == [f"manual rollback by alice: {HOSTILE}"]
    assert body["signoffs"] == [
        {"signoff": "uat", "signed_by": "alice", "signed_at": "2026-11-24T09:48:00Z"}
    ]
    assert [e["kind"] for e in body["events"]] == ["created", "override"]
    assert len(body["samples"]) == 49 and body["samples"][0]["decision"] == "rollback"
    assert body["time_left"] is None and body["deadline"] == "2026-11-24T09:56:00Z"
    text = data.text
    assert SECRET_METADATA not in text and SECRET_COMMENT not in text and "acme" not in text


async def test_a_running_checks_page_reads_its_decision_through_freshness(
    history_app: tuple[FastAPI, Database],
) -> None:
    app, _ = history_app
    async with _client(app) as client:
        page = await client.get(f"/checks/{RUNNING_ID}")
        body = (await client.get(f"/checks/{RUNNING_ID}.json")).json()
    # Its latest go was evaluated a minute ago and expired 50 s ago: a stale no_go.
    assert body["decision"] == "no_go"
    assert body["reasons"][0].startswith("stale since 2026-11-24T09:59:10Z")
    assert body["time_left"] == "10m"
    assert body["timeline"]["spans"] == [
        {
            "decision": "gap",
            "x": 0.0,
            "width": 600.0,
            "from": "2026-11-24T09:57:00Z",
            "to": "2026-11-24T10:00:00Z",
            "title": "no sample from 2026-11-24T09:57:00Z to 2026-11-24T10:00:00Z (3m)",
        }
    ]
    assert page.status_code == 200
    assert "NO GO" in page.text and "10m left" in page.text
    assert '<meta http-equiv="refresh"' in page.text


@pytest.mark.parametrize(
    "check_id", ["0" * 32, "<img src=x onerror=alert(1)>", "x" * 200, "a%00b", "%E2%80%AE"]
)
async def test_an_unknown_check_is_a_404_page_never_a_5xx(
    history_app: tuple[FastAPI, Database], check_id: str
) -> None:
    app, _ = history_app
    async with _client(app) as client:
        page = await client.get(f"/checks/{check_id}")
        data = await client.get(f"/checks/{check_id}.json")
    assert page.status_code == 404, page.text
    assert "No such check" in page.text and "<img" not in page.text
    assert data.status_code == 404
    assert data.headers["content-type"] == "application/problem+json"


def test_a_short_rollback_in_a_long_go_is_still_drawn() -> None:
    start, end = T0 - 3 * 60 * MINUTE, T0
    spans = [
        Span(start, T0 - 60 * MINUTE, "go"),
        Span(T0 - 60 * MINUTE, T0 - 60 * MINUTE + timedelta(seconds=5), "rollback"),
        Span(T0 - 60 * MINUTE + timedelta(seconds=5), end, "go"),
    ]
    drawn = band(spans, start=start, end=end)
    assert [d["decision"] for d in drawn] == ["go", "rollback", "go"]
    assert (
        len(
            band(
                [
                    Span(start + i * MINUTE, start + (i + 1) * MINUTE, "go" if i % 2 else GAP)
                    for i in range(180)
                ],
                start=start,
                end=end,
            )
        )
        <= BAND_SLOTS
    )


def test_a_capped_read_starts_the_band_at_its_oldest_row_not_with_a_gap() -> None:
    gate = slow_gate("portal")
    rows = [(T0 - timedelta(seconds=30 * k), "go", []) for k in range(20, 0, -1)]
    capped = gate_history(gate, rows, now=T0, capped=True)
    assert [s["decision"] for s in capped["spans"]] == ["go"]
    assert capped["from"] == "2026-11-24T09:50:00Z" and capped["window"] == "10m"
    uncapped = gate_history(gate, rows, now=T0)
    assert [s["decision"] for s in uncapped["spans"]] == ["gap", "go"]


async def test_one_history_read_serves_every_render_for_ten_seconds(
    history_app: tuple[FastAPI, Database],
) -> None:
    app, db = history_app
    statements: list[str] = []
    event.listen(db.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    clock = app.state.clock
    async with _client(app) as client:
        for _ in range(3):
            assert (await client.get("/")).status_code == 200
        assert len(statements) == 2
        clock.moment = T0 + timedelta(seconds=10)
        assert (await client.get("/")).status_code == 200
    assert len(statements) == 4


async def test_a_long_checks_band_starts_at_its_oldest_sample_read(
    history_app: tuple[FastAPI, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hostile check has 49 samples; read only its newest 10.
    monkeypatch.setattr(check_page, "CHECK_SAMPLES", 10)
    app, _ = history_app
    async with _client(app) as client:
        body = (await client.get(f"/checks/{FINAL_ID}.json")).json()
    assert len(body["samples"]) == 10
    assert body["timeline"]["from"] == "2026-11-24T09:49:15Z"
    assert [s["decision"] for s in body["timeline"]["spans"]] == ["rollback"]


async def test_a_database_that_does_not_answer_gives_the_page_without_history(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'gonogo.db'}")
    app = status_app(
        FakeCatalog([FakeLoaded(slow_gate("portal"))]),
        FakeScheduler({"portal": verdict("portal", Decision.GO, 0.9995)}),
    )
    app.state.db = db
    try:
        async with _client(app) as client:
            response = await client.get("/")
    finally:
        await db.dispose()
    assert response.status_code == 200
    assert "No history shown: the database did not answer in time." in response.text
    assert "Recent checks are not shown" in response.text
    assert 'data-gate="portal"' in response.text


async def test_a_failed_history_read_is_kept_so_renders_do_not_queue_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the database is away each read waits out its timeout; renders queued behind
    the one read at a time would wait out one each. The failed read is kept instead."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'gonogo.db'}")
    reads: list[object] = []
    real = history.read_history

    async def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        reads.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(history, "read_history", counted)
    app = status_app(
        FakeCatalog([FakeLoaded(slow_gate("portal"))]),
        FakeScheduler({"portal": verdict("portal", Decision.GO, 0.9995)}),
    )
    app.state.db = db
    try:
        async with _client(app) as client:
            pages = [await client.get("/") for _ in range(3)]
    finally:
        await db.dispose()
    assert [p.status_code for p in pages] == [200, 200, 200]
    assert all("No history shown" in p.text for p in pages)
    assert len(reads) == 1
