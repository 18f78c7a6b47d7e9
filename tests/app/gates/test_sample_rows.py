"""A stored sample read back is the sample that was stored: the engine and every view
judge and show it the same after a restart."""

from __future__ import annotations

from datetime import UTC, datetime

from app.core.db import SampleRow
from app.gates.freshness import decision_body
from app.gates.samples import measurements_of, sample_from_row
from gates.engine import Sample, decide, judge
from gates.model import Criterion, Gate
from probes.base import Measurement, ProbeConfig

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_a_stored_sample_reads_back_with_its_unit_dry_run_and_values() -> None:
    gate = Gate(
        name="portal",
        probes={"p": ProbeConfig(type="scripted")},
        criteria=[
            Criterion(name="availability", probe="p", go="> 99.9%"),
            Criterion(name="latency", probe="p", go="< 300ms", dry_run=True),
            Criterion(name="restarts", probe="p", go="== 0", unit="count"),
        ],
    )
    values = {"availability": 0.9997, "latency": 0.33, "restarts": 0.0}
    sample = Sample(
        T0,
        tuple(judge(c, Measurement.ok(values[c.name], T0)) for c in gate.criteria),
    )
    verdict = decide(gate, [sample])
    row = SampleRow(
        gate="portal",
        evaluated_at=T0,
        decision=verdict.decision.value,
        body=decision_body(verdict, None),
        measurements=measurements_of(sample),
    )
    again = sample_from_row(row)
    assert [r.as_dict() for r in again.results] == [r.as_dict() for r in sample.results]
    assert [r.unit for r in again.results] == [r.unit for r in sample.results]
