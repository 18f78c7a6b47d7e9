"""compare: and slo: criteria: validation, and taking a sample with them (reads, quoting,
concurrency, faults, secrets)."""

from __future__ import annotations

import asyncio
import math
import textwrap
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar

import pytest

from gates.engine import CriterionOutcome, Decision, Sample, decide
from gates.errors import GateProblem, format_loc
from gates.loader import check_gate_text, load_gate_text
from gates.model import Gate
from gates.sampler import placeholder_values, take_sample
from probes.base import (
    Measurement,
    ProbeConfig,
    ProbeContext,
    ProbeQuery,
    QuoteContext,
    Series,
)
from probes.quoting import quote_promql

SECRET = "tok-very-secret-123456"

COMPARE_GATE = """\
    vars: {baseline: stable}
    probes:
      prom: {type: prometheus, url: "http://prometheus:9090"}
    criteria:
      - name: latency-vs-stable
        probe: prom
        query: 'latency{version="${version}"}'
        baseline: {vars: {version: "${baseline}"}}
        compare: {test: mann_whitney, window: 10m, step: 30s, confidence: 98%, effect: 10%,
                  rollback_effect: 50%, direction: increase}
    """

SLO_GATE = """\
    probes:
      prom: {type: prometheus, url: "http://prometheus:9090"}
    criteria:
      - name: checkout-slo
        probe: prom
        slo:
          objective: 99.9%
          errors: 'sum(rate(errors{version="${version}"}[${window}]))'
          total: 'sum(rate(requests{version="${version}"}[${window}]))'
    """


def gate_of(text: str) -> Gate:
    return load_gate_text(textwrap.dedent(text), name="portal", source="portal.yaml")


def problems_of(text: str) -> list[GateProblem]:
    gate, problems = check_gate_text(textwrap.dedent(text), name="portal", source="portal.yaml")
    assert gate is None and problems
    return problems


# -- validation ------------------------------------------------------------------------------


def test_valid_compare_and_slo_gates_load_with_their_defaults() -> None:
    compare = gate_of(COMPARE_GATE).criteria[0].compare
    assert compare is not None
    assert (compare.confidence, compare.effect, compare.rollback_effect) == (0.98, 0.1, 0.5)
    slo = gate_of(SLO_GATE).criteria[0].slo
    assert slo is not None and slo.objective == pytest.approx(0.999)
    assert [(w.long, w.short, w.burn_rate, w.then) for w in slo.windows] == [
        (timedelta(hours=1), timedelta(minutes=5), 14.4, "rollback"),
        (timedelta(hours=6), timedelta(minutes=30), 6, "no_go"),
    ]


def test_a_loaded_definition_round_trips_through_its_dump() -> None:
    for text in (COMPARE_GATE, SLO_GATE):
        gate = gate_of(text)
        again = Gate.model_validate(
            {**gate.model_dump(mode="json"), "probes": gate.probes}, strict=False
        )
        assert again.criteria == gate.criteria


SLO_PREFIX = SLO_GATE.split("        slo:")[0]


def slo_with(body: str) -> str:
    return SLO_PREFIX + textwrap.indent(textwrap.dedent(body), "        ")


