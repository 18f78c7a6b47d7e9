from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.observability import metrics
from gates.engine import Decision, Sample, decide, inconclusive
from tests.app.fakes import T0, make_gate, verdict_for

CRITERIA = (
    {"name": "availability", "go": "> 99.9%", "rollback": "< 95%"},
    {"name": "latency-p95", "go": "< 2s"},
)


def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(name: str, **labels: str) -> float | None:
    return scrape().get((name, frozenset(labels.items())))


def series_of(name: str, gate: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in scrape() if n == name and ("gate", gate) in labels]


@pytest.fixture
def gate_name(request: pytest.FixtureRequest) -> str:
    # The registry is process-wide: each test uses its own gate.
    return "m-" + request.node.name.replace("_", "-")[:50]


def test_every_spec_metric_is_exported_with_its_type(gate_name: str) -> None:
    # With labelled children in every family, as in a running server, nothing but the
    # documented families may appear (no ``_created`` companions).
    gate = make_gate(gate_name, criteria=CRITERIA)
    metrics.observe_evaluation(gate, verdict_for(gate, {"availability": 1.0}), 0.01)
    metrics.decision_changed(gate_name, Decision.NO_GO)
    metrics.check_finished(gate_name, "cancelled")
    metrics.set_checks_running(gate_name, 0)
    metrics.notification_sent("ok")
    metrics.sample_write_failed("gate")
    body, _ = metrics.render()
    families = {
        f.name: f.type
        for f in text_string_to_metric_families(body.decode())
        if f.name.startswith("gonogo_")  # prometheus-client's process_* and python_* aside
    }
    assert families == {
        "gonogo_build_info": "gauge",
        "gonogo_gate_decision": "gauge",
        "gonogo_gate_last_evaluation_timestamp_seconds": "gauge",
        "gonogo_sample_write_failures": "counter",
        "gonogo_criterion_value": "gauge",
        "gonogo_criterion_outcome": "gauge",
        "gonogo_evaluations": "counter",
        "gonogo_evaluation_duration_seconds": "histogram",
        "gonogo_probe_requests": "counter",
        "gonogo_probe_duration_seconds": "histogram",
        "gonogo_decision_changes": "counter",
        "gonogo_checks": "counter",
        "gonogo_checks_running": "gauge",
        "gonogo_notifications": "counter",
        "gonogo_gates_owned": "gauge",
        "gonogo_lease_takeovers": "counter",
        "gonogo_lease_renew_failures": "counter",
        "gonogo_gates_loaded": "gauge",
    }


def test_an_evaluation_sets_decision_values_outcomes_and_counts(gate_name: str) -> None:
    gate = make_gate(gate_name, criteria=CRITERIA)
    ok_before = value("gonogo_probe_requests_total", probe_type="scripted", result="ok") or 0

    metrics.observe_evaluation(
        gate, verdict_for(gate, {"availability": 0.93, "latency-p95": 0.4}), 0.05
    )

    assert value("gonogo_gate_decision", gate=gate_name, decision="no_go") == 1
    assert value("gonogo_gate_decision", gate=gate_name, decision="go") == 0
    assert value("gonogo_gate_decision", gate=gate_name, decision="rollback") == 0
    assert value("gonogo_criterion_value", gate=gate_name, criterion="availability") == 0.93
    assert value("gonogo_criterion_value", gate=gate_name, criterion="latency-p95") == 0.4
    assert (
        value(
            "gonogo_criterion_outcome", gate=gate_name, criterion="availability", outcome="breach"
        )
        == 1
    )
    for other in ("pass", "fail", "inconclusive"):
        assert (
            value(
                "gonogo_criterion_outcome", gate=gate_name, criterion="availability", outcome=other
            )
            == 0
        )
    assert value("gonogo_evaluations_total", gate=gate_name, decision="no_go") == 1
    assert value("gonogo_evaluation_duration_seconds_count", gate=gate_name) == 1
    assert value("gonogo_evaluation_duration_seconds_sum", gate=gate_name) == pytest.approx(0.05)
    ok_after = value("gonogo_probe_requests_total", probe_type="scripted", result="ok")
    assert ok_after == ok_before + 2

    metrics.observe_evaluation(
        gate, verdict_for(gate, {"availability": 0.9999, "latency-p95": 0.4}, samples=3), 0.01
    )
    assert value("gonogo_gate_decision", gate=gate_name, decision="go") == 1
    assert value("gonogo_gate_decision", gate=gate_name, decision="no_go") == 0
    assert value("gonogo_evaluations_total", gate=gate_name, decision="go") == 1
    assert value("gonogo_evaluations_total", gate=gate_name, decision="no_go") == 1


