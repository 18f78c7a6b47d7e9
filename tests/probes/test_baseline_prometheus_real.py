"""A canary judged against its baseline on a real Prometheus: the same error-rate query
run for the canary's version and for the stable one, in one sample.

The scraped target serves ``http_requests_total`` for the stable release (1 % errors),
a canary 5 % worse (1.05 %) and one three times worse (3 %). With ``go: "<= +10%"`` and
``rollback: "> +50%"`` the first passes and the second breaches; a check that names a
baseline with no traffic, or a crafted one, is never ``go``.

Needs the ``prometheus`` binary; skipped without it, except in CI.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from gates.engine import CriterionOutcome, Decision, decide
from gates.model import Gate
from gates.sampler import placeholder_values, take_sample
from probes.prometheus import PrometheusConfig, PrometheusProbe
from tests.support import prometheus_scraping_requests

pytestmark = pytest.mark.prometheus

# Requests per second by (version, code).
TRAFFIC = {
    ("2.0.0", "200"): 990.0,
    ("2.0.0", "503"): 10.0,
    ("2.1.0-close", "200"): 989.5,
    ("2.1.0-close", "503"): 10.5,
    ("2.1.0-bad", "200"): 970.0,
    ("2.1.0-bad", "503"): 30.0,
}
ERROR_RATE = (
    'sum(rate(http_requests_total{code=~"5..",version=~"${version}"}[5m]))'
    ' / sum(rate(http_requests_total{version=~"${version}"}[5m]))'
)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus_scraping_requests(
        tmp_path_factory.mktemp("prometheus-baseline"), TRAFFIC
    ) as url:
        yield url


@pytest.fixture
async def probe(prometheus: str) -> AsyncIterator[PrometheusProbe]:
    built = PrometheusProbe(
        PrometheusConfig(type="prometheus", url=prometheus, timeout=5, retries=1), name="prom"
    )
    yield built
    await built.aclose()


def relative_gate(probe: PrometheusProbe) -> Gate:
    return Gate.model_validate(
        {
            "name": "checkout",
            "steady_for": 1,
            "rollback_after": 1,
            "vars": {"version": ".+", "baseline": "2.0.0"},
            "probes": {"prom": probe.config},
            "criteria": [
                {
                    "name": "error-rate-vs-stable",
                    "probe": "prom",
                    "query": ERROR_RATE,
                    "baseline": {"vars": {"version": "${baseline}"}},
                    "go": "<= +10%",
                    "rollback": "> +50%",
                }
            ],
        }
    )


def _bound_and_baseline(reason: str, op: str, offset: str, written: str) -> tuple[float, float]:
    """The computed bound and the baseline value a relative reason shows, e.g.
    ``0.03 > 0.015 (baseline 0.01 +50%; rollback: > +50%)``."""
    number = r"([0-9.]+(?:e-?[0-9]+)?)"
    pattern = (
        rf" {re.escape(op)} {number} \(baseline {number} {re.escape(offset)};"
        rf" {re.escape(written)}\)$"
    )
    found = re.search(pattern, reason)
    assert found, reason
    return float(found[1]), float(found[2])


async def test_a_canary_three_times_worse_than_its_baseline_rolls_back(
    probe: PrometheusProbe,
) -> None:
    gate = relative_gate(probe)
    values = placeholder_values(gate, version="2.1.0-bad", check_vars={"baseline": "2.0.0"})
    sample = await take_sample(gate, {"prom": probe}, now=datetime.now(UTC), values=values)
    [result] = sample.results
    assert result.outcome is CriterionOutcome.BREACH, result.reason
    assert result.value == pytest.approx(0.03, rel=0.01)
    assert result.baseline is not None
    assert result.baseline.value == pytest.approx(0.01, rel=0.01)
    assert result.baseline.vars == {"version": "2.0.0"}
    bound, shown = _bound_and_baseline(result.reason, ">", "+50%", "rollback: > +50%")
    assert bound == pytest.approx(shown * 1.5, rel=1e-3)
    assert shown == pytest.approx(result.baseline.value, rel=1e-3)
    assert decide(gate, [sample]).decision is Decision.ROLLBACK


async def test_a_canary_five_percent_worse_passes_within_ten_percent(
    probe: PrometheusProbe,
) -> None:
    gate = relative_gate(probe)
    values = placeholder_values(gate, version="2.1.0-close", check_vars={"baseline": "2.0.0"})
    sample = await take_sample(gate, {"prom": probe}, now=datetime.now(UTC), values=values)
    [result] = sample.results
    assert result.outcome is CriterionOutcome.PASS, result.reason
    assert result.value == pytest.approx(0.0105, rel=0.01)
    bound, shown = _bound_and_baseline(result.reason, "<=", "+10%", "go: <= +10%")
    assert bound == pytest.approx(shown * 1.1, rel=1e-3)
    assert result.baseline is not None
    assert shown == pytest.approx(result.baseline.value, rel=1e-3)
    assert decide(gate, [sample]).decision is Decision.GO


@pytest.mark.parametrize("baseline", ["1.9.9", ".+", "2.0.."])
async def test_a_baseline_without_traffic_or_a_crafted_one_is_never_go(
    probe: PrometheusProbe, baseline: str
) -> None:
    """Quoted, ``.+`` is the version named ``.+``: it cannot widen the baseline to every
    version (whose errors, the bad canary's included, would raise the bound)."""
    gate = relative_gate(probe)
    values = placeholder_values(gate, version="2.1.0-bad", check_vars={"baseline": baseline})
    sample = await take_sample(gate, {"prom": probe}, now=datetime.now(UTC), values=values)
    [result] = sample.results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE, result.reason
    assert result.reason.startswith(f"baseline (version={baseline}): no data")
    assert decide(gate, [sample]).decision is Decision.NO_GO
