"""Prometheus metrics (``docs/operations.md`` lists them), in a registry of their own.

Labels are bounded: gate, criterion, decision, outcome, probe type and result only; never
a version, check id, URL or error text.

A criterion's value series is removed while the criterion has no value (probe error,
no data, unfilled placeholder), so a dashboard shows a gap rather than a stale number;
the outcome gauge says why (``inconclusive``).

``gonogo_gate_decision`` is computed at each scrape from the decisions as read then
(``watch_decisions``: the scheduler's views), so an expired decision shows as ``no_go``
like on every other read path, even when the gate's loop has stalled and updates nothing.
A gate no watcher knows shows its last observed evaluation.

Counters start at 0 for every label value they can take, so a dashboard shows 0 rather
than "No data": notification results and sample-write loops at start, and a gate's
decisions, check outcomes and its probe types' results when the gate is first evaluated.
``gonogo_build_info`` and prometheus-client's process, platform (Python) and garbage
collector metrics are exported too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from app.core.version import package_version
from gates.engine import CriterionOutcome, Decision, Verdict
from gates.model import Gate
from probes.base import MeasurementStatus

# In the text format each counter's and histogram's ``_created`` timestamp is a gauge
# family of its own: one more series per label set that no dashboard or alert reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)

DECISIONS = tuple(d.value for d in Decision)
OUTCOMES = tuple(o.value for o in CriterionOutcome)
CHECK_OUTCOMES = (*DECISIONS, "cancelled")
NOTIFICATION_RESULTS = ("ok", "error", "dropped")
WRITE_LOOPS = ("gate", "check")
PROBE_RESULTS = tuple(s.value for s in MeasurementStatus)

DecisionSource = Callable[[], Mapping[str, Decision]]


class _GateDecisionCollector(Collector):
    """``gonogo_gate_decision``, read from the scheduler at scrape time."""

    name = "gonogo_gate_decision"
    documentation = (
        "Current continuous decision of a gate (no_go once it is stale):"
        " 1 for the current decision, 0 for the others."
    )

    def __init__(self) -> None:
        self.source: DecisionSource | None = None
        self.observed: dict[str, Decision] = {}

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=["gate", "decision"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["gate", "decision"])
        source = self.source
        decisions = {**self.observed, **(source() if source is not None else {})}
        for gate, current in sorted(decisions.items()):
            for candidate in DECISIONS:
                family.add_metric([gate, candidate], 1 if candidate == current.value else 0)
        yield family


GATE_DECISION = _GateDecisionCollector()
REGISTRY.register(GATE_DECISION)
LAST_EVALUATION = Gauge(
    "gonogo_gate_last_evaluation_timestamp_seconds",
    "When the gate's continuous decision was last evaluated (Unix time).",
    ["gate"],
    registry=REGISTRY,
)
SAMPLE_WRITE_FAILURES = Counter(
    "gonogo_sample_write_failures",
    "Samples that could not be written to the database, by loop (gate or check).",
    ["loop"],
    registry=REGISTRY,
)
CRITERION_VALUE = Gauge(
    "gonogo_criterion_value",
    "Latest measured value of a criterion (absent while it has none).",
    ["gate", "criterion"],
    registry=REGISTRY,
)
CRITERION_OUTCOME = Gauge(
    "gonogo_criterion_outcome",
    "Latest outcome of a criterion: 1 for the current outcome, 0 for the others.",
    ["gate", "criterion", "outcome"],
    registry=REGISTRY,
)
EVALUATIONS = Counter(
    "gonogo_evaluations",
    "Continuous gate evaluations, by resulting decision.",
    ["gate", "decision"],
    registry=REGISTRY,
)
EVALUATION_DURATION = Histogram(
    "gonogo_evaluation_duration_seconds",
    "Time to take one sample of a gate and decide.",
    ["gate"],
    registry=REGISTRY,
)
PROBE_REQUESTS = Counter(
    "gonogo_probe_requests",
    "Probe measurements, by probe type and result.",
    ["probe_type", "result"],
    registry=REGISTRY,
)
PROBE_DURATION = Histogram(
    "gonogo_probe_duration_seconds",
    "Time a probe took to answer one criterion.",
    ["probe_type"],
    registry=REGISTRY,
)
DECISION_CHANGES = Counter(
    "gonogo_decision_changes",
    "Changes of a gate's continuous decision, by the new decision.",
    ["gate", "decision"],
    registry=REGISTRY,
)
CHECKS = Counter(
    "gonogo_checks",
    "Checks finished, by final decision (or cancelled).",
    ["gate", "decision"],
    registry=REGISTRY,
)
CHECKS_RUNNING = Gauge(
    "gonogo_checks_running",
    "Checks currently running.",
    ["gate"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "gonogo_notifications",
    "Webhook notifications, by result (ok, error after retries, dropped when the queue is full).",
    ["result"],
    registry=REGISTRY,
)

BUILD_INFO = Gauge(
    "gonogo_build_info",
    "The running gonogo's version (always 1).",
    ["version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(package_version()).set(1)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

for _result in NOTIFICATION_RESULTS:
    NOTIFICATIONS.labels(_result)
for _loop in WRITE_LOOPS:
    SAMPLE_WRITE_FAILURES.labels(_loop)
# Leases: which replica samples what (app/coordination/leases.py).
LEASE_KINDS = ("gate", "check")
GATES_OWNED = Gauge(
    "gonogo_gates_owned",
    "Gates whose lease this replica holds (their gauges come from this replica only).",
    registry=REGISTRY,
)
LEASE_TAKEOVERS = Counter(
    "gonogo_lease_takeovers",
    "Leases claimed after their previous owner, another replica, let them expire"
    " without releasing them, by kind (gate or check).",
    ["kind"],
    registry=REGISTRY,
)
LEASE_RENEW_FAILURES = Counter(
    "gonogo_lease_renew_failures",
    "Renewals of this replica's leases that failed or were cut off by the local deadline.",
    registry=REGISTRY,
)
for _kind in LEASE_KINDS:
    LEASE_TAKEOVERS.labels(_kind)
# Every replica loads every gate, so the alert on gates no replica owns compares the sum
# of gonogo_gates_owned over replicas with this gauge's max over them.
GATES_LOADED = Gauge(
    "gonogo_gates_loaded",
    "Gates this process has loaded (from files and the API), sampled or not by it.",
    registry=REGISTRY,
)


def watch_gates_loaded(source: Callable[[], int]) -> None:
    """Read the number of loaded gates from ``source`` at each scrape."""
    GATES_LOADED.set_function(lambda: float(source()))


_lock = threading.Lock()
# Criterion names last exported per gate, so a redefined gate's vanished criteria go away.
_criteria_by_gate: dict[str, set[str]] = {}
# Gates whose counters exist at 0 for every label value, and probe types likewise.
_initialised_gates: set[str] = set()
_initialised_probe_types: set[str] = set()


def _initialise_counters(gate: Gate) -> None:
    """Create ``gate``'s counter series (and its probe types') at 0 the first time.

    ``labels()`` creates a missing child at 0 and leaves an existing one as it is.
    """
    name = gate.name
    probe_types = {config.type for config in gate.probes.values()}
    with _lock:
        new_gate = name not in _initialised_gates
        _initialised_gates.add(name)
        new_types = probe_types - _initialised_probe_types
        _initialised_probe_types.update(new_types)
    if new_gate:
        for decision in DECISIONS:
            EVALUATIONS.labels(name, decision)
            DECISION_CHANGES.labels(name, decision)
        for outcome in CHECK_OUTCOMES:
            CHECKS.labels(name, outcome)
    for probe_type in new_types:
        for result in PROBE_RESULTS:
            PROBE_REQUESTS.labels(probe_type, result)


def observe_evaluation(gate: Gate, verdict: Verdict, duration_s: float) -> None:
    """Export one continuous evaluation of ``gate``."""
    name = gate.name
    decision = verdict.decision.value
    _initialise_counters(gate)
    GATE_DECISION.observed[name] = verdict.decision
    if verdict.evaluated_at is not None:
        LAST_EVALUATION.labels(name).set(verdict.evaluated_at.timestamp())
    EVALUATIONS.labels(name, decision).inc()
    EVALUATION_DURATION.labels(name).observe(max(0.0, duration_s))

    current = {c.name for c in gate.criteria}
    with _lock:
        vanished = _criteria_by_gate.get(name, set()) - current
        _criteria_by_gate[name] = current
    for criterion in vanished:
        _remove_criterion(name, criterion)

    probe_types = {probe_name: config.type for probe_name, config in gate.probes.items()}
    for result in verdict.criteria:
        if result.name not in current:
            continue
        if result.value is None:
            _remove(CRITERION_VALUE, name, result.name)
        else:
            CRITERION_VALUE.labels(name, result.name).set(result.value)
        for outcome in OUTCOMES:
            CRITERION_OUTCOME.labels(name, result.name, outcome).set(
                1 if outcome == result.outcome.value else 0
            )
        if result.status is None:
            continue  # never reached the probe (e.g. an unfilled placeholder)
        probe_type = probe_types.get(result.probe, "unknown")
        PROBE_REQUESTS.labels(probe_type, result.status.value).inc()
        if result.duration_ms is not None:
            PROBE_DURATION.labels(probe_type).observe(result.duration_ms / 1000)


def watch_decisions(source: DecisionSource) -> None:
    """Read every gate's current decision from ``source`` at each scrape."""
    GATE_DECISION.source = source


