"""Crafted check values against a real Prometheus: the README's error-rate criterion never
says ``go`` for a broken canary, whatever version text the pipeline sends.

The scraped target serves ``http_requests_total`` for three versions: ``1.4.2`` (the
broken canary, half its requests fail), ``1x4x2`` and ``1.4.1`` (healthy, and a hundred
times busier). Inserted verbatim into ``version=~"${version}"``, the canary's own version
``1.4.2`` also matches ``1x4x2`` (``.`` is any character), and ``.+`` or ``1.4..`` match
everything: the healthy traffic dilutes the canary's errors below 1 % and the gate says
``go``. Quoted, each value selects only the series whose label is exactly its text.

Needs the ``prometheus`` binary; skipped without it, except in CI.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from app.core.clock import ManualClock
from app.core.migrate import upgrade_database
from gates.engine import CriterionOutcome, Decision, decide
from gates.model import Gate
from gates.sampler import placeholder_values, take_sample
from probes.base import ProbeConfig, ProbeContext, ProbeQuery, QuoteContext
from probes.prometheus import PrometheusConfig, PrometheusProbe
from probes.quoting import quote_promql
from tests.app.conftest import TOKENS, open_service
from tests.support import prometheus_scraping_requests

pytestmark = pytest.mark.prometheus

# Requests per second by (version, code).
TRAFFIC = {
    ("1.4.2", "200"): 50.0,
    ("1.4.2", "503"): 50.0,
    ("1x4x2", "200"): 5000.0,
    ("1x4x2", "503"): 0.0,  # present, as a real service's would be: else the ratio is empty
    ("1.4.1", "200"): 5000.0,
    ("1.4.1", "503"): 0.0,
}
# The README's error-rate criterion (go < 1 %, rollback > 5 %).
ERROR_RATE = (
    'sum(rate(http_requests_total{code=~"5..",version=~"${version}"}[5m]))'
    ' / sum(rate(http_requests_total{version=~"${version}"}[5m]))'
)
CRAFTED_IN_CHARSET = [".+", "1.4..", "..4.2", "1.4.+", "1+4+2", "1.4.2+", "1.+"]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus_scraping_requests(
        tmp_path_factory.mktemp("prometheus-quoting"), TRAFFIC
    ) as url:
        yield url


@pytest.fixture
async def probe(prometheus: str) -> AsyncIterator[PrometheusProbe]:
    built = PrometheusProbe(
        PrometheusConfig(type="prometheus", url=prometheus, timeout=5, retries=1), name="prom"
    )
    yield built
    await built.aclose()


def readme_gate(config: ProbeConfig) -> Gate:
    return Gate.model_validate(
        {
            "name": "portal",
            "steady_for": 1,
            "rollback_after": 1,
            "vars": {"version": ".+"},
            "probes": {"prom": config},
            "criteria": [
                {
                    "name": "error-rate",
                    "probe": "prom",
                    "query": ERROR_RATE,
                    "go": "< 1%",
                    "rollback": "> 5%",
                }
            ],
        }
    )


async def test_a_regex_matcher_with_1_4_2_does_not_match_1x4x2(probe: PrometheusProbe) -> None:
    template = 'sum(http_requests_total{version=~"${version}"}) by (version)'
    values = placeholder_values(readme_gate(probe.config), version="1.4.2")
    sample = await take_sample(
        Gate.model_validate(
            {
                "name": "count",
                "probes": {"prom": probe.config},
                "criteria": [{"name": "series", "probe": "prom", "query": template, "go": "> 0"}],
            }
        ),
        {"prom": probe},
        now=datetime.now(UTC),
        values=values,
    )
    # One series (the canary's): several would be inconclusive ("2 series returned").
    assert sample.results[0].outcome is CriterionOutcome.PASS, sample.results[0].reason


async def test_the_canarys_own_version_judges_only_the_canary(probe: PrometheusProbe) -> None:
    gate = readme_gate(probe.config)
    values = placeholder_values(gate, version="1.4.2")
    sample = await take_sample(gate, {"prom": probe}, now=datetime.now(UTC), values=values)
    result = sample.results[0]
    assert result.value == pytest.approx(0.5, abs=0.01)
    assert decide(gate, [sample]).decision is Decision.ROLLBACK


@pytest.mark.parametrize("version", CRAFTED_IN_CHARSET)
async def test_crafted_versions_in_the_allowed_characters_never_go(
    probe: PrometheusProbe, version: str
) -> None:
    gate = readme_gate(probe.config)
    values = placeholder_values(gate, version=version)
    sample = await take_sample(gate, {"prom": probe}, now=datetime.now(UTC), values=values)
    assert sample.results[0].outcome is CriterionOutcome.INCONCLUSIVE, sample.results[0].reason
    assert "no data" in sample.results[0].reason
    assert decide(gate, [sample]).decision is Decision.NO_GO


async def test_the_continuous_default_still_matches_every_version(
    probe: PrometheusProbe,
) -> None:
    gate = readme_gate(probe.config)
    sample = await take_sample(
        gate, {"prom": probe}, now=datetime.now(UTC), values=placeholder_values(gate)
    )
    assert sample.results[0].value == pytest.approx(50 / 10100, rel=0.05)


@pytest.mark.parametrize(
    "crafted",
    [
        '1.4.2"}[5m])) > 200 or vector(0) #',
        '1.4.2"}[5m])) * 0 or vector(0) #',
        "1.4.1|1.4.2|1x4x2",
        ".*",
    ],
)
async def test_quoting_alone_keeps_an_injection_one_label_value(
    probe: PrometheusProbe, crafted: str
) -> None:
    """Below the API's character rule: Prometheus reads the whole text as one label value."""
    prefix = ERROR_RATE[: ERROR_RATE.index("${version}")]
    quoted = quote_promql(crafted, QuoteContext("version", "query", prefix))
    query = ERROR_RATE.replace("${version}", quoted)
    answer = await probe.measure(ProbeQuery(query=query), ProbeContext(now=datetime.now(UTC)))
    assert answer.status.value == "no_data", answer.detail


