from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from app.core.clock import ManualClock
from app.gates.catalog import GateCatalog
from app.gates.scheduler import GateScheduler, encode_verdict, history_size, phase_offset
from app.observability import metrics
from gates.engine import Decision
from probes.base import Measurement
from tests.app.fakes import (
    T0,
    ProbeBench,
    RecordingNotifier,
    RecordingSink,
    eventually,
    gate_yaml,
    make_gate,
)

INTERVAL = 30.0


@dataclass
class Runtime:
    clock: ManualClock
    bench: ProbeBench
    catalog: GateCatalog
    sink: RecordingSink
    notifier: RecordingNotifier
    scheduler: GateScheduler

    def probe(self, gate: str) -> Any:
        loaded = self.catalog.get(gate)
        assert loaded is not None
        return loaded.probes["p"]

    async def tick(self, times: int = 1) -> None:
        for _ in range(times):
            await self.clock.advance(INTERVAL)

    def decisions(self, gate: str) -> list[str]:
        return [v.decision.value for v in self.sink.of(gate)]


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    clock = ManualClock(T0)
    bench = ProbeBench()
    catalog = GateCatalog(gates_dir=None, probe_builder=bench, close_grace=0)
    sink = RecordingSink()
    notifier = RecordingNotifier(clock)
    scheduler = GateScheduler(catalog, notifier=notifier, sink=sink, clock=clock)
    yield Runtime(clock, bench, catalog, sink, notifier, scheduler)
    await scheduler.stop()
    await catalog.aclose()


async def started(runtime: Runtime) -> None:
    """Start, then let one interval pass: every gate takes its first sample at its phase."""
    await runtime.scheduler.start()
    await runtime.clock.settle()
    await runtime.tick()


async def test_the_gate_goes_after_steady_for_passing_samples(runtime: Runtime) -> None:
    runtime.catalog.put_api_gate("portal", gate_yaml(steady_for=3))
    await started(runtime)

    first = runtime.scheduler.latest("portal")
    assert first is not None and first.decision is Decision.NO_GO
    assert "steady 1/3" in first.reasons
    await runtime.tick()
    assert runtime.decisions("portal") == ["no_go", "no_go"]
    await runtime.tick()

    latest = runtime.scheduler.latest("portal")
    assert latest is not None and latest.decision is Decision.GO
    assert runtime.decisions("portal") == ["no_go", "no_go", "go"]
    assert runtime.notifier.changes == [("portal", Decision.GO, Decision.NO_GO)]
    loaded = runtime.catalog.get("portal")
    assert loaded is not None
    assert runtime.scheduler.latest_body("portal") == encode_verdict(latest, loaded)
    body = json.loads(runtime.scheduler.latest_body("portal") or b"")
    assert body["gate_version"] == loaded.version
    assert runtime.scheduler.latest_all() == {"portal": latest}


async def test_rollback_after_consecutive_breaches_and_the_webhook_hears_it(
    runtime: Runtime,
) -> None:
    runtime.catalog.put_api_gate("portal", gate_yaml(steady_for=1, rollback_after=2))
    await started(runtime)
    assert runtime.notifier.changes == [("portal", Decision.GO, None)]  # first: go from unknown

    runtime.probe("portal").answer = 0.90  # below the rollback threshold of 95 %
    await runtime.tick()
    breaching = runtime.scheduler.latest("portal")
    assert breaching is not None and breaching.decision is Decision.NO_GO
    assert any("[breach 1/2]" in r for r in breaching.reasons)
    await runtime.tick()

    latest = runtime.scheduler.latest("portal")
    assert latest is not None and latest.decision is Decision.ROLLBACK
    assert runtime.notifier.changes[1:] == [
        ("portal", Decision.NO_GO, Decision.GO),
        ("portal", Decision.ROLLBACK, Decision.NO_GO),
    ]


async def test_a_first_no_go_is_not_announced(runtime: Runtime) -> None:
    runtime.catalog.put_api_gate("portal", gate_yaml(steady_for=3))
    await started(runtime)
    await runtime.tick()
    assert runtime.notifier.changes == []
    assert len(runtime.sink.of("portal")) == 2


async def test_samples_land_on_a_drift_free_grid_with_the_gate_phase(runtime: Runtime) -> None:
    runtime.catalog.put_api_gate("portal", gate_yaml())
    await started(runtime)
    await runtime.tick(4)

    phase = phase_offset("portal", timedelta(seconds=INTERVAL))
    assert timedelta(0) < phase < timedelta(seconds=INTERVAL)
    times = [v.evaluated_at for v in runtime.sink.of("portal")]
    assert times == [T0 + phase + k * timedelta(seconds=INTERVAL) for k in range(5)]


