"""CPU and memory of one ``gonogo serve`` process holding many gates.

Runs the real server (scheduler, probes, metrics and SQLite sample persistence) twice
against a local fake Prometheus in its own process: first with no gates, the baseline;
then with ``--gates`` gates of 3 Prometheus criteria each, sampling every ``--interval``,
measured for ``--seconds`` once every gate has its first decision. CPU comes from the
process's own user + system time in /proc, memory from its VmRSS and VmHWM.

    uv run python bench/gonogo_footprint.py                 # 1,000 gates, 30 s, 2 minutes
    uv run python bench/gonogo_footprint.py --seconds 30    # a quicker look

Targets: < 25 % of one core, < 300 MB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from _support import (
    cpu_seconds,
    rss_mb,
    start_fake_prometheus,
    start_gonogo_serve,
    stop,
    tail_log,
    wait_until_ok,
    write_gates,
)
from prometheus_client.parser import text_string_to_metric_families

CPU_TARGET = 0.25
RSS_TARGET_MB = 300.0


@dataclass(frozen=True)
class Reading:
    cpu_share: float  # of one core
    rss_mb: float
    peak_mb: float
    evaluations: float
    decisions: dict[str, int]


def evaluations(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "gonogo_evaluations"
        for sample in family.samples
        if sample.name == "gonogo_evaluations_total"
    )


def decisions(base: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for gate in httpx.get(f"{base}/api/v1/gates", timeout=30).json():
        decision = gate["decision"]["decision"]
        counts[decision] = counts.get(decision, 0) + 1
    return counts


def wait_for_first_decisions(base: str, gates: int, *, timeout: float) -> None:
    """Until every gate has been evaluated once (start-up is not the steady state)."""
    deadline = time.monotonic() + timeout
    while evaluations(base) < gates:
        if time.monotonic() > deadline:
            raise SystemExit(f"not every gate was evaluated within {timeout:.0f}s")
        time.sleep(1)


def measure(gates_dir: Path, work: Path, *, gates: int, seconds: float) -> Reading:
    process, base = start_gonogo_serve(gates_dir, work)
    try:
        try:
            wait_until_ok(f"{base}/readyz", timeout=120)
            wait_for_first_decisions(base, gates, timeout=120)
        except SystemExit:
            print(tail_log(work), file=sys.stderr)
            raise
        evaluated_before = evaluations(base)
        cpu_before, wall_before = cpu_seconds(process.pid), time.perf_counter()
        peak = 0.0
        while (elapsed := time.perf_counter() - wall_before) < seconds:
            time.sleep(min(5.0, seconds - elapsed))
            peak = max(peak, rss_mb(process.pid)[0])
        cpu = (cpu_seconds(process.pid) - cpu_before) / (time.perf_counter() - wall_before)
        current, high_water = rss_mb(process.pid)
        return Reading(
            cpu_share=cpu,
            rss_mb=current,
            peak_mb=max(peak, high_water),
            evaluations=evaluations(base) - evaluated_before,
            decisions=decisions(base),
        )
    finally:
        stop(process)


def run(gates: int, interval: str, seconds: float, baseline_seconds: float) -> None:
    prometheus, url = start_fake_prometheus()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            (root / "idle" / "gates").mkdir(parents=True)
            idle = measure(
                root / "idle" / "gates", root / "idle", gates=0, seconds=baseline_seconds
            )
            (root / "loaded" / "gates").mkdir(parents=True)
            write_gates(root / "loaded" / "gates", gates, interval=interval, prometheus=url)
            loaded = measure(
                root / "loaded" / "gates", root / "loaded", gates=gates, seconds=seconds
            )
    finally:
        stop(prometheus)

    rows = [
        ("gates x criteria", f"{gates} x 3 at {interval}, measured {seconds:.0f} s"),
        ("evaluations in that time", f"{loaded.evaluations:.0f}"),
        ("current decisions", str(loaded.decisions)),
        ("CPU, gonogo serve, no gates", f"{idle.cpu_share * 100:.1f} % of one core"),
        (
            "CPU, gonogo serve, with gates",
            f"{loaded.cpu_share * 100:.1f} % of one core (target < {CPU_TARGET * 100:.0f} %)",
        ),
        ("RSS, gonogo serve, no gates", f"{idle.rss_mb:.0f} MB"),
        (
            "RSS, gonogo serve, with gates",
            f"{loaded.rss_mb:.0f} MB now, {loaded.peak_mb:.0f} MB peak"
            f" (target < {RSS_TARGET_MB:.0f} MB),"
            f" x{loaded.rss_mb / idle.rss_mb:.1f} the idle server",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    evaluated_all = sum(loaded.decisions.values()) == gates
    ok = loaded.cpu_share < CPU_TARGET and loaded.peak_mb < RSS_TARGET_MB and evaluated_all
    print("targets met" if ok else "TARGETS MISSED")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--gates", type=int, default=1000)
    parser.add_argument("--interval", default="30s")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    options = parser.parse_args()
    run(options.gates, options.interval, options.seconds, options.baseline_seconds)


if __name__ == "__main__":
    main()
