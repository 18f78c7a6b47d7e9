"""The statistical comparison of a canary's series with its baseline's (``compare:``).

Pure: two lists of numbers and the criterion's ``compare:`` settings in, an outcome with
its reason and details out (docs/decisions.md, "Statistical comparison").

The method:
- a two-sided Mann-Whitney U test (``scipy.stats.mannwhitneyu``) says whether the two
  samples differ at all, at the given confidence (significant when p < 1 - confidence);
- the Hodges-Lehmann estimate says by how much: the median of every pairwise difference
  canary[i] - baseline[j], with the distribution-free confidence interval that goes with
  the test (the k-th smallest and k-th largest pairwise differences, k from the normal
  approximation of U's distribution);
- the relative shift is that estimate over the baseline's median; a significant shift
  in ``direction`` beyond ``rollback_effect`` is a breach, beyond ``effect`` a fail, and
  anything else passes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from gates.conditions import format_duration
from gates.engine import CriterionOutcome, format_number
from gates.model import MIN_COMPARISON_POINTS, Compare


@dataclass(frozen=True, slots=True)
class Judgement:
    """The outcome of a criterion judged from several numbers (``compare:``, ``slo:``)."""

    outcome: CriterionOutcome
    reason: str
    value: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Shift:
    """The Hodges-Lehmann shift of one sample against another, with its interval."""

    estimate: float
    low: float
    high: float


def hodges_lehmann(canary: Sequence[float], baseline: Sequence[float], confidence: float) -> Shift:
    """The median of every difference canary[i] - baseline[j], and its two-sided
    ``confidence`` interval (order statistics of the differences; normal approximation
    of the Mann-Whitney U distribution for the ranks)."""
    import numpy as np  # imported on first use, like scipy below: most gates never compare

    n, m = len(canary), len(baseline)
    differences = np.subtract.outer(np.asarray(canary, float), np.asarray(baseline, float)).ravel()
    count = differences.size
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    k = math.floor(count / 2 - z * math.sqrt(n * m * (n + m + 1) / 12))
    k = min(max(k, 0), (count - 1) // 2)
    estimate = _median_and_ranks(differences, k)
    return Shift(*estimate)


def _median_and_ranks(values: np.ndarray[Any, Any], k: int) -> tuple[float, float, float]:
    """The median of ``values`` and its ``k``-th smallest and ``k``-th largest (0-based),
    with one partition of the whole and one of each half: numpy selects one rank far
    faster than several at once."""
    import numpy as np

    count = values.size
    upper = count // 2
    ordered = np.partition(values, upper)
    below, above = ordered[:upper], ordered[upper + 1 :]
    median = (
        float(ordered[upper]) if count % 2 else (float(below.max()) + float(ordered[upper])) / 2
    )
    low = float(np.partition(below, k)[k]) if k < upper else float(ordered[upper])
    high_rank = count - 1 - k - (upper + 1)
    high = (
        float(np.partition(above, high_rank)[high_rank])
        if high_rank >= 0
        else float(ordered[upper])
    )
    return median, low, high


def _percent(fraction: float) -> str:
    return f"{fraction * 100:+.3g}%"


def _settings(spec: Compare) -> dict[str, Any]:
    return {
        "test": spec.test,
        "window": format_duration(spec.window),
        "step": format_duration(spec.step),
        "confidence": spec.confidence,
        "effect": spec.effect,
        "rollback_effect": spec.rollback_effect,
        "direction": spec.direction,
    }


def compare_series(canary: Sequence[float], baseline: Sequence[float], spec: Compare) -> Judgement:
    """Judge the canary's points against the baseline's (module docstring)."""
    details: dict[str, Any] = _settings(spec)
    details.update(canary={"n": len(canary)}, baseline={"n": len(baseline)})
    if len(canary) < MIN_COMPARISON_POINTS or len(baseline) < MIN_COMPARISON_POINTS:
        return Judgement(
            CriterionOutcome.INCONCLUSIVE,
            f"only {len(canary)} canary and {len(baseline)} baseline points;"
            f" a comparison needs at least {MIN_COMPARISON_POINTS} a side",
            details=details,
        )
    for side, values in (("canary", canary), ("baseline", baseline)):
        bad = next((v for v in values if not math.isfinite(v)), None)
        if bad is not None:
            return Judgement(
                CriterionOutcome.INCONCLUSIVE,
                f"a {side} point is {bad!r}, not a finite number",
                details=details,
            )
    canary_median = statistics.median(canary)
    baseline_median = statistics.median(baseline)
    details["canary"]["median"] = canary_median
    details["baseline"]["median"] = baseline_median
    # scipy.stats takes seconds to import: only gates that compare pay for it, on their
    # first judgement (which runs in a worker thread, gates/judgements.py).
    from scipy.stats import mannwhitneyu

    p_value = float(mannwhitneyu(canary, baseline, alternative="two-sided").pvalue)
    shift = hodges_lehmann(canary, baseline, spec.confidence)
    details.update(
        p_value=p_value if math.isfinite(p_value) else None,
        shift=shift.estimate,
        shift_ci=[shift.low, shift.high],
    )
    sides = (
        f"canary n={len(canary)} median {format_number(canary_median)},"
        f" baseline n={len(baseline)} median {format_number(baseline_median)}"
    )
    if not math.isfinite(p_value):
        return Judgement(
            CriterionOutcome.INCONCLUSIVE,
            f"{sides}: the test gave no p-value",
            details=details,
        )
    significant = p_value < 1 - spec.confidence
    if baseline_median == 0:
        if not significant:
            details["relative_shift"] = None
            return Judgement(
                CriterionOutcome.PASS,
                f"{sides}: no significant difference (p={p_value:.3g})",
                details=details,
            )
        return Judgement(
            CriterionOutcome.INCONCLUSIVE,
            f"{sides}: shift {format_number(shift.estimate)} is significant (p={p_value:.3g})"
            " but the baseline's median is 0, so it has no relative size",
            details=details,
        )
    relative = shift.estimate / abs(baseline_median)
    details["relative_shift"] = relative
    confidence = f"{spec.confidence * 100:g}%"
    told = (
        f"{sides}: shift {format_number(shift.estimate)} ({_percent(relative)}, {confidence} CI"
        f" {format_number(shift.low)}..{format_number(shift.high)}), p={p_value:.3g}"
    )
    in_direction = (
        relative > 0
        if spec.direction == "increase"
        else relative < 0
        if spec.direction == "decrease"
        else relative != 0
    )
    size = abs(relative)
    if significant and in_direction:
        if spec.rollback_effect is not None and size > spec.rollback_effect:
            return Judgement(
                CriterionOutcome.BREACH,
                f"{told}; beyond rollback_effect {spec.rollback_effect * 100:g}%"
                f" ({spec.direction})",
                relative,
                details,
            )
        if size > spec.effect:
            return Judgement(
                CriterionOutcome.FAIL,
                f"{told}; beyond effect {spec.effect * 100:g}% ({spec.direction})",
                relative,
                details,
            )
        return Judgement(
            CriterionOutcome.PASS,
            f"{told}; within effect {spec.effect * 100:g}%",
            relative,
            details,
        )
    why = "not significant" if not significant else f"against direction {spec.direction}"
    return Judgement(CriterionOutcome.PASS, f"{told}; {why}", relative, details)