async def test_gates_spread_their_start_up_samples_over_the_interval(runtime: Runtime) -> None:
    names = [f"gate-{i}" for i in range(20)]
    for index, name in enumerate(names):
        runtime.catalog.put_api_gate(name, gate_yaml(probe_value=index))
    await runtime.scheduler.start()
    await runtime.clock.settle()
    assert runtime.sink.samples == []

    await runtime.clock.advance(INTERVAL / 2)
    first_half = {gate for gate, _ in runtime.sink.samples}
    await runtime.clock.advance(INTERVAL / 2)
    assert {gate for gate, _ in runtime.sink.samples} == set(names)
    assert 0 < len(first_half) < len(names)
    assert all(len(runtime.sink.of(name)) == 1 for name in names)


async def test_a_hanging_probe_in_one_gate_does_not_delay_another(runtime: Runtime) -> None:
    runtime.catalog.put_api_gate("slow", gate_yaml(probe_value=1))
    runtime.catalog.put_api_gate("fast", gate_yaml(probe_value=2))
    runtime.probe("slow").hang()
    await started(runtime)

    await runtime.tick(5)

    assert runtime.probe("slow").in_flight == 1
    assert runtime.scheduler.latest("slow") is None
    assert len(runtime.sink.of("fast")) == 6  # started() lets one interval pass too

    # Released after five missed ticks: one late sample, then back on the grid; the
    # missed ticks are skipped, not run back to back.
    runtime.probe("slow").release()
    await eventually(lambda: len(runtime.sink.of("slow")) == 1)
    await runtime.clock.settle()
    assert len(runtime.probe("slow").calls) == 1
    await runtime.tick()
    assert len(runtime.sink.of("slow")) == 2
    late, next_one = (v.evaluated_at for v in runtime.sink.of("slow"))
    phase = phase_offset("slow", timedelta(seconds=INTERVAL))
    assert late == T0 + phase
    assert (next_one - (T0 + phase)) % timedelta(seconds=INTERVAL) == timedelta(0)
    assert next_one > runtime.clock.now() - timedelta(seconds=INTERVAL)


async def test_probe_faults_stay_inconclusive_for_their_own_criterion(runtime: Runtime) -> None:
    runtime.bench.answers["p"] = RuntimeError("client bug")
    runtime.catalog.put_api_gate("portal", gate_yaml(steady_for=1))
    await started(runtime)
    latest = runtime.scheduler.latest("portal")
    assert latest is not None and latest.decision is Decision.NO_GO
    assert latest.criteria[0].outcome.value == "inconclusive"
    assert "client bug" in latest.criteria[0].reason


