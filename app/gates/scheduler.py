"""The continuous gate decision (``docs/decisions.md``): every gate sampled every ``interval``.

Each gate has its own asyncio task (the unit a database lease can later wrap). Ticks are
drift-free: a gate samples at ``anchor + k * interval``, and a sample that overruns skips
the ticks it missed instead of bunching them. At start-up the anchor is offset by a
stable per-gate phase within the interval (as Prometheus spreads its scrapes), so a
thousand gates do not all ask their sources at the same instant; a gate added or
redefined while running is sampled at once.

Reads (``latest``, ``latest_body``, ``history``) come from memory and never do I/O.

Choices worth knowing:
- Before its first sample a gate is ``no_go`` ("no sample yet"), so the first evaluation
  counts as a decision change (metric and webhook) only when it is ``go`` or ``rollback``.
- At start-up each gate's history is loaded from its stored samples of the current
  version, so a restart keeps the probes' windows (``http`` availability) and the runs.
- A redefined gate (new version from a file or the API) starts a fresh history: its
  criteria may mean something else now. Until its first new sample, reads return the
  last verdict of the previous version, and decision changes are judged against it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import structlog

from app.core.clock import Clock
from app.core.ticker import Ticker
from app.gates.catalog import GateCatalog, LoadedGate
from app.observability import metrics
from app.observability.notify import Notifier
from gates.engine import Decision, Sample, Steady, Verdict, decide_safely
from gates.model import Gate
from gates.sampler import placeholder_values, take_sample

log = structlog.get_logger(__name__)

HISTORY_CAP = 2000
# Samples in flight across all gates; each holds one slot for all its criteria. A safety
# bound sized so that hundreds of gates stuck on a dead source still leave room for the rest.
DEFAULT_MAX_CONCURRENT_SAMPLES = 512


class SampleSink(Protocol):
    """Where continuous samples go, and where a restarted scheduler finds its history."""

    async def record_gate_sample(self, gate: str, verdict: Verdict, *, version: str) -> None: ...

    async def recent_gate_samples(self, gate: str, version: str, limit: int) -> Sequence[Sample]:
        """The newest ``limit`` samples of ``gate`` judged by ``version``, oldest first."""
        ...


def history_size(gate: Gate) -> int:
    """Samples a gate's decision can look back on: enough for ``steady_for``, every
    ``rollback_after`` and the longest criterion ``window``, within ``HISTORY_CAP``."""
    needed = max(gate.steady_for, *(gate.rollback_after_for(c) for c in gate.criteria))
    windows = [c.window for c in gate.criteria if c.window is not None]
    if windows:
        needed = max(needed, math.ceil(max(windows) / gate.interval) + 1)
    return min(needed, HISTORY_CAP)


def phase_offset(name: str, interval: timedelta) -> timedelta:
    """A stable offset in ``[0, interval)`` for a gate's ticks."""
    fraction = zlib.crc32(name.encode()) / 2**32
    return timedelta(microseconds=int(interval / timedelta(microseconds=1) * fraction))


