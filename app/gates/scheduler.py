"""The continuous gate decision (``docs/decisions.md``): every gate sampled every ``interval``.

Each gate has its own asyncio task (the unit a database lease can later wrap). Ticks are
drift-free: a gate samples at ``anchor + k * interval``, and a sample that overruns skips
the ticks it missed instead of bunching them. At start-up the anchor is offset by a
stable per-gate phase within the interval (as Prometheus spreads its scrapes), so a
thousand gates do not all ask their sources at the same instant; a gate added or
redefined while running is sampled at once.

Reads (``current``, ``latest``, ``latest_body``, ``latest_all``) come from memory, never
do I/O, and all go through ``PublishedDecision.view`` with the scheduler's clock: once a
decision has expired (``docs/decisions.md``, "Freshness and expiry") every one of them
answers the stale ``no_go``. No read hands out the stored body without that check.

Choices worth knowing:
- Before its first sample a gate is ``no_go`` ("no sample yet"), so the first evaluation
  counts as a decision change (metric and webhook) only when it is ``go`` or ``rollback``.
- At start-up each gate's history is loaded from its stored samples of the current
  version, so a restart keeps the probes' windows (``http`` availability) and the runs.
- A redefined gate (new version from a file or the API) starts a fresh history: its
  criteria may mean something else now. Until its first new sample, reads return the
  last verdict of the previous version as ``no_go`` ("gate redefined ..."): it was judged
  by a definition the gate no longer has. Decision changes are judged against that
  last verdict as evaluated, so the redefinition itself sends no webhook.
- The decision is published from memory before its sample is written, so reads never
  wait on the database; the write is bounded (``SAMPLE_WRITE_BUDGET``) and a failure is
  logged and counted. While writes fail, the decision expires one freshness bound after
  the first sample that was not stored, so a database outage shows as a stale ``no_go``.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from app.core.clock import Clock
from app.core.ticker import Ticker
from app.gates.catalog import GateCatalog, LoadedGate
from app.gates.freshness import DecisionView, PublishedDecision, decision_body, encode_body
from app.observability import metrics
from app.observability.notify import Notifier
from gates.engine import Decision, Sample, Steady, Verdict, decide_safely, freshness_bound
from gates.model import Gate, history_size
from gates.sampler import placeholder_values, take_sample
from probes.timefmt import iso

log = structlog.get_logger(__name__)

# Samples in flight across all gates; each holds one slot for all its criteria. A safety
# bound sized so that hundreds of gates stuck on a dead source still leave room for the rest.
DEFAULT_MAX_CONCURRENT_SAMPLES = 512
# A continuous sample's write may take this long before the loop gives up on it and goes
# on (the database's own timeouts normally answer first).
SAMPLE_WRITE_BUDGET = 10.0


class SampleSink(Protocol):
    """Where continuous samples go, and where a restarted scheduler finds its history."""

    async def record_gate_sample(
        self, gate: str, verdict: Verdict, *, version: str, expires_at: datetime | None
    ) -> None: ...

    async def recent_gate_samples(self, gate: str, version: str, limit: int) -> Sequence[Sample]:
        """The newest ``limit`` samples of ``gate`` judged by ``version``, oldest first."""
        ...


def phase_offset(name: str, interval: timedelta) -> timedelta:
    """A stable offset in ``[0, interval)`` for a gate's ticks."""
    fraction = zlib.crc32(name.encode()) / 2**32
    return timedelta(microseconds=int(interval / timedelta(microseconds=1) * fraction))


def _expires_at(verdict: Verdict, gate: Gate) -> datetime | None:
    at = verdict.evaluated_at
    return at + freshness_bound(gate) if at is not None else None


def encode_verdict(verdict: Verdict, loaded: LoadedGate) -> bytes:
    """The decision body (``docs/api.md``) of a fresh ``verdict`` of a gate as UTF-8 JSON."""
    expires_at = _expires_at(verdict, loaded.gate)
    return encode_body(decision_body(verdict, expires_at, gate_version=loaded.version))