async def test_through_the_api_a_broken_canary_never_goes(prometheus: str, tmp_path: Path) -> None:
    """``POST /gates/portal/checks`` with crafted versions; only the honest release goes."""
    gates_dir = tmp_path / "gates"
    gates_dir.mkdir()
    (gates_dir / "portal.yaml").write_text(
        f"""\
interval: 10s
steady_for: 1
rollback_after: 1
timeout: 60s
vars: {{version: ".+"}}
probes:
  prom: {{type: prometheus, url: "{prometheus}"}}
criteria:
  - name: error-rate
    probe: prom
    query: '{ERROR_RATE}'
    go: "< 1%"
    rollback: "> 5%"
"""
    )
    database = f"sqlite+aiosqlite:///{tmp_path / 'gonogo.db'}"
    await upgrade_database(database)
    clock = ManualClock(datetime.now(UTC))

    def real_probes(config: ProbeConfig, name: str) -> PrometheusProbe:
        assert isinstance(config, PrometheusConfig)
        return PrometheusProbe(config, name=name)

    app, lifespan = await open_service(database, gates_dir, clock, real_probes)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {TOKENS['pipeline']}"}
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gonogo.test") as client:
            refused = await client.post(
                "/api/v1/gates/portal/checks",
                headers=headers,
                json={"version": "1.4.1|1.4.2"},
            )
            assert refused.status_code == 422
            assert refused.json()["errors"][0]["loc"] == ["body", "version"]

            decisions = {}
            for version in ["1.4.2", *CRAFTED_IN_CHARSET, "1x4x2"]:
                created = await client.post(
                    "/api/v1/gates/portal/checks", headers=headers, json={"version": version}
                )
                assert created.status_code == 201, created.text
                decisions[version] = await _first_decision(client, created.json()["id"])
    finally:
        await lifespan.__aexit__(None, None, None)
    assert decisions.pop("1.4.2") == "rollback"
    assert decisions.pop("1x4x2") == "go"  # the honest case: a healthy release goes
    assert set(decisions.values()) == {"no_go"}, decisions


async def _first_decision(client: httpx.AsyncClient, check_id: str) -> str:
    headers = {"Authorization": f"Bearer {TOKENS['viewer']}"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        events = (await client.get(f"/api/v1/checks/{check_id}/events", headers=headers)).json()
        samples = [e for e in events["items"] if e["kind"] == "sample"]
        if samples:
            body = (await client.get(f"/api/v1/checks/{check_id}", headers=headers)).json()
            return str(body["decision"])
        await asyncio.sleep(0.05)  # the first sample is taken at once; its write is a thread
    pytest.fail(f"check {check_id} took no sample")
