"""Taking a sample: concurrency, budgets, faults and placeholders (gates/sampler.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest

import gates.sampler
from gates.engine import CriterionOutcome, Decision, decide
from gates.model import Criterion, Gate
from gates.sampler import fill_query, placeholder_values, probe_budget, take_sample
from probes.base import Measurement, ProbeConfig, ProbeContext, ProbeQuery
from probes.prometheus import PrometheusProbe
from tests.fakeprobe import HANG, FakeProbe


def make_gate(
    *criteria: Mapping[str, Any], probes: tuple[str, ...] = ("p",), **fields: Any
) -> Gate:
    return Gate(
        name="portal",
        probes={name: ProbeConfig(type="fake") for name in probes},
        criteria=[Criterion(**{"probe": "p", **c}) for c in criteria],
        **fields,
    )


async def test_a_hanging_probe_is_cut_off_and_the_others_still_complete(
    monkeypatch: pytest.MonkeyPatch, now: datetime
) -> None:
    monkeypatch.setattr(gates.sampler, "probe_budget", lambda probe: 0.05)
    gate = make_gate(
        {"name": "stuck", "probe": "slow", "go": "> 0"},
        {"name": "healthy", "probe": "fast", "go": "> 0"},
        probes=("slow", "fast"),
    )
    slow, fast = FakeProbe(HANG), FakeProbe(0.7)

    sample = await asyncio.wait_for(
        take_sample(gate, {"slow": slow, "fast": fast}, now=now, values={}), timeout=10
    )

    stuck, healthy = sample.results
    assert stuck.outcome is CriterionOutcome.INCONCLUSIVE
    assert stuck.reason == "no answer within 0.05s"
    assert slow.cancelled == 1  # the hung request is abandoned, not left running
    assert (healthy.outcome, healthy.value) == (CriterionOutcome.PASS, 0.7)


def test_the_budget_covers_every_try_and_its_backoff() -> None:
    assert probe_budget(FakeProbe(timeout=5.0, retries=0)) == 6.0
    # 3 tries of 5 s, 2 backoffs of up to 2 s, and 1 s of slack
    assert probe_budget(FakeProbe(timeout=5.0, retries=2)) == 5.0 * 3 + 2.0 * 2 + 1.0


async def test_a_raising_probe_is_inconclusive_for_its_own_criterion(now: datetime) -> None:
    gate = make_gate(
        {"name": "broken", "probe": "bad", "go": "> 0"},
        {"name": "fine", "probe": "good", "go": "> 0"},
        probes=("bad", "good"),
    )
    sample = await take_sample(
        gate, {"bad": FakeProbe(RuntimeError("boom")), "good": FakeProbe(1.0)}, now=now, values={}
    )
    broken, fine = sample.results
    assert broken.outcome is CriterionOutcome.INCONCLUSIVE
    assert broken.reason == "probe failed: RuntimeError: boom"
    assert fine.outcome is CriterionOutcome.PASS


async def test_criteria_are_measured_concurrently(now: datetime) -> None:
    first_started = asyncio.Event()
    second_started = asyncio.Event()

    async def wait_for_other(
        mine: asyncio.Event, other: asyncio.Event, ctx: ProbeContext
    ) -> Measurement:
        mine.set()
        await asyncio.wait_for(other.wait(), timeout=5)  # deadlocks if measured one by one
        return Measurement.ok(1.0, ctx.now)

    class Rendezvous(FakeProbe):
        def __init__(self, mine: asyncio.Event, other: asyncio.Event) -> None:
            super().__init__()
            self.mine, self.other = mine, other

        async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
            return await wait_for_other(self.mine, self.other, ctx)

    gate = make_gate(
        {"name": "a", "probe": "a", "go": "> 0"},
        {"name": "b", "probe": "b", "go": "> 0"},
        probes=("a", "b"),
    )
    probes = {
        "a": Rendezvous(first_started, second_started),
        "b": Rendezvous(second_started, first_started),
    }
    sample = await take_sample(gate, probes, now=now, values={})
    assert [r.outcome for r in sample.results] == [CriterionOutcome.PASS] * 2


async def test_placeholders_come_from_the_check_before_the_gate(now: datetime) -> None:
    gate = make_gate(
        {
            "name": "errors",
            "go": "< 1%",
            "query": 'errors{version=~"${version}", env="${environment}", ring="${ring}"}',
            "matchers": ['env="${environment}"'],
            "params": {"query": "release:${version}"},
        },
        vars={"version": ".+", "environment": "staging", "ring": "ring-0"},
    )
    values = placeholder_values(
        gate, version="2.4.1", check_vars={"environment": "production", "version": "ignored"}
    )
    probe = FakeProbe(0.001)
    await take_sample(gate, {"p": probe}, now=now, values=values)

    sent = probe.calls[0].query
    assert sent.query == 'errors{version=~"2.4.1", env="production", ring="ring-0"}'
    assert sent.matchers == ('env="production"',)
    assert dict(sent.params) == {"query": "release:2.4.1"}
    assert probe.calls[0].ctx.variables["version"] == "2.4.1"


def test_gate_vars_are_the_defaults_when_the_check_gives_none() -> None:
    gate = make_gate({"name": "x", "go": "> 0"}, vars={"version": ".+", "stage": "all"})
    assert placeholder_values(gate) == {"version": ".+", "stage": "all"}
    assert placeholder_values(gate, stage="ring-1")["stage"] == "ring-1"


async def test_an_unfilled_placeholder_is_inconclusive_and_named(now: datetime) -> None:
    gate = make_gate(
        {"name": "errors", "go": "< 1%", "query": 'errors{region="${region}"}'},
        {"name": "latency", "go": "< 2s", "query": "latency"},
    )
    probe = FakeProbe(0.001)
    sample = await take_sample(gate, {"p": probe}, now=now, values={})
    errors, latency = sample.results
    assert errors.outcome is CriterionOutcome.INCONCLUSIVE
    assert "${region}" in errors.reason
    assert [c.query.query for c in probe.calls] == ["latency"]  # the unfilled one never asked
    assert latency.outcome is CriterionOutcome.PASS
    gate_one = gate.model_copy(update={"steady_for": 1})
    assert decide(gate_one, [sample]).decision is Decision.NO_GO


async def test_an_unfilled_placeholder_in_the_volume_query_is_named(now: datetime) -> None:
    gate = make_gate(
        {
            "name": "errors",
            "go": "< 1%",
            "query": "errors",
            "min_volume": {"query": 'requests{tenant="${tenant}"}', "at_least": 1},
        }
    )
    sample = await take_sample(gate, {"p": FakeProbe(0.0)}, now=now, values={})
    assert sample.results[0].outcome is CriterionOutcome.INCONCLUSIVE
    assert "${tenant}" in sample.results[0].reason


async def test_min_volume_query_is_measured_beside_the_value(now: datetime) -> None:
    gate = make_gate(
        {
            "name": "errors",
            "go": "< 1%",
            "query": 'errors{v="${version}"}',
            "min_volume": {"query": 'requests{v="${version}"}', "at_least": 100},
        }
    )

    def answer(query: ProbeQuery, ctx: ProbeContext) -> float:
        return 42.0 if query.query == 'requests{v="1.0"}' else 0.002

    probe = FakeProbe(script=answer)
    sample = await take_sample(gate, {"p": probe}, now=now, values={"version": "1.0"})
    result = sample.results[0]
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert result.reason == "only 42 requests in window, need 100"
    volume_call = next(c for c in probe.calls if c.query.query == 'requests{v="1.0"}')
    assert volume_call.query.reduce == "sum"


async def test_a_probe_missing_from_the_mapping_is_inconclusive(now: datetime) -> None:
    gate = make_gate({"name": "x", "go": "> 0"})
    sample = await take_sample(gate, {}, now=now, values={})
    assert sample.results[0].outcome is CriterionOutcome.INCONCLUSIVE
    assert sample.results[0].reason == "probe 'p' is not available"


async def test_the_probe_sees_the_sample_instant_check_start_and_its_history(
    now: datetime,
) -> None:
    gate = make_gate(
        {"name": "up", "go": "> 0", "metric": "up"},
        {"name": "other", "go": "> 0", "metric": "other"},
    )
    probe = FakeProbe(script=lambda query, ctx: 1.0 if query.metric == "up" else 0.5)
    started = now - timedelta(minutes=5)
    first = await take_sample(gate, {"p": probe}, now=now, values={}, check_started_at=started)
    later = now + timedelta(seconds=30)
    await take_sample(gate, {"p": probe}, now=later, values={}, history=[first])

    assert all(c.ctx.check_started_at == started for c in probe.calls[:2])
    second_up = next(c for c in probe.calls[2:] if c.query.metric == "up")
    assert second_up.ctx.now == later
    assert second_up.ctx.check_started_at is None
    # Only this criterion's own earlier measurements, with their original instant.
    assert [(m.value, m.observed_at) for m in second_up.ctx.history] == [(1.0, now)]


async def test_the_sample_is_stamped_with_the_given_instant(now: datetime) -> None:
    gate = make_gate({"name": "x", "go": "> 0"})
    sample = await take_sample(gate, {"p": FakeProbe(1.0)}, now=now, values={})
    assert sample.evaluated_at == now
    assert sample.results[0].duration_ms is not None and sample.results[0].duration_ms >= 0


def test_fill_query_leaves_regex_dollars_alone() -> None:
    query = ProbeQuery(query='up{path=~"/api/.*$", v="${version}", price="$$5"}')
    filled = fill_query(query, {"version": "1.2"}, PrometheusProbe.quote)
    assert filled.query == 'up{path=~"/api/.*$", v="1.2", price="$5"}'


async def test_the_probe_is_told_the_interval_and_the_gap_bound(now: datetime) -> None:
    """What a probe needs to tell whether its window is covered (http availability)."""
    probe = FakeProbe(1.0)
    for interval, bound in (("30s", 90), ("1s", 10)):
        gate = make_gate({"name": "c", "go": "> 0"}, interval=interval)
        await take_sample(gate, {"p": probe}, now=now, values={})
        ctx = probe.calls[-1].ctx
        assert (ctx.interval, ctx.max_gap) == (gate.interval, timedelta(seconds=bound))
