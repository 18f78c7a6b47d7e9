"""Test doubles for the runtime: a probe builder, gates built in code, recording sinks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from app.core.clock import Clock
from app.observability.notify import Notifier
from gates.engine import Decision, Sample, Verdict, decide, judge
from gates.model import Criterion, Gate, Notify
from probes.base import Measurement, ProbeConfig
from tests.fakeprobe import Answer, FakeProbe

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


class ProbeBench:
    """A ``probe_builder`` for ``GateCatalog`` that hands out scripted probes by name and
    remembers every one it built."""

    def __init__(self) -> None:
        self.built: list[FakeProbe] = []
        self.answers: dict[str, Answer] = {}
        self.fail_for: set[str] = set()

    def __call__(self, config: ProbeConfig, name: str) -> FakeProbe:
        if name in self.fail_for:
            raise RuntimeError(f"cannot build {name}")
        probe = FakeProbe(self.answers.get(name, 1.0), name=name)
        self.built.append(probe)
        return probe

    def latest(self, name: str) -> FakeProbe:
        return next(p for p in reversed(self.built) if p.name == name)


def gate_yaml(
    *,
    interval: str = "30s",
    steady_for: int = 3,
    rollback_after: int = 2,
    criteria: Sequence[tuple[str, str, str | None]] = (("availability", "> 99%", "< 95%"),),
    probe: str = "p",
    probe_value: float = 1,
) -> str:
    """A gate definition with one ``constant`` probe named ``probe``; every criterion uses it.

    Gates with the same ``probe`` and ``probe_value`` share one probe instance."""
    lines = [
        f"interval: {interval}",
        f"steady_for: {steady_for}",
        f"rollback_after: {rollback_after}",
        "probes:",
        f"  {probe}: {{type: constant, value: {probe_value}}}",
        "criteria:",
    ]
    for name, go, rollback in criteria:
        lines.append(f"  - name: {name}")
        lines.append(f"    probe: {probe}")
        lines.append(f'    go: "{go}"')
        if rollback is not None:
            lines.append(f'    rollback: "{rollback}"')
    return "\n".join(lines) + "\n"


def make_gate(
    name: str = "portal",
    *,
    criteria: Sequence[Mapping[str, Any]] = ({"name": "availability", "go": "> 99.9%"},),
    notify: Sequence[Notify] = (),
    **fields: Any,
) -> Gate:
    return Gate(
        name=name,
        probes={"p": ProbeConfig(type="scripted")},
        criteria=[Criterion(probe="p", **c) for c in criteria],
        notify=list(notify),
        **fields,
    )


def verdict_for(gate: Gate, values: Mapping[str, float | None], *, samples: int = 1) -> Verdict:
    """The verdict after ``samples`` identical samples measuring ``values``."""
    results = []
    for criterion in gate.criteria:
        value = values.get(criterion.name)
        measurement = (
            Measurement.no_data("no series", T0) if value is None else Measurement.ok(value, T0)
        )
        results.append(judge(criterion, measurement, duration_ms=12.5))
    sample = Sample(T0, tuple(results))
    return decide(gate, [sample] * samples)


class RecordingSink:
    def __init__(self) -> None:
        self.samples: list[tuple[str, Verdict]] = []
        self.fail = False

    async def record_gate_sample(
        self,
        gate: str,
        verdict: Verdict,
        *,
        version: str,
        expires_at: datetime | None = None,
        guard: Any = None,
        then: Any = None,
    ) -> None:
        if self.fail:
            raise RuntimeError("database is down")
        self.samples.append((gate, verdict))

    async def recent_gate_samples(self, gate: str, version: str, limit: int) -> list[Sample]:
        return []

    def of(self, gate: str) -> list[Verdict]:
        return [v for g, v in self.samples if g == gate]


class RecordingNotifier(Notifier):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.changes: list[tuple[str, Decision, Decision | None]] = []

    def decision_changed(
        self,
        gate: Gate,
        verdict: Verdict,
        *,
        previous: Decision | None,
        check: Mapping[str, Any] | None = None,
    ) -> None:
        self.changes.append((gate.name, verdict.decision, previous))


async def eventually(condition: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)