def test_a_criterion_without_a_value_loses_its_value_series(gate_name: str) -> None:
    gate = make_gate(gate_name, criteria=CRITERIA)
    no_data_before = (
        value("gonogo_probe_requests_total", probe_type="scripted", result="no_data") or 0
    )
    metrics.observe_evaluation(
        gate, verdict_for(gate, {"availability": 0.999, "latency-p95": 0.4}), 0
    )
    metrics.observe_evaluation(
        gate, verdict_for(gate, {"availability": None, "latency-p95": 0.4}), 0
    )

    assert value("gonogo_criterion_value", gate=gate_name, criterion="availability") is None
    assert (
        value(
            "gonogo_criterion_outcome",
            gate=gate_name,
            criterion="availability",
            outcome="inconclusive",
        )
        == 1
    )
    assert value("gonogo_probe_requests_total", probe_type="scripted", result="no_data") == (
        no_data_before + 1
    )


def test_an_unfilled_placeholder_counts_no_probe_request(gate_name: str) -> None:
    gate = make_gate(gate_name)
    before = scrape()
    result = inconclusive(gate.criteria[0], "placeholder ${version} is not filled")
    metrics.observe_evaluation(gate, decide(gate, [Sample(T0, (result,))]), 0)
    after = scrape()
    assert (
        value(
            "gonogo_criterion_outcome",
            gate=gate_name,
            criterion="availability",
            outcome="inconclusive",
        )
        == 1
    )

    def probe_series(
        scraped: dict[tuple[str, frozenset[tuple[str, str]]], float],
    ) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return {k: v for k, v in scraped.items() if k[0].startswith("gonogo_probe_")}

    assert probe_series(after) == probe_series(before)


def test_a_redefined_gate_drops_its_vanished_criteria(gate_name: str) -> None:
    gate = make_gate(gate_name, criteria=CRITERIA)
    metrics.observe_evaluation(
        gate, verdict_for(gate, {"availability": 1.0, "latency-p95": 0.1}), 0
    )
    smaller = make_gate(gate_name, criteria=CRITERIA[:1])
    metrics.observe_evaluation(smaller, verdict_for(smaller, {"availability": 1.0}), 0)

    criteria = {s["criterion"] for s in series_of("gonogo_criterion_outcome", gate_name)}
    assert criteria == {"availability"}
    assert value("gonogo_criterion_value", gate=gate_name, criterion="latency-p95") is None


def test_forget_gate_removes_every_series_of_that_gate_only(gate_name: str) -> None:
    gate = make_gate(gate_name, criteria=CRITERIA)
    other = make_gate(gate_name + "-other", criteria=CRITERIA)
    for g in (gate, other):
        metrics.observe_evaluation(g, verdict_for(g, {"availability": 1.0, "latency-p95": 0.1}), 0)
        metrics.decision_changed(g.name, Decision.GO)
        metrics.check_finished(g.name, "cancelled")
        metrics.set_checks_running(g.name, 2)

    metrics.forget_gate(gate_name)

    assert not [key for key in scrape() if ("gate", gate_name) in key[1]]
    assert value("gonogo_checks_running", gate=other.name) == 2
    assert value("gonogo_decision_changes_total", gate=other.name, decision="go") == 1


def test_check_and_notification_counters(gate_name: str) -> None:
    before = value("gonogo_notifications_total", result="dropped") or 0
    metrics.check_finished(gate_name, "rollback")
    metrics.check_finished(gate_name, "rollback")
    metrics.set_checks_running(gate_name, 3)
    metrics.notification_sent("dropped")
    assert value("gonogo_checks_total", gate=gate_name, decision="rollback") == 2
    assert value("gonogo_checks_running", gate=gate_name) == 3
    assert value("gonogo_notifications_total", result="dropped") == before + 1


def test_unbounded_label_values_are_refused(gate_name: str) -> None:
    with pytest.raises(ValueError, match="check outcome"):
        metrics.check_finished(gate_name, "exploded: connection refused to http://x")
    with pytest.raises(ValueError, match="notification result"):
        metrics.notification_sent("HTTP 502 from https://hooks.example/abc")
    with pytest.raises(ValueError):
        metrics.decision_changed(gate_name, "maybe")


def test_gates_loaded_is_read_from_its_source_at_each_scrape() -> None:
    loaded = [3]
    metrics.watch_gates_loaded(lambda: loaded[0])
    try:
        assert value("gonogo_gates_loaded") == 3
        loaded[0] = 5
        assert value("gonogo_gates_loaded") == 5
    finally:
        metrics.watch_gates_loaded(lambda: 0)