def unwatch_decisions(source: DecisionSource) -> None:
    if GATE_DECISION.source == source:
        GATE_DECISION.source = None


def sample_write_failed(loop: str) -> None:
    """A sample could not be written (``loop``: gate or check)."""
    if loop not in WRITE_LOOPS:
        raise ValueError(f"loop must be one of {', '.join(WRITE_LOOPS)}")
    SAMPLE_WRITE_FAILURES.labels(loop).inc()


def decision_changed(gate_name: str, decision: Decision | str) -> None:
    DECISION_CHANGES.labels(gate_name, _value(decision)).inc()


def check_finished(gate_name: str, outcome: str) -> None:
    """A check ended: ``outcome`` is go, no_go, rollback or cancelled."""
    if outcome not in CHECK_OUTCOMES:
        raise ValueError(f"check outcome must be one of {', '.join(CHECK_OUTCOMES)}")
    CHECKS.labels(gate_name, outcome).inc()


def set_checks_running(gate_name: str, count: int) -> None:
    CHECKS_RUNNING.labels(gate_name).set(count)


def notification_sent(result: str) -> None:
    if result not in NOTIFICATION_RESULTS:
        raise ValueError(f"notification result must be one of {', '.join(NOTIFICATION_RESULTS)}")
    NOTIFICATIONS.labels(result).inc()


