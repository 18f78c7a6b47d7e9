"""The freshness rule itself (``app/gates/freshness.py``) and the scheduler's use of it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from app.gates.freshness import PublishedDecision, current_check_body
from gates.engine import Decision, Steady, Verdict, freshness_bound
from probes.timefmt import iso
from tests.app.fakes import T0, gate_yaml, make_gate
from tests.app.gates.test_scheduler import Runtime, runtime, started

__all__ = ["runtime"]  # the fixture, shared with the scheduler tests

decisions = st.sampled_from(list(Decision))
intervals = st.integers(min_value=1, max_value=3600).map(lambda s: timedelta(seconds=s))
offsets = st.integers(min_value=-10_000, max_value=20_000).map(lambda s: timedelta(seconds=s))


def verdict(decision: Decision, at: datetime = T0) -> Verdict:
    return Verdict(
        "portal", decision, at, ("why",) if decision is not Decision.GO else (), Steady(3, 3)
    )


@given(decision=decisions, interval=intervals, offset=offsets)
def test_a_decision_is_served_as_is_until_it_expires_then_stale_no_go(
    decision: Decision, interval: timedelta, offset: timedelta
) -> None:
    gate = make_gate(interval=interval)
    bound = freshness_bound(gate)
    assert bound == max(3 * interval, timedelta(seconds=10))
    published = PublishedDecision(verdict(decision), interval=interval, bound=bound)
    now = T0 + offset
    view = published.view(now)
    body = json.loads(view.body)
    assert body == view.as_dict()
    assert body["expires_at"] == iso(T0 + bound)
    if now < T0 + bound:
        assert view.verdict.decision is decision and not view.stale
    else:
        assert view.verdict.decision is Decision.NO_GO and view.stale
        assert body["decision"] == "no_go"
        assert body["reasons"][0].startswith(f"stale since {iso(T0 + bound)}: last evaluated")
        # The last reasons stay, after the stale one.
        assert body["reasons"][1:] == list(verdict(decision).reasons)
    # Whatever the instant, a go is only ever served before expires_at.
    assert (view.verdict.decision is Decision.GO) == (decision is Decision.GO and now < T0 + bound)


def test_the_stale_reason_says_since_when_and_the_expected_interval() -> None:
    published = PublishedDecision(
        verdict(Decision.GO, datetime(2026, 11, 24, 10, 2, 30, tzinfo=UTC)),
        interval=timedelta(seconds=30),
        bound=timedelta(seconds=90),
    )
    view = published.view(datetime(2026, 11, 24, 10, 4, tzinfo=UTC))
    assert view.verdict.reasons == (
        "stale since 2026-11-24T10:04:00Z: last evaluated 2026-11-24T10:02:30Z, expected every 30s",
    )


@given(decision=decisions, offset=offsets)
def test_a_running_checks_stored_body_goes_stale_the_same_way(
    decision: Decision, offset: timedelta
) -> None:
    bound = timedelta(seconds=30)
    body = {
        **verdict(decision).as_dict(),
        "expires_at": iso(T0 + bound),
    }
    now = T0 + offset
    current = current_check_body(body, now)
    if now < T0 + bound:
        assert current == body
    else:
        assert current["decision"] == "no_go"
        assert current["reasons"][0].startswith(f"stale since {iso(T0 + bound)}")


@given(decision=decisions, offset=offsets)
def test_a_running_checks_body_without_an_expiry_is_never_served_as_it_is(
    decision: Decision, offset: timedelta
) -> None:
    """A body judged by a definition gonogo no longer has (the gate removed) carries no
    ``expires_at``; nothing says until when its go holds, so it is never a go."""
    body = {**verdict(decision).as_dict(), "expires_at": None}
    current = current_check_body(body, T0 + offset)
    assert current["decision"] == "no_go"
    assert current["reasons"][0] == f"stale: last evaluated {iso(T0)}, and no expiry was recorded"


async def test_a_database_outage_longer_than_the_bound_shows_as_stale_then_recovers(
    runtime: Runtime,
) -> None:
    runtime.catalog.put_api_gate("portal", gate_yaml(steady_for=1))  # interval 30s, bound 90s
    await started(runtime)
    assert (latest := runtime.scheduler.latest("portal")) is not None
    assert latest.decision is Decision.GO

    runtime.sink.fail = True
    await runtime.tick()
    first_unstored = runtime.scheduler.history("portal")[-1].evaluated_at
    await runtime.tick(2)  # still within 90s of the first sample that was not stored
    assert (latest := runtime.scheduler.latest("portal")) is not None
    assert latest.decision is Decision.GO
    await runtime.tick()  # 90s after it: the outage shows
    assert (stale := runtime.scheduler.latest("portal")) is not None
    assert stale.decision is Decision.NO_GO
    assert stale.reasons[0].startswith(
        f"stale since {iso(first_unstored + timedelta(seconds=90))}:"
        f" no sample stored since {iso(first_unstored)}"
    )
    assert runtime.notifier.changes == [("portal", Decision.GO, None)]  # nothing sent

    runtime.sink.fail = False
    await runtime.tick()
    assert (back := runtime.scheduler.latest("portal")) is not None
    assert back.decision is Decision.GO
