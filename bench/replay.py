"""What replaying 7 days at a 1-minute step (10,080 steps) costs, against the step-by-step
instant-query approach, in the same run.

A gate with 3 Prometheus criteria (bench/_support.py) against the fake Prometheus
(bench/fake_prometheus.py, its own process). The replay (``gates.replay.replay``) reads
each criterion once with ``query_range`` and judges every step with the engine. The
baseline takes a live sample per step (``gates.sampler.take_sample``: one instant query
per criterion, with ``time=`` implied by the sample's instant) and decides on the bounded
history, as a naive replay would; it runs a slice of ``--slice`` steps and is
extrapolated to 10,080 steps (said in the output). Both count the HTTP requests the fake
Prometheus answered.

Run: uv run python bench/replay.py [--slice 600]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._support import start_fake_prometheus, stop, write_gates
from gates.engine import Decision, Sample, decide_safely
from gates.loader import load_gate_file
from gates.model import history_size
from gates.replay import replay
from gates.sampler import placeholder_values, take_sample
from probes.prometheus import PrometheusConfig, PrometheusProbe

STEPS = 7 * 24 * 60
STEP = timedelta(minutes=1)


def answered(url: str) -> int:
    counts = httpx.get(f"{url}/requests").json()
    return int(counts["query"]) + int(counts["query_range"])


async def main(slice_steps: int) -> None:
    process, url = start_fake_prometheus()
    try:
        with tempfile.TemporaryDirectory() as folder:
            (name,) = write_gates(Path(folder), 1, interval="1m", prometheus=url)
            gate = load_gate_file(Path(folder) / f"{name}.yaml")
        config = gate.probes["prom"]
        assert isinstance(config, PrometheusConfig)
        probe = PrometheusProbe(config, name="prom")
        probes = {"prom": probe}
        values = placeholder_values(gate)
        end = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
        start = end - STEP * (STEPS - 1)
        try:
            before = answered(url)
            started = time.perf_counter()
            replayed = await replay(gate, probes, values=values, start=start, end=end, step=STEP)
            replay_s = time.perf_counter() - started
            replay_requests = answered(url) - before
            assert len(replayed.steps) == STEPS
            go = sum(1 for s in replayed.steps if s.verdict.decision is Decision.GO)

            before = answered(url)
            history: deque[Sample] = deque(maxlen=history_size(gate))
            started = time.perf_counter()
            for index in range(slice_steps):
                sample = await take_sample(
                    gate, probes, now=start + STEP * index, values=values, history=list(history)
                )
                history.append(sample)
                decide_safely(gate, list(history))
            slice_s = time.perf_counter() - started
            slice_requests = answered(url) - before
        finally:
            await probe.aclose()
    finally:
        stop(process)
    stepwise_s = slice_s / slice_steps * STEPS
    stepwise_requests = slice_requests / slice_steps * STEPS
    print(f"replay: {STEPS:,} steps x {len(gate.criteria)} Prometheus criteria, 1m step, 7 days")
    print(
        f"  range reads:   {replay_s:8.2f} s, {replay_requests:6,} HTTP requests ({go:,} steps go)"
    )
    print(
        f"  step by step:  {stepwise_s:8.2f} s, {stepwise_requests:6,.0f} HTTP requests"
        f" (measured {slice_steps:,} steps: {slice_s:.2f} s, {slice_requests:,} requests;"
        " extrapolated)"
    )
    print(
        f"  ratio: {stepwise_s / replay_s:.1f}x faster,"
        f" {stepwise_requests / max(replay_requests, 1):,.0f}x fewer requests"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slice", type=int, default=600, help="step-by-step steps to measure")
    asyncio.run(main(parser.parse_args().slice))
