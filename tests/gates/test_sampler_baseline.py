"""A criterion's baseline run in a sample (gates/sampler.py): beside the canary's query,
at the same instant, within the same deadline and in-flight limit, quoted the same way."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest

import gates.sampler
from gates.engine import CriterionOutcome
from gates.model import Criterion, Gate
from gates.sampler import placeholder_values, take_sample
from probes.base import Measurement, ProbeConfig, ProbeContext, ProbeQuery, QuoteContext
from probes.prometheus import PrometheusProbe
from tests.fakeprobe import HANG, Call, FakeProbe

QUERY = 'sum(rate(errors{version=~"${version}"}[5m]))'


def make_gate(**criterion: Any) -> Gate:
    return Gate(
        name="portal",
        vars={"version": ".+", "baseline": "stable"},
        probes={"p": ProbeConfig(type="fake")},
        criteria=[
            Criterion(
                **{
                    "name": "errors",
                    "probe": "p",
                    "query": QUERY,
                    "baseline": {"vars": {"version": "${baseline}"}},
                    "go": "<= +10%",
                    "rollback": "> +50%",
                    **criterion,
                }
            )
        ],
    )


def check_values(gate: Gate, **check_vars: str) -> Mapping[str, str]:
    return placeholder_values(gate, version="1.4.2", check_vars=check_vars or None)


class Rendezvous(FakeProbe):
    """Answers only once ``expected`` calls are in flight together: a sampler that asked
    one after the other would wait forever (bounded by the test's timeout)."""

    def __init__(self, expected: int, answers: Mapping[str, float]) -> None:
        super().__init__()
        self.expected = expected
        self.answers = answers
        self.arrived = 0
        self.together = asyncio.Event()

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        self.calls.append(Call(query, ctx))
        self.arrived += 1
        if self.arrived == self.expected:
            self.together.set()
        await asyncio.wait_for(self.together.wait(), timeout=5)
        return Measurement.ok(self.answers[query.query or ""], ctx.now)


CANARY = 'sum(rate(errors{version=~"1.4.2"}[5m]))'
STABLE = 'sum(rate(errors{version=~"1.4.1"}[5m]))'


async def test_the_baseline_query_runs_concurrently_at_the_same_instant(now: datetime) -> None:
    gate = make_gate()
    probe = Rendezvous(2, {CANARY: 0.0123, STABLE: 0.01})
    sample = await asyncio.wait_for(
        take_sample(gate, {"p": probe}, now=now, values=check_values(gate, baseline="1.4.1")),
        timeout=10,
    )
    [result] = sample.results
    assert [c.query.query for c in probe.calls] == [CANARY, STABLE]
    assert [c.ctx.now for c in probe.calls] == [now, now]
    assert result.outcome is CriterionOutcome.FAIL
    assert result.reason == "0.0123 > 0.011 (baseline 0.01 +10%; go: <= +10%)"
    assert result.baseline is not None
    assert result.baseline.as_dict() == {"value": 0.01, "vars": {"version": "1.4.1"}}
    # The baseline run's probe sees its own values (a probe may read version from them).
    baseline_ctx = probe.calls[1].ctx
    assert baseline_ctx.variables["version"] == "1.4.1" and list(baseline_ctx.history) == []


async def test_min_volume_applies_to_the_canary_alone(now: datetime) -> None:
    volume = 'sum(increase(requests{version=~"${version}"}[5m]))'
    gate = make_gate(min_volume={"query": volume, "at_least": 100})
    canary_volume = 'sum(increase(requests{version=~"1.4.2"}[5m]))'
    probe = Rendezvous(3, {CANARY: 0.0105, STABLE: 0.01, canary_volume: 42.0})
    sample = await asyncio.wait_for(
        take_sample(gate, {"p": probe}, now=now, values=check_values(gate, baseline="1.4.1")),
        timeout=10,
    )
    assert sorted(c.query.query or "" for c in probe.calls) == sorted(
        [CANARY, STABLE, canary_volume]
    )
    [result] = sample.results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert result.reason == "only 42 requests in window, need 100"


async def test_a_hung_baseline_is_cut_off_at_the_sample_deadline(
    monkeypatch: pytest.MonkeyPatch, now: datetime
) -> None:
    monkeypatch.setattr(gates.sampler, "probe_budget", lambda probe: 0.05)
    gate = make_gate()

    def answer(query: ProbeQuery, ctx: ProbeContext) -> Any:
        return HANG if query.query == STABLE else 0.0123

    probe = FakeProbe(script=answer)
    sample = await asyncio.wait_for(
        take_sample(gate, {"p": probe}, now=now, values=check_values(gate, baseline="1.4.1")),
        timeout=10,
    )
    [result] = sample.results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert result.reason == "baseline (version=1.4.1): no answer within 0.05s"
    assert result.value == 0.0123
    assert probe.cancelled == 1


async def test_the_baseline_shares_the_probe_in_flight_limit(
    monkeypatch: pytest.MonkeyPatch, now: datetime
) -> None:
    monkeypatch.setattr(gates.sampler, "MAX_REQUESTS_PER_PROBE", 1)
    most = 0

    class Counting(FakeProbe):
        async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
            nonlocal most
            most = max(most, self.in_flight + 1)
            return await super().measure(query, ctx)

    probe = Counting(script=lambda query, ctx: 0.01 if query.query == STABLE else 0.0105)
    gate = make_gate()
    sample = await take_sample(
        gate, {"p": probe}, now=now, values=check_values(gate, baseline="1.4.1")
    )
    assert most == 1 and len(probe.calls) == 2
    assert sample.results[0].outcome is CriterionOutcome.PASS


QUOTED_CANARY = 'sum(rate(errors{version=~"1\\\\.4\\\\.2"}[5m]))'


class PromQLFake(FakeProbe):
    """Records queries as the prometheus type would write them."""

    def quote(self, value: str, context: QuoteContext) -> str:
        return PrometheusProbe.quote(value, context)


async def test_a_check_supplied_baseline_is_quoted_like_the_canary(now: datetime) -> None:
    gate = make_gate()
    probe = PromQLFake(0.01)
    await take_sample(gate, {"p": probe}, now=now, values=check_values(gate, baseline=".+"))
    canary, baseline = (c.query.query for c in probe.calls)
    assert canary == QUOTED_CANARY
    # '.+' selects the version named '.+', not every version.
    assert baseline == 'sum(rate(errors{version=~"\\\\.\\\\+"}[5m]))'


async def test_a_baseline_value_no_quoting_makes_safe_is_refused(now: datetime) -> None:
    gate = make_gate()
    probe = PromQLFake(0.01)
    crafted = '1.4.1"}[5m])) or vector(0) #'
    values = placeholder_values(gate, version="1.4.2", check_vars={"baseline": crafted})
    sample = await take_sample(gate, {"p": probe}, now=now, values=values)
    [result] = sample.results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert "the value a check supplied" in result.reason
    assert [c.query.query for c in probe.calls] == [QUOTED_CANARY]


async def test_a_baseline_that_asks_the_canary_question_is_inconclusive(now: datetime) -> None:
    gate = make_gate()
    probe = FakeProbe(0.01)
    sample = await take_sample(
        gate, {"p": probe}, now=now, values=check_values(gate, baseline="1.4.2")
    )
    [result] = sample.results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert "nothing to compare" in result.reason
    assert len(probe.calls) == 1


async def test_an_unfilled_baseline_placeholder_is_inconclusive_and_named(now: datetime) -> None:
    gate = make_gate(baseline={"vars": {"version": "${previous}"}})
    probe = FakeProbe(0.01)
    sample = await take_sample(gate, {"p": probe}, now=now, values=check_values(gate))
    [result] = sample.results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert "placeholder ${previous} has no value" in result.reason


async def test_the_gate_default_baseline_is_used_by_the_continuous_decision(
    now: datetime,
) -> None:
    gate = make_gate()
    probe = FakeProbe(script=lambda query, ctx: 0.01 if "stable" in (query.query or "") else 0.03)
    sample = await take_sample(gate, {"p": probe}, now=now, values=placeholder_values(gate))
    [result] = sample.results
    assert result.outcome is CriterionOutcome.BREACH
    assert result.reason == "0.03 > 0.015 (baseline 0.01 +50%; rollback: > +50%)"
    assert result.baseline is not None and result.baseline.vars == {"version": "stable"}