BAD = [
    (
        "objective 100%",
        slo_with("""\
            slo:
              objective: 100%
              errors: 'e[${window}]'
              total: 't[${window}]'
            """),
        (7, 18),
        "criteria[0].slo.objective",
        "leaves no error budget",
    ),
    (
        "objective 0",
        slo_with("""\
            slo: {objective: 0, errors: 'e[${window}]', total: 't[${window}]'}
            """),
        (6, 22),
        "criteria[0].slo.objective",
        "above 0%",
    ),
    (
        "short not shorter than long",
        slo_with("""\
            slo:
              objective: 99.9%
              errors: 'e[${window}]'
              total: 't[${window}]'
              windows: [{long: 5m, short: 1h, burn_rate: 14.4, then: rollback}]
            """),
        (10, 17),
        "criteria[0].slo.windows[0]",
        "must be shorter than long",
    ),
    (
        "bad then",
        slo_with("""\
            slo:
              objective: 99.9%
              errors: 'e[${window}]'
              total: 't[${window}]'
              windows: [{long: 1h, short: 5m, burn_rate: 14.4, then: page}]
            """),
        (10, 62),
        "criteria[0].slo.windows[0].then",
        "'rollback' or 'no_go'",
    ),
    (
        "errors without ${window}",
        slo_with("""\
            slo:
              objective: 99.9%
              errors: 'sum(rate(errors[5m]))'
              total: 't[${window}]'
            """),
        (8, 15),
        "criteria[0].slo.errors",
        "must use ${window}",
    ),
    (
        "unknown key in a window pair",
        slo_with("""\
            slo:
              objective: 99.9%
              errors: 'e[${window}]'
              total: 't[${window}]'
              windows: [{long: 1h, short: 5m, burn: 14.4, then: rollback}]
            """),
        (10, 39),
        "criteria[0].slo.windows[0].burn",
        "unknown key 'burn'",
    ),
    (
        "unknown placeholder in total",
        slo_with("""\
            slo:
              objective: 99.9%
              errors: 'e[${window}]'
              total: 't{v="${verison}"}[${window}]'
            """),
        (9, 14),
        "criteria[0].slo.total",
        "placeholder ${verison}",
    ),
    (
        "compare without baseline",
        COMPARE_GATE.replace('        baseline: {vars: {version: "${baseline}"}}\n', ""),
        (5, 5),
        "criteria[0]",
        "compare: needs baseline:",
    ),
    (
        "compare with go",
        COMPARE_GATE.replace("        compare:", '        go: "< 1"\n        compare:'),
        (5, 5),
        "criteria[0]",
        "go: and rollback: are not used with compare:",
    ),
    (
        "compare window too short for the minimum of points",
        COMPARE_GATE.replace("window: 10m, step: 30s", "window: 2m, step: 30s"),
        (9, 14),
        "criteria[0].compare",
        "gives 5 points a side; a comparison needs at least 10",
    ),
    (
        "compare confidence 100%",
        COMPARE_GATE.replace("confidence: 98%", "confidence: 100%"),
        (9, 71),
        "criteria[0].compare.confidence",
        "below 100%",
    ),
    (
        "compare unknown key",
        COMPARE_GATE.replace("direction: increase", "directon: increase"),
        (10, 37),
        "criteria[0].compare.directon",
        "unknown key 'directon'",
    ),
]


