"""The sentry probe's range reads (replays) against the local fake of Sentry's web API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from probes.base import Measurement, MeasurementStatus, ProbeContext, ProbeQuery, Series
from probes.sentry import MAX_BUCKETS_PER_READ, PAGE_SIZE, RANGE_MAX_PAGES, SentryProbe
from tests.fakes import Reply
from tests.fakes.sentry import PROJECT_ID, TOKEN, SentryFake
from tests.probes.test_probe_sentry import make_probe

HOUR = timedelta(hours=1)
T = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
async def fake() -> AsyncIterator[SentryFake]:
    served = SentryFake()
    async with served.serving():
        yield served


@pytest.fixture
async def probe(monkeypatch: pytest.MonkeyPatch, fake: SentryFake) -> AsyncIterator[SentryProbe]:
    monkeypatch.setenv("SENTRY_TOKEN", TOKEN)
    built = make_probe(fake.url, project=str(PROJECT_ID))
    yield built
    await built.aclose()


async def read(
    probe: SentryProbe, query: ProbeQuery, start: datetime, end: datetime, step: timedelta
) -> Series | Measurement:
    return await probe.measure_range(query, ProbeContext(now=end), start, end, step)


def points(answer: Series | Measurement) -> dict[datetime, float]:
    assert isinstance(answer, Series), answer
    return dict(answer.points)


# -- events --------------------------------------------------------------------------------------


async def test_events_are_one_hourly_stats_read_counting_the_whole_hours_before_each_step(
    probe: SentryProbe, fake: SentryFake
) -> None:
    fake.hourly_events = {T - HOUR: 5, T: 7, T + HOUR: 11}
    answer = await read(probe, ProbeQuery(metric="events"), T, T + 2 * HOUR, timedelta(minutes=30))
    got = points(answer)
    # The hour 10:00-11:00 counts from 11:00 on, never at 10:30 (its events were not all in yet).
    assert got == {
        T: 5.0,
        T + timedelta(minutes=30): 5.0,
        T + HOUR: 7.0,
        T + timedelta(minutes=90): 7.0,
        T + 2 * HOUR: 11.0,
    }
    [stats] = fake.requests
    assert stats.path.endswith("/stats_v2/")
    assert (stats.param("start"), stats.param("end"), stats.param("interval")) == (
        "2026-11-24T09:00:00Z",
        "2026-11-24T12:00:00Z",
        "1h",
    )
    assert stats.param("statsPeriod") is None
    assert (stats.param("category"), stats.param("outcome")) == ("error", "accepted")


async def test_an_events_window_of_several_hours_sums_them_and_quiet_hours_count_zero(
    probe: SentryProbe, fake: SentryFake
) -> None:
    fake.hourly_events = {T - 3 * HOUR: 2, T - HOUR: 4}
    query = ProbeQuery(metric="events", window=timedelta(hours=3))
    got = points(await read(probe, query, T, T + 2 * HOUR, HOUR))
    assert got == {T: 6.0, T + HOUR: 4.0, T + 2 * HOUR: 4.0}


async def test_a_month_of_hours_is_read_in_a_few_bounded_reads(
    probe: SentryProbe, fake: SentryFake
) -> None:
    start = T - timedelta(days=40)
    answer = await read(probe, ProbeQuery(metric="events"), start, T, HOUR)
    assert len(points(answer)) == 40 * 24 + 1

    def hours(seen: Any) -> float:
        asked = [datetime.fromisoformat(str(seen.param(k))) for k in ("start", "end")]
        return (asked[1] - asked[0]) / HOUR

    spans = [hours(r) for r in fake.requests]
    assert len(spans) == 2 and max(spans) <= MAX_BUCKETS_PER_READ


# -- new_issues ----------------------------------------------------------------------------------


async def test_new_issues_count_the_issues_first_seen_in_each_steps_window(
    probe: SentryProbe, fake: SentryFake
) -> None:
    fake.add_issue(T - timedelta(minutes=30))
    fake.add_issue(T + timedelta(minutes=5))
    fake.add_issue(T + timedelta(minutes=70))
    fake.add_issue(T + timedelta(hours=5))  # after the range: never asked for
    query = ProbeQuery(metric="new_issues", window=HOUR)
    got = points(await read(probe, query, T, T + 2 * HOUR, timedelta(minutes=30)))
    # A window is [t - 1h, t]: the issue first seen at 09:30 is still in at 10:30.
    assert got == {
        T: 1.0,
        T + timedelta(minutes=30): 2.0,
        T + HOUR: 1.0,
        T + timedelta(minutes=90): 1.0,
        T + 2 * HOUR: 1.0,
    }
    [issues] = fake.requests
    assert issues.param("sort") == "new"
    assert issues.param("query") == (
        "firstSeen:>=2026-11-24T09:00:00Z firstSeen:<=2026-11-24T12:00:00Z"
    )


async def test_new_issues_follow_the_link_header_across_pages(
    probe: SentryProbe, fake: SentryFake
) -> None:
    for index in range(250):
        fake.add_issue(T + timedelta(seconds=10 * index))
    query = ProbeQuery(metric="new_issues", window=HOUR)
    got = points(await read(probe, query, T + HOUR, T + HOUR, HOUR))
    assert got == {T + HOUR: 250.0}
    assert [r.param("cursor") for r in fake.requests] == [None, "0:100:0", "0:200:0"]


async def test_new_issues_past_the_page_bound_leave_the_oldest_steps_without_a_count(
    probe: SentryProbe, fake: SentryFake
) -> None:
    issues = RANGE_MAX_PAGES * PAGE_SIZE + 50
    for index in range(issues):
        fake.add_issue(T + timedelta(seconds=index))  # 10:00:00 onwards, one a second
    query = ProbeQuery(metric="new_issues", window=timedelta(minutes=10))
    answer = await read(probe, query, T, T + HOUR, timedelta(minutes=10))
    got = points(answer)
    assert len(fake.requests) == RANGE_MAX_PAGES
    # The 2,000 newest were read: from 10:00:50 on. A window reaching before that is unknown.
    assert T + timedelta(minutes=10) not in got and T not in got
    assert got[T + timedelta(minutes=20)] == 601.0  # [10:10:00, 10:20:00], both ends in
    assert got[T + HOUR] == 0.0


async def test_new_issues_past_the_page_bound_everywhere_is_an_error_not_a_low_count(
    probe: SentryProbe, fake: SentryFake
) -> None:
    for index in range(RANGE_MAX_PAGES * PAGE_SIZE + 1):
        fake.add_issue(T + timedelta(milliseconds=index))
    answer = await read(probe, ProbeQuery(metric="new_issues"), T + HOUR, T + HOUR, HOUR)
    assert isinstance(answer, Measurement)
    assert answer.status is MeasurementStatus.ERROR
    assert "more than 2000 new issues" in answer.detail


# -- crash_free_rate -----------------------------------------------------------------------------


async def test_crash_free_rate_is_crashed_over_all_sessions_of_the_whole_hours_in_its_window(
    probe: SentryProbe, fake: SentryFake
) -> None:
    fake.session_history["app@2.0"] = {
        T - HOUR: {"healthy": 90, "crashed": 10},
        T: {"healthy": 99, "crashed": 1, "errored": 100},
    }
    query = ProbeQuery(metric="crash_free_rate", params={"release": "app@2.0"}, window=2 * HOUR)
    got = points(await read(probe, query, T + HOUR, T + 2 * HOUR, HOUR))
    assert got == pytest.approx({T + HOUR: 1 - 11 / 300, T + 2 * HOUR: 1 - 1 / 200})
    [sessions] = fake.requests
    assert sessions.params("groupBy") == ["session.status"]
    assert sessions.param("field") == "sum(session)"
    assert sessions.param("query") == "release:app@2.0"


async def test_crash_free_rate_without_sessions_has_no_points(
    probe: SentryProbe, fake: SentryFake
) -> None:
    query = ProbeQuery(metric="crash_free_rate", params={"release": "app@9"})
    answer = await read(probe, query, T, T + HOUR, HOUR)
    assert isinstance(answer, Measurement)
    assert answer.status is MeasurementStatus.NO_DATA


async def test_a_check_supplied_release_is_quoted_as_the_instant_read_quotes_it(
    probe: SentryProbe, fake: SentryFake
) -> None:
    query = ProbeQuery(metric="crash_free_rate")
    ctx = ProbeContext(now=T, variables={"version": "app:2.0 beta"})
    await probe.measure(query, ctx)
    await probe.measure_range(query, ctx, T - HOUR, T, HOUR)
    instant, ranged = fake.requests
    assert ranged.param("query") == instant.param("query")
    assert ranged.param("query") != "release:app:2.0 beta"


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "status", "says"),
    [
        (Reply(status=401, json={"detail": "Invalid token"}), MeasurementStatus.ERROR, "token_env"),
        (Reply(json={"intervals": "soon"}), MeasurementStatus.ERROR, "unexpected response"),
        (
            Reply(json={"intervals": ["2026-11-24T09:00:00Z"], "groups": [{"series": {}}]}),
            MeasurementStatus.ERROR,
            "unexpected response",
        ),
    ],
)
async def test_a_failed_range_read_is_inconclusive_with_its_cause(
    probe: SentryProbe, fake: SentryFake, reply: Reply, status: MeasurementStatus, says: str
) -> None:
    fake.script(reply)
    answer = await read(probe, ProbeQuery(metric="events"), T, T + HOUR, HOUR)
    assert isinstance(answer, Measurement)
    assert answer.status is status
    assert says in answer.detail
    assert TOKEN not in answer.detail


async def test_a_rate_limited_range_read_says_when_the_limit_resets(
    probe: SentryProbe, fake: SentryFake
) -> None:
    fake.script(fake.rate_limited())
    answer = await read(probe, ProbeQuery(metric="new_issues"), T, T + HOUR, HOUR)
    assert isinstance(answer, Measurement)
    assert "limit resets at" in answer.detail


def test_a_non_finite_bucket_is_an_error() -> None:
    from probes.sentry import _hourly, _Unexpected

    body: dict[str, Any] = {
        "intervals": ["2026-11-24T09:00:00Z"],
        "groups": [{"by": {}, "series": {"sum(quantity)": [float("nan")]}}],
    }
    with pytest.raises(_Unexpected, match="nan"):
        _hourly(body, "sum(quantity)")


# -- in a replay -----------------------------------------------------------------------------


async def test_a_sentry_criterion_is_replayed_with_one_range_read(
    probe: SentryProbe, fake: SentryFake
) -> None:
    from gates.engine import Decision
    from gates.loader import load_gate_text
    from gates.replay import replay
    from gates.sampler import placeholder_values

    g = load_gate_text(
        "interval: 10m\nsteady_for: 2\nprobes:\n"
        "  sentry: {type: sentry, org: o, project: '2', token_env: GONOGO_PROBE_SENTRY}\n"
        "criteria:\n"
        '  - {name: errors, probe: sentry, metric: events, go: "< 10"}\n',
        name="release",
        source="release.yaml",
    )
    fake.hourly_events = {T - HOUR: 3, T: 50, T + HOUR: 4}
    replayed = await replay(
        g, {"sentry": probe}, values=placeholder_values(g), start=T, end=T + 3 * HOUR
    )
    (report,) = replayed.criteria
    assert report.replayable and report.reads == 1 and not report.failed_reads
    assert len(fake.requests) == 1
    decided = {s.at: s.verdict.decision for s in replayed.steps}
    # 10:00-11:00 had 50 events: every step from 11:00 to 11:50 sees it, and no other.
    assert all(decided[T + HOUR + timedelta(minutes=m)] is Decision.NO_GO for m in (0, 50))
    assert decided[T + timedelta(minutes=50)] is Decision.GO
    assert decided[T + 2 * HOUR + timedelta(minutes=10)] is Decision.GO
