"""The sentry probe against a local fake speaking Sentry's web API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gates.loader import check_gate_text
from probes.base import MeasurementStatus, ProbeContext, ProbeQuery
from probes.client import MissingSecret
from probes.registry import probe_type
from probes.sentry import (
    MAX_PAGES,
    SentryConfig,
    SentryProbe,
    next_cursor,
    stats_period,
)
from tests.fakes import Reply
from tests.fakes.sentry import ORG, PROJECT, PROJECT_ID, RESET_AT, TOKEN, SentryFake


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_TOKEN", TOKEN)


@pytest.fixture
async def fake() -> AsyncIterator[SentryFake]:
    served = SentryFake()
    async with served.serving():
        yield served


def make_probe(url: str, **overrides: Any) -> SentryProbe:
    config = SentryConfig.model_validate(
        {
            "type": "sentry",
            "url": url,
            "org": ORG,
            "project": PROJECT,
            "token_env": "SENTRY_TOKEN",
            "timeout": 2.0,
            "retries": 0,
            **overrides,
        }
    )
    return SentryProbe(config, name="errors")


@pytest.fixture
async def probe(token: None, fake: SentryFake) -> AsyncIterator[SentryProbe]:
    built = make_probe(fake.url)
    yield built
    await built.aclose()


PAGE_CAP_ISSUES = MAX_PAGES * 100 + 5


def new_issues(query: str | None = None, **fields: Any) -> ProbeQuery:
    return ProbeQuery(metric="new_issues", params={"query": query} if query else {}, **fields)


# -- new_issues --------------------------------------------------------------------------------


async def test_new_issues_counts_issues_first_seen_since_the_check_began(
    probe: SentryProbe, fake: SentryFake, now: datetime
) -> None:
    started = now - timedelta(minutes=10)
    fake.add_issue(started - timedelta(days=3), level="fatal")  # old: not new
    fake.add_issue(started + timedelta(minutes=2), level="fatal")
    fake.add_issue(started + timedelta(minutes=3), level="error")  # other level

    measurement = await probe.measure(
        new_issues("level:fatal"), ProbeContext(now=now, check_started_at=started)
    )

    assert (measurement.status, measurement.value) == (MeasurementStatus.OK, 1.0)
    assert measurement.detail == (
        "sentry: 1 new issues since 2026-11-24T09:50:00Z matching 'level:fatal'"
    )
    [seen] = fake.requests
    assert seen.path == f"/api/0/projects/{ORG}/{PROJECT}/issues/"
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.param("query") == "level:fatal firstSeen:>=2026-11-24T09:50:00Z"
    assert seen.param("limit") == "100"


async def test_without_a_check_new_issues_look_back_over_the_window(
    probe: SentryProbe, fake: SentryFake, now: datetime
) -> None:
    fake.add_issue(now - timedelta(minutes=90))
    fake.add_issue(now - timedelta(minutes=30))
    default = await probe.measure(new_issues(), ProbeContext(now=now))
    assert default.value == 1.0  # default window 1h
    wider = await probe.measure(new_issues(window=timedelta(hours=2)), ProbeContext(now=now))
    assert wider.value == 2.0


async def test_no_issues_is_zero_not_no_data(
    probe: SentryProbe, fake: SentryFake, now: datetime
) -> None:
    measurement = await probe.measure(new_issues("level:fatal"), ProbeContext(now=now))
    assert (measurement.status, measurement.value) == (MeasurementStatus.OK, 0.0)


async def test_new_issues_follow_link_pagination(
    probe: SentryProbe, fake: SentryFake, now: datetime
) -> None:
    for minutes in range(250):
        fake.add_issue(now - timedelta(seconds=minutes))
    measurement = await probe.measure(new_issues(), ProbeContext(now=now))
    assert measurement.value == 250.0
    assert [r.param("cursor") for r in fake.requests] == [None, "0:100:0", "0:200:0"]


async def test_new_issues_stop_at_the_page_cap_and_say_so(
    probe: SentryProbe, fake: SentryFake, now: datetime
) -> None:
    for seconds in range(PAGE_CAP_ISSUES):
        fake.add_issue(now - timedelta(milliseconds=seconds))
    measurement = await probe.measure(new_issues(), ProbeContext(now=now))
    assert measurement.value == float(MAX_PAGES * 100)
    assert f"stopped after {MAX_PAGES} pages" in measurement.detail
    assert len(fake.requests) == MAX_PAGES


async def test_issues_older_than_since_are_not_counted_even_if_the_server_returns_them(
    probe: SentryProbe, fake: SentryFake, now: datetime
) -> None:
    old = fake.add_issue(now - timedelta(days=2))
    fake.script(Reply(json=[old]))
    measurement = await probe.measure(new_issues(), ProbeContext(now=now))
    assert measurement.value == 0.0


def test_next_cursor_reads_sentrys_link_header() -> None:
    link = (
        "<https://sentry.io/api/0/organizations/acme/issues/123456/events/?&cursor=0:0:1>;"
        ' rel="previous"; results="false"; cursor="0:0:1",'
        " <https://sentry.io/api/0/organizations/acme/issues/123456/events/?&cursor=0:100:0>;"
        ' rel="next"; results="true"; cursor="0:100:0"'
    )
    assert next_cursor(link) == "0:100:0"
    assert next_cursor(link.replace('results="true"', 'results="false"')) is None
    assert next_cursor("") is None


# -- events ------------------------------------------------------------------------------------


async def test_events_sums_accepted_error_events_and_resolves_the_project_id(
    probe: SentryProbe, fake: SentryFake, now: datetime
) -> None:
    fake.error_events = 42
    measurement = await probe.measure(ProbeQuery(metric="events"), ProbeContext(now=now))
    assert (measurement.status, measurement.value) == (MeasurementStatus.OK, 42.0)
    details, stats = fake.requests
    assert details.path == f"/api/0/projects/{ORG}/{PROJECT}/"
    assert stats.path == f"/api/0/organizations/{ORG}/stats_v2/"
    assert stats.param("project") == str(PROJECT_ID)
    assert (stats.param("field"), stats.param("groupBy")) == ("sum(quantity)", "outcome")
    assert (stats.param("category"), stats.param("outcome")) == ("error", "accepted")
    assert (stats.param("statsPeriod"), stats.param("interval")) == ("1h", "1h")

    await probe.measure(ProbeQuery(metric="events"), ProbeContext(now=now))
    assert len(fake.requests) == 3  # the project id is resolved once


async def test_a_numeric_project_needs_no_lookup(
    token: None, fake: SentryFake, now: datetime
) -> None:
    probe = make_probe(fake.url, project=str(PROJECT_ID))
    fake.error_events = 7
    try:
        measurement = await probe.measure(
            ProbeQuery(metric="events", window=timedelta(minutes=90)), ProbeContext(now=now)
        )
    finally:
        await probe.aclose()
    assert measurement.value == 7.0
    [stats] = fake.requests
    assert stats.param("statsPeriod") == "90m"


async def test_no_groups_means_no_error_events(
    probe: SentryProbe, fake: SentryFake, now: datetime
) -> None:
    measurement = await probe.measure(ProbeQuery(metric="events"), ProbeContext(now=now))
    assert (measurement.status, measurement.value) == (MeasurementStatus.OK, 0.0)


# -- crash_free_rate ---------------------------------------------------------------------------


async def test_crash_free_rate_of_the_checks_version_with_sessions_as_volume(
    probe: SentryProbe, fake: SentryFake, now: datetime
) -> None:
    fake.set_release("portal@2.4.0", 0.9975, 1200)
    measurement = await probe.measure(
        ProbeQuery(metric="crash_free_rate"),
        ProbeContext(now=now, variables={"version": "portal@2.4.0"}),
    )
    assert measurement.status is MeasurementStatus.OK
    assert (measurement.value, measurement.volume) == (0.9975, 1200.0)
    sessions = fake.requests[-1]
    assert sessions.path == f"/api/0/organizations/{ORG}/sessions/"
    assert sessions.params("field") == ["crash_free_rate(session)", "sum(session)"]
    assert sessions.param("query") == "release:portal@2.4.0"
    assert sessions.param("statsPeriod") == "1d"  # default window 24h


async def test_params_release_wins_and_environment_is_sent(
    token: None, fake: SentryFake, now: datetime
) -> None:
    probe = make_probe(fake.url, environment="production")
    fake.set_release("1.0", 0.5, 10)
    try:
        measurement = await probe.measure(
            ProbeQuery(metric="crash_free_rate", params={"release": "1.0"}),
            ProbeContext(now=now, variables={"version": "other"}),
        )
    finally:
        await probe.aclose()
    assert measurement.value == 0.5
    assert fake.requests[-1].param("environment") == "production"


async def test_unknown_release_is_no_data(
    probe: SentryProbe, fake: SentryFake, now: datetime
) -> None:
    measurement = await probe.measure(
        ProbeQuery(metric="crash_free_rate", params={"release": "nope@0"}), ProbeContext(now=now)
    )
    assert measurement.status is MeasurementStatus.NO_DATA
    assert "no sessions for release nope@0" in measurement.detail


async def test_a_null_rate_is_no_data(probe: SentryProbe, fake: SentryFake, now: datetime) -> None:
    fake.set_release("1.0", None, 0)
    measurement = await probe.measure(
        ProbeQuery(metric="crash_free_rate", params={"release": "1.0"}), ProbeContext(now=now)
    )
    assert measurement.status is MeasurementStatus.NO_DATA


async def test_crash_free_rate_without_a_release_says_how_to_give_one(
    probe: SentryProbe, now: datetime
) -> None:
    measurement = await probe.measure(ProbeQuery(metric="crash_free_rate"), ProbeContext(now))
    assert measurement.status is MeasurementStatus.ERROR
    assert "params.release" in measurement.detail


# -- errors ------------------------------------------------------------------------------------


async def test_invalid_token_names_the_variable_never_the_value(
    monkeypatch: pytest.MonkeyPatch, fake: SentryFake, now: datetime
) -> None:
    monkeypatch.setenv("SENTRY_TOKEN", "sntrys_WRONG_SECRET")
    probe = make_probe(fake.url)
    try:
        measurement = await probe.measure(new_issues(), ProbeContext(now=now))
    finally:
        await probe.aclose()
    assert measurement.status is MeasurementStatus.ERROR
    assert measurement.detail == (
        "sentry: HTTP 401 unauthorized: Invalid token — check token_env SENTRY_TOKEN"
    )
    assert "sntrys_WRONG_SECRET" not in measurement.detail + repr(probe)


async def test_rate_limited_says_when_the_limit_resets(
    probe: SentryProbe, fake: SentryFake, now: datetime
) -> None:
    fake.script(fake.rate_limited())
    measurement = await probe.measure(new_issues(), ProbeContext(now=now))
    assert measurement.status is MeasurementStatus.ERROR
    assert measurement.detail.startswith("sentry: rate limited (HTTP 429)")
    assert "too frequently" in measurement.detail
    reset = datetime.fromtimestamp(RESET_AT, UTC).isoformat().replace("+00:00", "Z")
    assert measurement.detail.endswith(f"; limit resets at {reset}")


async def test_unknown_project_is_an_error_with_sentrys_detail(
    token: None, fake: SentryFake, now: datetime
) -> None:
    probe = make_probe(fake.url, project="missing")
    try:
        measurement = await probe.measure(ProbeQuery(metric="events"), ProbeContext(now=now))
    finally:
        await probe.aclose()
    assert measurement.detail == (
        "sentry: HTTP 404 not found: The requested resource does not exist"
    )


def test_a_missing_token_variable_fails_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_TOKEN", raising=False)
    with pytest.raises(MissingSecret, match="token_env: environment variable SENTRY_TOKEN"):
        make_probe("http://127.0.0.1:9")


# -- config and static checks ------------------------------------------------------------------


def test_default_url_is_sentry_io_and_slugs_are_checked() -> None:
    base = {"type": "sentry", "org": "acme", "project": "web", "token_env": "T"}
    assert SentryConfig.model_validate(base).base_url() == "https://sentry.io"
    with pytest.raises(ValueError, match="project"):
        SentryConfig.model_validate({**base, "project": "../admin"})


def test_registered_under_its_entry_point() -> None:
    assert probe_type("sentry") is SentryProbe


@pytest.mark.parametrize(
    ("window", "period"),
    [
        (timedelta(hours=1), "1h"),
        (timedelta(days=2), "2d"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=45), "45s"),
    ],
)
def test_stats_period(window: timedelta, period: str) -> None:
    assert stats_period(window) == period


def test_check_query() -> None:
    assert SentryProbe.check_query(new_issues("level:fatal")) == []
    assert [f for f, _ in SentryProbe.check_query(ProbeQuery())] == ["metric"]
    assert [f for f, _ in SentryProbe.check_query(ProbeQuery(metric="crashes"))] == ["metric"]
    wrong_param = ProbeQuery(metric="events", params={"query": "x"})
    assert [f for f, _ in SentryProbe.check_query(wrong_param)] == ["params"]
    bare_query = ProbeQuery(metric="new_issues", query="level:fatal")
    [(field, message)] = SentryProbe.check_query(bare_query)
    assert field == "query"
    assert "params: {query: ...}" in message


def test_a_gate_file_with_a_sentry_probe_locates_a_bad_metric() -> None:
    text = """\
probes:
  errors: {type: sentry, org: caresync, project: portal, token_env: GONOGO_PROBE_SENTRY_TOKEN}
criteria:
  - {name: fatal, probe: errors, metric: new_issues, params: {query: "level:fatal"}, go: "== 0"}
  - {name: crashes, probe: errors, metric: crashes, go: "> 99%"}
"""
    gate, problems = check_gate_text(text, name="g", source="g.yaml")
    assert gate is None
    [problem] = problems
    assert problem.line == 5
    assert "metric: must be one of new_issues, events, crash_free_rate" in problem.message