@pytest.mark.parametrize(
    ("text", "position", "where", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input_is_a_located_problem(
    text: str, position: tuple[int, int], where: str, message: str
) -> None:
    problems = [p for p in problems_of(text) if message in p.message]
    assert len(problems) == 1, [str(p) for p in problems_of(text)]
    problem = problems[0]
    assert format_loc(problem.loc) == where, str(problem)
    assert message in problem.message, str(problem)
    assert (problem.line, problem.col) == position, str(problem)


def test_compare_on_a_probe_type_without_range_reads_is_a_located_problem() -> None:
    text = COMPARE_GATE.replace(
        'prom: {type: prometheus, url: "http://prometheus:9090"}',
        'prom: {type: alertmanager, url: "http://alertmanager:9093"}',
    ).replace("query: 'latency{version=\"${version}\"}'", "matchers: ['severity=\"page\"']")
    problems = [p for p in problems_of(text) if "measure_range" in p.message]
    assert len(problems) == 1, [str(p) for p in problems_of(text)]
    assert format_loc(problems[0].loc) == "criteria[0].compare"
    assert problems[0].line == 9
    assert "probe type 'alertmanager' cannot read a series of points" in problems[0].message


def test_compare_on_sentry_is_refused_because_its_zero_filled_counts_hide_a_stopped_canary() -> (
    None
):
    text = COMPARE_GATE.replace(
        'prom: {type: prometheus, url: "http://prometheus:9090"}',
        "prom: {type: sentry, org: acme, project: portal, token_env: GONOGO_PROBE_SENTRY}",
    ).replace("query: 'latency{version=\"${version}\"}'", "metric: events")
    problems = [p for p in problems_of(text) if "compare: needs real points" in p.message]
    assert len(problems) == 1, [str(p) for p in problems_of(text)]
    assert format_loc(problems[0].loc) == "criteria[0].compare"
    assert "filled with zeros" in problems[0].message


# -- sampling ------------------------------------------------------------------------------


class RangeFake:
    """A probe with quoting and range reads, answering from a function of the query."""

    type_name: ClassVar[str] = "prometheus"
    config_model: ClassVar[type[ProbeConfig]] = ProbeConfig

    def __init__(
        self,
        series: Callable[[str], list[float] | Measurement] | None = None,
        instant: Callable[[str], float | Measurement] | None = None,
    ) -> None:
        self.config = ProbeConfig(type="prometheus", timeout=2, retries=0)
        self.series = series
        self.instant = instant
        self.range_calls: list[tuple[str, datetime, datetime, timedelta]] = []
        self.instant_calls: list[ProbeQuery] = []
        self.in_flight = 0
        self.most_in_flight = 0

    @staticmethod
    def quote(value: str, context: QuoteContext) -> str:
        return quote_promql(value, context)

    def secrets(self) -> tuple[str, ...]:
        return (SECRET,)

    async def _enter(self) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)  # let every read of the sample start before any ends
        await asyncio.sleep(0)

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        self.instant_calls.append(query)
        await self._enter()
        self.in_flight -= 1
        assert self.instant is not None
        answer = self.instant(query.query or "")
        return answer if isinstance(answer, Measurement) else Measurement.ok(answer, ctx.now)

    async def measure_range(
        self,
        query: ProbeQuery,
        ctx: ProbeContext,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> Series | Measurement:
        self.range_calls.append((query.query or "", start, end, step))
        await self._enter()
        self.in_flight -= 1
        assert self.series is not None
        answer = self.series(query.query or "")
        if isinstance(answer, Measurement):
            return answer
        points = [(start + step * i, v) for i, v in enumerate(answer)]
        return Series.of(points, ctx.now, source="fake")

    async def aclose(self) -> None:
        return None


def latencies(canary: float, baseline: float) -> Callable[[str], list[float]]:
    def series(query: str) -> list[float]:
        level = canary if '"v2"' in query else baseline
        return [level * (1 + 0.02 * math.sin(i)) for i in range(21)]

    return series


async def sample_of(gate: Gate, probe: object, now: datetime, **values: str) -> Sample:
    return await take_sample(
        gate,
        {"prom": probe},  # type: ignore[dict-item]
        now=now,
        values=placeholder_values(gate, version=values.get("version", "v2")),
    )


async def test_compare_reads_both_sides_at_once_over_the_window(now: datetime) -> None:
    gate = gate_of(COMPARE_GATE)
    probe = RangeFake(series=latencies(0.3, 0.1))
    sample = await sample_of(gate, probe, now)
    (result,) = sample.results
    assert result.outcome is CriterionOutcome.BREACH, result.reason
    queries = sorted(call[0] for call in probe.range_calls)
    assert queries == ['latency{version="stable"}', 'latency{version="v2"}']
    assert {call[1:] for call in probe.range_calls} == {
        (now - timedelta(minutes=10), now, timedelta(seconds=30))
    }
    assert probe.most_in_flight == 2
    body = result.as_dict()
    assert body["comparison"]["canary"]["n"] == 21
    assert body["comparison"]["p_value"] < 0.02
    assert body["value"] == pytest.approx(2.0, rel=0.05)
    assert body["rollback"] == "significant increase beyond 50%"


async def test_a_check_supplied_version_is_quoted_in_the_range_read(now: datetime) -> None:
    gate = gate_of(COMPARE_GATE)
    probe = RangeFake(series=latencies(0.1, 0.1))
    refused = (await sample_of(gate, probe, now, version='v2"} or vector(1) #')).results[0]
    assert not probe.range_calls  # a value no check may supply is refused before any read
    assert refused.outcome is CriterionOutcome.INCONCLUSIVE
    assert refused.go.startswith("no significant increase beyond 10%")
    result = (await sample_of(gate, probe, now, version="v2.1+rc")).results[0]
    assert result.outcome is CriterionOutcome.PASS
    assert 'latency{version="v2.1+rc"}' in [c[0] for c in probe.range_calls]


async def test_a_baseline_that_names_the_canary_itself_is_never_a_pass(now: datetime) -> None:
    """A check whose baseline is its own version compares a series with itself: no
    difference, so it would always pass."""
    gate = gate_of(COMPARE_GATE)
    probe = RangeFake(series=latencies(0.3, 0.1))
    gate_values = placeholder_values(gate, version="v2", check_vars={"baseline": "v2"})
    sample = await take_sample(gate, {"prom": probe}, now=now, values=gate_values)  # type: ignore[dict-item]
    (result,) = sample.results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert "nothing to compare" in result.reason
    assert not probe.range_calls


async def test_a_failed_side_is_inconclusive_with_its_cause_and_no_secret(now: datetime) -> None:
    gate = gate_of(COMPARE_GATE)

    def series(query: str) -> list[float] | Measurement:
        if "stable" in query:
            return Measurement.error(f"prometheus: HTTP 500 (token {SECRET})", now)
        return [0.1] * 21

    (result,) = (await sample_of(gate, RangeFake(series=series), now)).results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert result.reason.startswith("baseline: prometheus: HTTP 500")
    assert SECRET not in result.reason


async def test_empty_and_non_finite_series_are_inconclusive(now: datetime) -> None:
    gate = gate_of(COMPARE_GATE)
    empty = RangeFake(series=lambda q: [] if "v2" in q else [0.1] * 21)
    (result,) = (await sample_of(gate, empty, now)).results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert "canary: fake: no points in the range" in result.reason
    nan = RangeFake(series=lambda q: [0.1] * 20 + [math.nan])
    (result,) = (await sample_of(gate, nan, now)).results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert "not a finite number" in result.reason


async def test_a_series_that_has_stopped_is_inconclusive_not_compared(now: datetime) -> None:
    """A canary that crashed 4 minutes ago still has 13 healthy points in the 10m window;
    judged on them it would pass for minutes after it died."""
    gate = gate_of(COMPARE_GATE)
    stopped = RangeFake(series=lambda q: [0.1] * (13 if '"v2"' in q else 21))
    (result,) = (await sample_of(gate, stopped, now)).results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE, result.reason
    assert result.reason.startswith("canary: its newest point is at ")
    assert "the series has stopped" in result.reason
    recent = RangeFake(series=lambda q: [0.1] * (20 if '"v2"' in q else 21))  # 30s behind
    assert (await sample_of(gate, recent, now)).results[0].outcome is CriterionOutcome.PASS


async def test_a_probe_without_range_reads_is_inconclusive_not_a_crash(now: datetime) -> None:
    gate = gate_of(COMPARE_GATE)

    class Plain(RangeFake):
        measure_range = None  # type: ignore[assignment]

    (result,) = (await sample_of(gate, Plain(series=lambda q: [1.0]), now)).results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert "no range reads" in result.reason


def rates(errors: dict[str, float], total: float = 100.0) -> Callable[[str], float]:
    """Answers ``errors[window]`` for an errors query over that window, ``total`` else."""

    def instant(query: str) -> float:
        window = query.rsplit("[", 1)[1].split("]")[0]
        return errors.get(window, 0.01) if query.startswith("sum(rate(errors") else total

    return instant


async def test_a_burning_slo_breaches_and_rolls_back(now: datetime) -> None:
    gate = gate_of(SLO_GATE)
    # 2 % errors over 1h and 5m: burn 20 at 99.9 %.
    probe = RangeFake(instant=rates({"1h": 2.0, "5m": 2.0}))
    history = [await sample_of(gate, probe, now + timedelta(seconds=30 * i)) for i in range(2)]
    result = history[-1].results[0]
    assert result.outcome is CriterionOutcome.BREACH
    assert "1h/5m pair fired: burn rate 20 over 1h and 20 over 5m" in result.reason
    assert result.value == pytest.approx(20)
    assert decide(gate, history).decision is Decision.ROLLBACK
    windows = sorted({q.query.rsplit("[", 1)[1] for q in probe.instant_calls if q.query})
    assert windows == ["1h]))", "30m]))", "5m]))", "6h]))"]
    assert {q.window for q in probe.instant_calls} == {
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=1),
        timedelta(hours=6),
    }
    assert probe.most_in_flight == 8  # every window's two queries at once


async def test_a_healthy_slo_passes_and_goes(now: datetime) -> None:
    gate = gate_of(SLO_GATE)
    probe = RangeFake(instant=rates({}))
    history = [await sample_of(gate, probe, now + timedelta(seconds=30 * i)) for i in range(3)]
    result = history[-1].results[0]
    assert result.outcome is CriterionOutcome.PASS, result.reason
    assert decide(gate, history).decision is Decision.GO
    assert result.as_dict()["comparison"]["windows"][0]["long_burn"] == pytest.approx(0.1)


async def test_slo_with_a_window_missing_is_inconclusive(now: datetime) -> None:
    gate = gate_of(SLO_GATE)

    def instant(query: str) -> float | Measurement:
        if "[6h]" in query:
            return Measurement.no_data("prometheus: query returned no series", now)
        return 1.0 if query.startswith("sum(rate(errors") else 10_000

    (result,) = (await sample_of(gate, RangeFake(instant=instant), now)).results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert "6h: errors: prometheus: query returned no series" in result.reason


async def test_slo_window_placeholder_is_gonogos_not_the_checks(now: datetime) -> None:
    gate = gate_of(SLO_GATE)
    probe = RangeFake(instant=rates({}))
    values = placeholder_values(gate, version="v2", check_vars={"window": "1y"})
    await take_sample(gate, {"prom": probe}, now=now, values=values)  # type: ignore[dict-item]
    assert all("[1y]" not in (q.query or "") for q in probe.instant_calls)


def test_definition_dump_keeps_percentages_readable() -> None:
    dumped: dict[str, Any] = gate_of(SLO_GATE).model_dump(mode="json")["criteria"][0]
    assert dumped["slo"]["objective"] == "99.9%"
    assert dumped["slo"]["windows"][0] == {
        "long": "1h",
        "short": "5m",
        "burn_rate": 14.4,
        "then": "rollback",
    }