@dataclass
class _GateRun:
    loaded: LoadedGate
    history: deque[Sample]
    task: asyncio.Task[None] | None = None
    # The first sample whose write failed, while writes keep failing.
    unrecorded_since: datetime | None = None


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
        self._published: dict[str, PublishedDecision] = {}
        self._started = False
        catalog.subscribe(self._on_catalog_change)

    # -- reads: memory only ------------------------------------------------------------

    def current(self, gate: str) -> DecisionView | None:
        """The gate's decision as a reader may see it now (stale ``no_go`` once expired);
        None before its first evaluation."""
        published = self._published.get(gate)
        return published.view(self._clock.now()) if published is not None else None

    def current_all(self) -> dict[str, DecisionView]:
        now = self._clock.now()
        return {name: published.view(now) for name, published in self._published.items()}

    def latest(self, gate: str) -> Verdict | None:
        view = self.current(gate)
        return view.verdict if view is not None else None

    def latest_body(self, gate: str) -> bytes | None:
        """``current(gate)`` already serialised as the decision body JSON."""
        view = self.current(gate)
        return view.body if view is not None else None

    def latest_all(self) -> dict[str, Verdict]:
        return {name: view.verdict for name, view in self.current_all().items()}

    def decisions_now(self) -> Mapping[str, Decision]:
        """Every evaluated gate's decision as read now (``/metrics`` asks at each scrape)."""
        return {name: view.verdict.decision for name, view in self.current_all().items()}

    def history(self, gate: str) -> Sequence[Sample]:
        run = self._runs.get(gate)
        return tuple(run.history) if run else ()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        metrics.watch_decisions(self.decisions_now)
        for loaded in self._catalog.all():
            self._run(loaded, spread=True, restore=True)

    async def stop(self) -> None:
        self._started = False
        metrics.unwatch_decisions(self.decisions_now)
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runs.clear()

    def _on_catalog_change(self, name: str, loaded: LoadedGate | None) -> None:
        if not self._started:
            return
        previous = self._runs.get(name)
        self._halt(name)
        if loaded is None:
            self._published.pop(name, None)
            metrics.forget_gate(name)
            return
        published = self._published.get(name)
        if (
            previous is not None
            and published is not None
            and previous.loaded.version != loaded.version
        ):
            old = previous.loaded
            self._published[name] = PublishedDecision(
                published.evaluated,
                interval=old.gate.interval,
                bound=freshness_bound(old.gate),
                version=old.version,
                superseded=(
                    f"gate redefined at {iso(self._clock.now())}: version {loaded.version}"
                    f" has no sample yet (the last decision was judged by {old.version})"
                ),
            )
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
        await self._record(run, verdict)

    async def _record(self, run: _GateRun, verdict: Verdict) -> None:
        """Store the sample, within ``SAMPLE_WRITE_BUDGET``; a failure is logged, counted
        and ages the published decision (see the module docstring)."""
        gate = run.loaded.gate
        try:
            async with asyncio.timeout(SAMPLE_WRITE_BUDGET):
                await self._sink.record_gate_sample(
                    gate.name,
                    verdict,
                    version=run.loaded.version,
                    expires_at=_expires_at(verdict, gate),
                )
        except Exception as fault:
            log.error(
                "recording a gate sample failed",
                gate=gate.name,
                error=f"{type(fault).__name__}: {fault}",
            )
            metrics.sample_write_failed("gate")
            if run.unrecorded_since is None:
                run.unrecorded_since = verdict.evaluated_at or self._clock.now()
                self._refresh(run, verdict)
            return
        if run.unrecorded_since is not None:
            log.info("gate samples are stored again", gate=gate.name)
            run.unrecorded_since = None
            self._refresh(run, verdict)

    def _published_decision(self, run: _GateRun, verdict: Verdict) -> PublishedDecision:
        gate = run.loaded.gate
        return PublishedDecision(
            verdict,
            interval=gate.interval,
            bound=freshness_bound(gate),
            version=run.loaded.version,
            unrecorded_since=run.unrecorded_since,
        )

    def _refresh(self, run: _GateRun, verdict: Verdict) -> None:
        """Publish ``verdict`` again with its expiry recomputed (no metric, no webhook)."""
        if self._runs.get(run.loaded.name) is run:
            self._published[run.loaded.name] = self._published_decision(run, verdict)

    def _publish(self, run: _GateRun, verdict: Verdict, duration_s: float) -> None:
        gate = run.loaded.gate
        previous_published = self._published.get(gate.name)
        previous = previous_published.evaluated if previous_published else None
        self._published[gate.name] = self._published_decision(run, verdict)
        try:
            metrics.observe_evaluation(gate, verdict, duration_s)
        except Exception:
            log.exception("exporting gate metrics failed", gate=gate.name)
        before = previous.decision if previous else Decision.NO_GO
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
            gate, verdict, previous=previous.decision if previous else None
        )