def forget_gate_gauges(gate_name: str) -> None:
    """Remove ``gate_name``'s gauges (its decision, criteria and last evaluation): this
    replica no longer owns the gate, so its owner exports them. Counters stay."""
    with _lock:
        criteria = _criteria_by_gate.pop(gate_name, set())
    for criterion in criteria:
        _remove_criterion(gate_name, criterion)
    GATE_DECISION.observed.pop(gate_name, None)
    _remove(LAST_EVALUATION, gate_name)


def forget_gate(gate_name: str) -> None:
    """Remove every series labelled with ``gate_name`` (the gate was removed)."""
    with _lock:
        criteria = _criteria_by_gate.pop(gate_name, set())
        _initialised_gates.discard(gate_name)
    for criterion in criteria:
        _remove_criterion(gate_name, criterion)
    GATE_DECISION.observed.pop(gate_name, None)
    _remove(LAST_EVALUATION, gate_name)
    for decision in DECISIONS:
        _remove(EVALUATIONS, gate_name, decision)
        _remove(DECISION_CHANGES, gate_name, decision)
    for outcome in CHECK_OUTCOMES:
        _remove(CHECKS, gate_name, outcome)
    _remove(EVALUATION_DURATION, gate_name)
    _remove(CHECKS_RUNNING, gate_name)


def render() -> tuple[bytes, str]:
    """The exposition body and its content type, for ``GET /metrics``."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _remove_criterion(gate_name: str, criterion: str) -> None:
    _remove(CRITERION_VALUE, gate_name, criterion)
    for outcome in OUTCOMES:
        _remove(CRITERION_OUTCOME, gate_name, criterion, outcome)


def _remove(metric: Gauge | Counter | Histogram, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        return


def _value(decision: Decision | str) -> str:
    return decision.value if isinstance(decision, Decision) else Decision(decision).value
