"""``/metrics`` basics: the build's version, prometheus-client's process and Python
collectors, and counters that read 0 (not "No data") for every label value they can take."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.core.settings import load_settings
from app.core.version import package_version
from app.main import create_app
from app.observability import metrics
from gates.model import ProbeConfig
from tests.app.fakes import make_gate, verdict_for

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Series:
    found: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def scrape() -> Series:
    return parse(metrics.render()[0].decode())


def labelled(series: Series, name: str, **labels: str) -> float | None:
    return series.get((name, frozenset(labels.items())))


async def test_metrics_endpoint_has_build_info_and_process_and_python_collectors(
    tmp_path: Path,
) -> None:
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", tokens="")
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://gonogo.test") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    series = parse(response.text)
    assert labelled(series, "gonogo_build_info", version=package_version()) == 1
    names = {name for name, _ in series}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= names
    assert "python_info" in names
    assert "python_gc_collections_total" in names


def test_process_wide_counters_start_at_zero() -> None:
    series = scrape()
    for result in ("ok", "error", "dropped"):
        assert labelled(series, "gonogo_notifications_total", result=result) is not None
    for loop in ("gate", "check"):
        assert labelled(series, "gonogo_sample_write_failures_total", loop=loop) is not None


def test_a_gates_counters_exist_at_zero_after_its_first_evaluation() -> None:
    gate = make_gate("m-zero-counters")
    gate = gate.model_copy(update={"probes": {"p": ProbeConfig(type="zero-counted")}})
    assert not [key for key in scrape() if ("gate", gate.name) in key[1]]

    verdict = verdict_for(gate, {"availability": 1.0})
    metrics.observe_evaluation(gate, verdict, 0.01)
    series = scrape()
    for decision in ("go", "no_go", "rollback"):
        expected = 1 if decision == verdict.decision.value else 0
        assert (
            labelled(series, "gonogo_evaluations_total", gate=gate.name, decision=decision)
            == expected
        )
        assert (
            labelled(series, "gonogo_decision_changes_total", gate=gate.name, decision=decision)
            == 0
        )
    for outcome in ("go", "no_go", "rollback", "cancelled"):
        assert labelled(series, "gonogo_checks_total", gate=gate.name, decision=outcome) == 0
    for result in ("ok", "no_data", "error", "timeout"):
        expected = 1 if result == "ok" else 0
        requests = labelled(
            series, "gonogo_probe_requests_total", probe_type="zero-counted", result=result
        )
        assert requests == expected


def test_zero_counters_never_reset_a_count_and_go_away_with_their_gate() -> None:
    gate = make_gate("m-zero-kept")
    metrics.check_finished(gate.name, "rollback")
    metrics.observe_evaluation(gate, verdict_for(gate, {"availability": 1.0}), 0.01)
    assert labelled(scrape(), "gonogo_checks_total", gate=gate.name, decision="rollback") == 1

    metrics.forget_gate(gate.name)
    assert not [key for key in scrape() if ("gate", gate.name) in key[1]]
    metrics.observe_evaluation(gate, verdict_for(gate, {"availability": 1.0}), 0.01)
    assert labelled(scrape(), "gonogo_checks_total", gate=gate.name, decision="cancelled") == 0
