"""What one Mann-Whitney judgement costs, against a plain threshold judgement in the same run.

For 2 x 40 and 2 x 1,000 points (canary and baseline, a 5 % shift with noise), this times
``gates.comparison.compare_series`` (scipy's two-sided Mann-Whitney U, the Hodges-Lehmann
shift over every pairwise difference and its confidence interval) and, as the baseline,
``gates.engine.judge`` of one measurement against ``go: "< 1%"`` / ``rollback: "> 5%"``.
Each is repeated for a fixed time; the figures are the median per call and the ratio.
Reading the series is not included: both sides are read concurrently, so a comparison
costs its slower read plus this.

Run: uv run python bench/judgement.py [--seconds 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gates.comparison import compare_series
from gates.engine import judge
from gates.model import Compare, Criterion
from probes.base import Measurement

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def per_call(call: Callable[[], object], seconds: float) -> float:
    """Median seconds per call over batches run for ``seconds`` in all."""
    batch = 1
    while True:  # a batch long enough for the clock to measure well
        started = time.perf_counter()
        for _ in range(batch):
            call()
        if time.perf_counter() - started > 0.01:
            break
        batch *= 2
    timings = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(timings) < 5:
        started = time.perf_counter()
        for _ in range(batch):
            call()
        timings.append((time.perf_counter() - started) / batch)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()

    criterion = Criterion.model_validate(
        {"name": "error-rate", "probe": "prom", "go": "< 1%", "rollback": "> 5%"}
    )
    measurement = Measurement.ok(0.004, NOW)
    spec = Compare.model_validate(
        {"window": "10m", "step": "15s", "effect": "10%", "rollback_effect": "50%"}
    )
    threshold = per_call(lambda: judge(criterion, measurement), args.seconds)
    print(f"threshold judgement: {threshold * 1e6:9.2f} us per call (baseline)")
    rng = random.Random(7)
    for n in (40, 1000):
        baseline = [0.1 * (1 + rng.gauss(0, 0.05)) for _ in range(n)]
        canary = [0.105 * (1 + rng.gauss(0, 0.05)) for _ in range(n)]
        cost = per_call(lambda c=canary, b=baseline: compare_series(c, b, spec), args.seconds)
        print(
            f"mann-whitney 2 x {n:>5}: {cost * 1e6:9.2f} us per call"
            f" = {cost / threshold:8.0f} x threshold"
        )


if __name__ == "__main__":
    main()
