"""CPU and memory of one gonogo process holding many gates (SPEC §9).

One process holds ``--gates`` gates (3 Prometheus criteria each) sampling a local fake
Prometheus every ``--interval``, for ``--seconds``. Prints CPU as a share of one core and
resident memory, against the same process before the gates were loaded.

    uv run python bench/gonogo_footprint.py                 # 1,000 gates, 30 s, 2 minutes
    uv run python bench/gonogo_footprint.py --seconds 30    # a quicker look

Targets: < 25 % of one core, < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import tempfile
import time
from pathlib import Path

from _support import rss_mb, start_fake_prometheus, stop, write_gates

from app.catalog import GateCatalog
from app.clock import SystemClock
from app.notify import Notifier
from app.scheduler import GateScheduler
from gates.engine import Verdict

CPU_TARGET = 0.25
RSS_TARGET_MB = 300.0


class CountingSink:
    """Stands in for the database: counts what would be written."""

    def __init__(self) -> None:
        self.decisions: collections.Counter[str] = collections.Counter()

    async def record_gate_sample(self, gate: str, verdict: Verdict) -> None:
        self.decisions[verdict.decision.value] += 1


async def run(gates: int, interval: str, seconds: float) -> None:
    prometheus, url = start_fake_prometheus()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            gates_dir = Path(scratch)
            gc.collect()
            baseline_rss, _ = rss_mb()
            idle_cpu_start, idle_wall_start = time.process_time(), time.perf_counter()
            await asyncio.sleep(2)
            idle_cpu = (time.process_time() - idle_cpu_start) / (
                time.perf_counter() - idle_wall_start
            )

            write_gates(gates_dir, gates, interval=interval, prometheus=url)
            load_started = time.perf_counter()
            catalog = GateCatalog(gates_dir=gates_dir)
            catalog.load_files()
            load_seconds = time.perf_counter() - load_started
            clock = SystemClock()
            notifier = Notifier(clock=clock)
            sink = CountingSink()
            scheduler = GateScheduler(catalog, notifier=notifier, sink=sink, clock=clock)
            await notifier.start()

            cpu_start, wall_start = time.process_time(), time.perf_counter()
            await scheduler.start()
            peak = 0.0
            while (elapsed := time.perf_counter() - wall_start) < seconds:
                await asyncio.sleep(min(5.0, seconds - elapsed))
                peak = max(peak, rss_mb()[0])
            cpu = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
            current_rss, high_water = rss_mb()
            latest = scheduler.latest_all()

            await scheduler.stop()
            await notifier.stop()
            await catalog.aclose()
    finally:
        stop(prometheus)

    evaluations = sum(sink.decisions.values())
    current = collections.Counter(v.decision.value for v in latest.values())
    rows = [
        ("gates x criteria", f"{gates} x 3 at {interval}, {seconds:.0f} s"),
        ("gate files loaded in", f"{load_seconds:.2f} s"),
        ("evaluations", f"{evaluations} ({dict(sink.decisions)})"),
        ("current decisions", str(dict(current))),
        ("CPU, idle process (baseline)", f"{idle_cpu * 100:.1f} % of one core"),
        ("CPU, with gates", f"{cpu * 100:.1f} % of one core (target < {CPU_TARGET * 100:.0f} %)"),
        ("RSS, before gates (baseline)", f"{baseline_rss:.0f} MB"),
        (
            "RSS, with gates",
            f"{current_rss:.0f} MB now, {max(peak, high_water):.0f} MB peak"
            f" (target < {RSS_TARGET_MB:.0f} MB), x{current_rss / baseline_rss:.1f} the baseline",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    ok = cpu < CPU_TARGET and max(peak, high_water) < RSS_TARGET_MB and len(latest) == gates
    print("targets met" if ok else "TARGETS MISSED")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--gates", type=int, default=1000)
    parser.add_argument("--interval", default="30s")
    parser.add_argument("--seconds", type=float, default=120.0)
    options = parser.parse_args()
    asyncio.run(run(options.gates, options.interval, options.seconds))


if __name__ == "__main__":
    main()
