"""compare: and slo: against a real Prometheus, with history backfilled by
``promtool tsdb create-blocks-from openmetrics``: seven hours of a stable baseline and
canaries at different latencies and error rates, read through ``query_range`` and
instant queries exactly as a gate does.

- a canary 3x slower than the baseline rolls back; one 5 % slower passes with
  ``effect: 10%``;
- an SLO burning its budget 50 times too fast rolls back; a healthy one goes.

Needs the ``prometheus`` and ``promtool`` binaries; skipped without them, except in CI.
"""

from __future__ import annotations

import math
import random
import subprocess
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gates.engine import CriterionOutcome, Decision, Sample, decide
from gates.loader import load_gate_text
from gates.model import Gate
from gates.sampler import placeholder_values, take_sample
from probes.prometheus import PrometheusConfig, PrometheusProbe
from tests.support import real_prometheus, require_binary

pytestmark = pytest.mark.prometheus

STEP_S = 30
HISTORY = timedelta(hours=7)
# The last backfilled instant, on a whole minute some hours back: blocks are history.
END = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
# Latency in seconds around which each version's points scatter.
LATENCY = {"stable": 0.100, "slow3x": 0.300, "slow5pct": 0.105}
# Requests per second and the share that fail, by version.
TRAFFIC = {"healthy": (100.0, 0.0001), "burning": (100.0, 0.05)}


def openmetrics() -> str:
    """Every point of the history, one family after the other, as OpenMetrics text."""
    rng = random.Random(13)
    start = END - HISTORY
    instants = [
        start + timedelta(seconds=STEP_S * i)
        for i in range(int(HISTORY.total_seconds()) // STEP_S + 1)
    ]
    lines = ["# TYPE latency_seconds gauge"]
    for version, level in LATENCY.items():
        for at in instants:
            value = level * (1 + rng.gauss(0, 0.01))
            lines.append(
                f'latency_seconds{{version="{version}"}} {value:.6f} {int(at.timestamp())}'
            )
    lines.append("# TYPE http_requests counter")
    for version, (per_second, failing) in TRAFFIC.items():
        for code, share in (("200", 1 - failing), ("500", failing)):
            for index, at in enumerate(instants):
                total = per_second * share * STEP_S * index
                lines.append(
                    f'http_requests_total{{version="{version}",code="{code}"}} {total:.3f}'
                    f" {int(at.timestamp())}"
                )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    promtool = require_binary("promtool")
    work = tmp_path_factory.mktemp("prometheus-judged")
    source = work / "history.om"
    source.write_text(openmetrics())
    data = work / "data"
    data.mkdir()
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # Nothing to scrape: the history is all there is.
    with real_prometheus(work, "http://127.0.0.1:9") as url:
        yield url


COMPARE = """\
    interval: 30s
    vars: {baseline: stable}
    probes:
      prom: {type: prometheus, url: "URL"}
    criteria:
      - name: latency-vs-stable
        probe: prom
        query: 'latency_seconds{version="${version}"}'
        baseline: {vars: {version: "${baseline}"}}
        compare: {window: 10m, step: 30s, confidence: 98%, effect: 10%, rollback_effect: 50%}
    """

SLO = """\
    interval: 30s
    steady_for: 3
    probes:
      prom: {type: prometheus, url: "URL"}
    criteria:
      - name: checkout-slo
        probe: prom
        slo:
          objective: 99.9%
          errors: 'sum(rate(http_requests_total{code="500",version="${version}"}[${window}]))'
          total: 'sum(rate(http_requests_total{version="${version}"}[${window}]))'
    """


def gate_for(text: str, url: str) -> Gate:
    return load_gate_text(
        textwrap.dedent(text).replace("URL", url), name="release", source="release.yaml"
    )


async def samples(gate: Gate, url: str, version: str, count: int) -> list[Sample]:
    config = gate.probes["prom"]
    assert isinstance(config, PrometheusConfig)
    probe = PrometheusProbe(config, name="prom")
    try:
        return [
            await take_sample(
                gate,
                {"prom": probe},
                now=END - timedelta(seconds=STEP_S * (count - 1 - i)),
                values=placeholder_values(gate, version=version),
            )
            for i in range(count)
        ]
    finally:
        await probe.aclose()


async def test_a_canary_three_times_slower_rolls_back(prometheus: str) -> None:
    gate = gate_for(COMPARE, prometheus)
    history = await samples(gate, prometheus, "slow3x", 2)
    result = history[-1].results[0]
    assert result.outcome is CriterionOutcome.BREACH, result.reason
    assert result.comparison is not None
    assert result.comparison["canary"]["n"] == 21 and result.comparison["baseline"]["n"] == 21
    assert result.value == pytest.approx(2.0, rel=0.1)
    assert decide(gate, history).decision is Decision.ROLLBACK


async def test_a_canary_five_percent_slower_passes_with_a_ten_percent_effect(
    prometheus: str,
) -> None:
    gate = gate_for(COMPARE, prometheus)
    history = await samples(gate, prometheus, "slow5pct", 3)
    for sample in history:
        result = sample.results[0]
        assert result.outcome is CriterionOutcome.PASS, result.reason
        assert result.value is not None and 0.02 < result.value < 0.08
    assert decide(gate, history).decision is Decision.GO


async def test_the_baseline_version_judged_against_itself_is_never_a_pass(
    prometheus: str,
) -> None:
    """A check naming the baseline's own version compares a series with itself, which
    never differs: inconclusive, so such a check cannot go."""
    gate = gate_for(COMPARE, prometheus)
    (sample,) = await samples(gate, prometheus, "stable", 1)
    assert sample.results[0].outcome is CriterionOutcome.INCONCLUSIVE
    assert "nothing to compare" in sample.results[0].reason


async def test_a_burning_slo_rolls_back(prometheus: str) -> None:
    gate = gate_for(SLO, prometheus)
    history = await samples(gate, prometheus, "burning", 2)
    result = history[-1].results[0]
    assert result.outcome is CriterionOutcome.BREACH, result.reason
    assert "1h/5m pair fired" in result.reason
    assert result.value is not None and math.isclose(result.value, 50, rel_tol=0.05)
    assert decide(gate, history).decision is Decision.ROLLBACK


async def test_a_healthy_slo_goes(prometheus: str) -> None:
    gate = gate_for(SLO, prometheus)
    history = await samples(gate, prometheus, "healthy", 3)
    result = history[-1].results[0]
    assert result.outcome is CriterionOutcome.PASS, result.reason
    assert result.value is not None and result.value < 1
    assert decide(gate, history).decision is Decision.GO


async def test_an_unknown_version_is_inconclusive_never_go(prometheus: str) -> None:
    for text in (COMPARE, SLO):
        gate = gate_for(text, prometheus)
        history = await samples(gate, prometheus, "9.9.9", 3)
        assert {s.results[0].outcome for s in history} == {CriterionOutcome.INCONCLUSIVE}
        assert decide(gate, history).decision is Decision.NO_GO