def encode_verdict(verdict: Verdict) -> bytes:
    """The decision body (``docs/api.md``) as UTF-8 JSON bytes."""
    return json.dumps(verdict.as_dict(), separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class _GateRun:
    loaded: LoadedGate
    history: deque[Sample]
    task: asyncio.Task[None] | None = None


@dataclass
class _Published:
    verdict: Verdict
    body: bytes


class GateScheduler:
    def __init__(
        self,
        catalog: GateCatalog,
        *,
        notifier: Notifier,
        sink: SampleSink,
        clock: Clock,
        max_concurrent_samples: int = DEFAULT_MAX_CONCURRENT_SAMPLES,
    ) -> None:
        self._catalog = catalog
        self._notifier = notifier
        self._sink = sink
        self._clock = clock
        self._slots = asyncio.Semaphore(max_concurrent_samples)
        self._runs: dict[str, _GateRun] = {}
        self._published: dict[str, _Published] = {}
        self._started = False
        catalog.subscribe(self._on_catalog_change)

    # -- reads: memory only ------------------------------------------------------------

    def latest(self, gate: str) -> Verdict | None:
        published = self._published.get(gate)
        return published.verdict if published else None

    def latest_body(self, gate: str) -> bytes | None:
        """``latest(gate)`` already serialised as the decision body JSON."""
        published = self._published.get(gate)
        return published.body if published else None

    def latest_all(self) -> dict[str, Verdict]:
        return {name: published.verdict for name, published in self._published.items()}

    def history(self, gate: str) -> Sequence[Sample]:
        run = self._runs.get(gate)
        return tuple(run.history) if run else ()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        for loaded in self._catalog.all():
            self._run(loaded, spread=True, restore=True)

    async def stop(self) -> None:
        self._started = False
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runs.clear()

    def _on_catalog_change(self, name: str, loaded: LoadedGate | None) -> None:
        if not self._started:
            return
        self._halt(name)
        if loaded is None:
            self._published.pop(name, None)
            metrics.forget_gate(name)
        else:
            self._run(loaded, spread=False)

    def _halt(self, name: str) -> None:
        run = self._runs.pop(name, None)
        if run is not None and run.task is not None:
            run.task.cancel()

    def _run(self, loaded: LoadedGate, *, spread: bool, restore: bool = False) -> None:
        self._halt(loaded.name)
        run = _GateRun(loaded, deque(maxlen=history_size(loaded.gate)))
        run.task = asyncio.create_task(
            self._loop(run, spread=spread, restore=restore), name=f"gonogo-gate-{loaded.name}"
        )
        self._runs[loaded.name] = run

    async def _restore_history(self, run: _GateRun) -> None:
        """At start-up, carry on from the stored samples of the gate's current version (the
        probes' windows and the runs need them); without them the history starts empty."""
        loaded = run.loaded
        try:
            stored = await self._sink.recent_gate_samples(
                loaded.name, loaded.version, run.history.maxlen or 1
            )
        except Exception:
            log.exception("loading a gate's stored samples failed", gate=loaded.name)
            return
        run.history.extend(stored)
        if stored:
            log.info("gate history restored", gate=loaded.name, samples=len(stored))

    # -- one gate's loop ---------------------------------------------------------------

    async def _loop(self, run: _GateRun, *, spread: bool, restore: bool = False) -> None:
        if restore:
            await self._restore_history(run)
        gate = run.loaded.gate
        interval = gate.interval
        anchor = self._clock.now()
        if spread:
            anchor += phase_offset(gate.name, interval)
        ticker = Ticker(self._clock, anchor=anchor, interval=interval)
        while True:
            await ticker.sleep_until_due()
            try:
                await self._evaluate(run)
            except Exception:  # a fault in publishing must not end the gate's sampling
                log.exception("gate loop fault", gate=gate.name)
            ticker.advance()

    async def _evaluate(self, run: _GateRun) -> None:
        gate = run.loaded.gate
        started = time.perf_counter()
        try:
            async with self._slots:
                sample = await take_sample(
                    gate,
                    run.loaded.probes,
                    now=self._clock.now(),
                    values=placeholder_values(gate),
                    history=tuple(run.history),
                )
            run.history.append(sample)
            verdict = decide_safely(gate, run.history)
        except Exception as fault:  # fail closed and keep sampling
            log.exception("gate evaluation failed", gate=gate.name)
            verdict = Verdict(
                gate.name,
                Decision.NO_GO,
                self._clock.now(),
                (f"evaluation error: {type(fault).__name__}: {fault}",),
                Steady(0, gate.steady_for),
            )
        self._publish(run, verdict, time.perf_counter() - started)
        try:
            await self._sink.record_gate_sample(gate.name, verdict, version=run.loaded.version)
        except Exception:
            log.exception("recording a gate sample failed", gate=gate.name)

    def _publish(self, run: _GateRun, verdict: Verdict, duration_s: float) -> None:
        gate = run.loaded.gate
        previous = self._published.get(gate.name)
        self._published[gate.name] = _Published(verdict, encode_verdict(verdict))
        try:
            metrics.observe_evaluation(gate, verdict, duration_s)
        except Exception:
            log.exception("exporting gate metrics failed", gate=gate.name)
        before = previous.verdict.decision if previous else Decision.NO_GO
        if verdict.decision is before:
            return
        metrics.decision_changed(gate.name, verdict.decision)
        log.info(
            "gate decision changed",
            gate=gate.name,
            decision=verdict.decision.value,
            previous=before.value if previous else None,
        )
        self._notifier.decision_changed(
            gate, verdict, previous=previous.verdict.decision if previous else None
        )
