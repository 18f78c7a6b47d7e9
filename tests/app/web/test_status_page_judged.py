"""compare: and slo: criteria on the status page, in /status.json and in the CLI tables."""

from __future__ import annotations

import io
from datetime import timedelta

import httpx
from rich.console import Console

from app.cli.check import criteria_table
from gates.comparison import compare_series
from gates.engine import CriterionOutcome, Decision, Sample, Steady, Verdict
from gates.judgements import comparison_summary, judged_result, judged_value_text
from gates.loader import load_gate_text
from gates.model import Gate
from gates.slo import WindowReading, judge_slo
from gates.units import Unit
from tests.app.web.status_fakes import T0, FakeCatalog, FakeLoaded, FakeScheduler, status_app

GATE = """\
vars: {baseline: stable}
probes:
  prom: {type: prometheus, url: "http://prometheus:9090"}
criteria:
  - name: latency-vs-stable
    probe: prom
    query: 'latency{version="${version}"}'
    baseline: {vars: {version: "${baseline}"}}
    compare: {window: 10m, step: 30s, effect: 10%, rollback_effect: 50%}
  - name: checkout-slo
    probe: prom
    slo:
      objective: 99.9%
      errors: 'sum(rate(errors{version="${version}"}[${window}]))'
      total: 'sum(rate(requests{version="${version}"}[${window}]))'
"""


def judged_gate() -> Gate:
    return load_gate_text(GATE, name="checkout", source="checkout.yaml")


def judged_verdict(gate: Gate) -> Verdict:
    compare, slo = gate.criteria
    assert compare.compare is not None and slo.slo is not None
    compared = compare_series([0.3 + i / 1000 for i in range(21)], [0.1] * 21, compare.compare)
    burning = {
        w: WindowReading(errors=2.0, total=100.0)
        for w in (
            timedelta(minutes=5),
            timedelta(hours=1),
            timedelta(minutes=30),
            timedelta(hours=6),
        )
    }
    burned = judge_slo(slo.slo, burning)
    results = (
        judged_result(compare, compared, now=T0, duration_ms=3.0, status=None),
        judged_result(slo, burned, now=T0, duration_ms=2.0, status=None),
    )
    sample = Sample(T0, results)
    return Verdict(gate.name, Decision.ROLLBACK, T0, ("rolled back",), Steady(0, 3), sample.results)


async def test_status_json_and_page_show_the_comparison_and_burn_rates() -> None:
    gate = judged_gate()
    catalog = FakeCatalog([FakeLoaded(gate)])
    scheduler = FakeScheduler({gate.name: judged_verdict(gate)})
    app = status_app(catalog, scheduler)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gonogo") as client:
        body = (await client.get("/status.json")).json()
        page = (await client.get("/")).text
    compare, slo = body["gates"][0]["criteria"]
    assert compare["outcome"] == "breach"
    assert compare["value_text"].startswith("+") and compare["value_text"].endswith(" %")
    assert compare["comparison"].startswith("mann_whitney: canary n=21 median 0.31")
    assert "baseline n=21 median 0.1" in compare["comparison"] and "p=" in compare["comparison"]
    assert compare["rollback"] == "significant increase beyond 50%"
    assert slo["value_text"] == "burn 20"
    assert "1h/5m burn 20/20 (> 14.4 rollback) FIRED" in slo["comparison"]
    assert slo["go"] == "SLO 99.9%: no burn-rate pair fires"
    assert 'class="comparison"' in page and "1h/5m burn 20/20" in page


async def test_a_judged_criterion_not_sampled_yet_shows_its_own_conditions() -> None:
    gate = judged_gate()
    app = status_app(FakeCatalog([FakeLoaded(gate)]), FakeScheduler())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gonogo") as client:
        compare, slo = (await client.get("/status.json")).json()["gates"][0]["criteria"]
    assert compare["outcome"] == "pending"
    assert compare["go"].startswith("no significant increase beyond 10%")
    assert slo["rollback"] == "1h/5m burn > 14.4"


def test_the_check_table_shows_the_comparison_under_the_reason() -> None:
    gate = judged_gate()
    body = {
        "gate": gate.name,
        "version": "v2",
        "state": "final",
        "decision": "rollback",
        **judged_verdict(gate).as_dict(),
    }
    out = io.StringIO()
    Console(file=out, width=400, color_system=None).print(criteria_table(body))
    text = out.getvalue()
    assert "mann_whitney: canary n=21" in text
    assert "burn 20" in text and "1h/5m pair fired" in text


def test_summaries_of_missing_details_and_plain_criteria() -> None:
    assert comparison_summary(None) is None
    assert judged_value_text(None, 0.5) is None
    assert comparison_summary(
        {"test": "mann_whitney", "canary": {"n": 3}, "baseline": {"n": 0}}
    ) == ("mann_whitney: canary n=3 · baseline n=0")
    assert CriterionOutcome.PASS.value == "pass"


def test_gonogo_criterion_value_exports_the_highest_long_window_burn_rate() -> None:
    from app.observability import metrics

    gate = judged_gate().model_copy(update={"name": "judged-metrics"})
    metrics.observe_evaluation(gate, judged_verdict(gate), 0.01)
    try:
        burn = metrics.REGISTRY.get_sample_value(
            "gonogo_criterion_value", {"gate": gate.name, "criterion": "checkout-slo"}
        )
        shift = metrics.REGISTRY.get_sample_value(
            "gonogo_criterion_value", {"gate": gate.name, "criterion": "latency-vs-stable"}
        )
        assert burn is not None and abs(burn - 20) < 1e-9
        assert shift is not None and shift > 1.5
    finally:
        metrics.forget_gate(gate.name)


def test_a_comparison_summary_shows_medians_and_shift_in_the_criterion_unit() -> None:
    details = {
        "test": "mann_whitney",
        "canary": {"n": 30, "median": 0.329993},
        "baseline": {"n": 30, "median": 0.3},
        "relative_shift": 0.1,
        "shift_ci": [0.02, 0.04],
        "p_value": 0.001,
    }
    assert comparison_summary(details, Unit.SECONDS) == (
        "mann_whitney: canary n=30 median 330 ms · baseline n=30 median 300 ms"
        " · shift +10% (CI 20 ms..40 ms) · p=0.001"
    )
    assert "median 0.329993" in (comparison_summary(details) or "")