async def test_an_evaluation_fault_is_a_no_go_naming_it_and_sampling_goes_on(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.gates import scheduler as scheduler_module

    real = scheduler_module.take_sample
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("sampler exploded")
        return await real(*args, **kwargs)

    monkeypatch.setattr(scheduler_module, "take_sample", flaky)
    runtime.catalog.put_api_gate("portal", gate_yaml(steady_for=1))
    await started(runtime)
    await runtime.tick()
    failed = runtime.scheduler.latest("portal")
    assert failed is not None and failed.decision is Decision.NO_GO
    assert failed.reasons == ("evaluation error: RuntimeError: sampler exploded",)
    await runtime.tick()
    assert runtime.decisions("portal") == ["go", "no_go", "go"]


async def test_a_failing_sink_never_stops_the_loop(runtime: Runtime) -> None:
    runtime.sink.fail = True
    runtime.catalog.put_api_gate("portal", gate_yaml(steady_for=2))
    await started(runtime)
    await runtime.tick()
    latest = runtime.scheduler.latest("portal")
    assert latest is not None and latest.decision is Decision.GO
    assert len(runtime.scheduler.history("portal")) == 2


async def test_gates_added_replaced_and_removed_while_running(runtime: Runtime) -> None:
    runtime.catalog.put_api_gate("portal", gate_yaml(steady_for=3))
    await started(runtime)
    runtime.catalog.put_api_gate("checkout", gate_yaml(steady_for=1, probe_value=2))
    await runtime.clock.settle()
    assert runtime.scheduler.latest("checkout") is not None

    await runtime.tick(2)
    assert len(runtime.scheduler.history("portal")) == 3
    runtime.catalog.put_api_gate("portal", gate_yaml(steady_for=4))
    await runtime.clock.settle()
    # A new definition starts a fresh history.
    assert len(runtime.scheduler.history("portal")) == 1
    replaced = runtime.scheduler.latest("portal")
    assert replaced is not None and replaced.steady.needed == 4

    runtime.catalog.remove_api_gate("checkout")
    await runtime.clock.settle()
    assert runtime.scheduler.latest("checkout") is None
    assert runtime.scheduler.history("checkout") == ()
    sampled = len(runtime.sink.of("checkout"))
    await runtime.tick(2)
    assert len(runtime.sink.of("checkout")) == sampled
    assert "checkout" not in runtime.scheduler.latest_all()


async def test_history_is_capped_to_what_the_decision_needs(runtime: Runtime) -> None:
    runtime.catalog.put_api_gate("portal", gate_yaml(steady_for=3, rollback_after=2))
    await started(runtime)
    await runtime.tick(10)
    # steady_for 3; a breach run of 2 may hold as many inconclusive samples: 2 x 2.
    assert len(runtime.scheduler.history("portal")) == 4


def test_history_size_covers_steady_rollback_and_windows() -> None:
    assert history_size(make_gate(steady_for=5, rollback_after=2)) == 5
    assert history_size(make_gate(steady_for=2, rollback_after=7)) == 14
    windowed = make_gate(
        steady_for=2,
        interval="30s",
        criteria=({"name": "availability", "go": "> 99%", "window": "5m"},),
    )
    assert history_size(windowed) == 11
    huge = make_gate(
        interval="1s", criteria=({"name": "availability", "go": "> 99%", "window": "24h"},)
    )
    assert history_size(huge) == 2000


async def test_metrics_follow_the_continuous_evaluations(runtime: Runtime) -> None:
    runtime.catalog.put_api_gate("metrics-gate", gate_yaml(steady_for=2))
    runtime.bench.answers["p"] = 0.999
    await started(runtime)
    await runtime.tick()

    decision = metrics.REGISTRY.get_sample_value
    assert decision("gonogo_gate_decision", {"gate": "metrics-gate", "decision": "go"}) == 1
    assert decision("gonogo_gate_decision", {"gate": "metrics-gate", "decision": "no_go"}) == 0
    assert metrics.CRITERION_VALUE.labels("metrics-gate", "availability")._value.get() == 1.0
    assert metrics.EVALUATIONS.labels("metrics-gate", "no_go")._value.get() == 1
    assert metrics.EVALUATIONS.labels("metrics-gate", "go")._value.get() == 1
    assert metrics.DECISION_CHANGES.labels("metrics-gate", "go")._value.get() == 1

    runtime.probe("metrics-gate").answer = Measurement.timeout("no answer", T0)
    await runtime.tick()
    body, _ = metrics.render()
    assert b'gonogo_criterion_value{criterion="availability",gate="metrics-gate"}' not in body
    assert (
        b'gonogo_criterion_outcome{criterion="availability",gate="metrics-gate",'
        b'outcome="inconclusive"} 1.0' in body
    )

    runtime.catalog.remove_api_gate("metrics-gate")
    body, _ = metrics.render()
    assert b'gate="metrics-gate"' not in body


async def test_a_hanging_webhook_receiver_never_delays_decisions() -> None:
    import asyncio

    from app.observability.notify import Notifier

    connected = asyncio.Event()
    never = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await never.wait()  # reads the request, never answers
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clock = ManualClock(T0)
    bench = ProbeBench()
    catalog = GateCatalog(gates_dir=None, probe_builder=bench, close_grace=0)
    notifier = Notifier(clock=clock, attempts=2, attempt_timeout=30)
    sink = RecordingSink()
    scheduler = GateScheduler(catalog, notifier=notifier, sink=sink, clock=clock)
    text = gate_yaml(steady_for=1) + f'notify: [{{url: "http://127.0.0.1:{port}/hook"}}]\n'
    catalog.put_api_gate("portal", text)
    await notifier.start()
    await scheduler.start()
    try:
        await clock.advance(INTERVAL)  # first sample: go, announced
        await asyncio.wait_for(connected.wait(), timeout=5)
        bench.latest("p").answer = 0.5  # breach: no_go then rollback, both announced
        for _ in range(3):
            await clock.advance(INTERVAL)
        assert [v.decision.value for v in sink.of("portal")] == [
            "go",
            "no_go",
            "rollback",
            "rollback",
        ]
    finally:
        never.set()
        await scheduler.stop()
        await notifier.stop(drain_timeout=0)
        await catalog.aclose()
        server.close()
