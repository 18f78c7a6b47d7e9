"""SLO burn-rate judgement (``slo:``), multi-window and multi-burn-rate.

Pure: the errors and total a source gave for each window in, an outcome with its reason
and details out (docs/decisions.md, "SLO burn rate").

burn rate = error ratio / (1 - objective). A pair fires when the burn rate over its long
window and over its short window both exceed its ``burn_rate``. In order:
- a ``rollback`` pair that fired is a breach (its two windows were both measured);
- a ``no_go`` pair that fired, or an error budget shorter than ``budget.at_least``, is
  a fail;
- any window without a usable ratio (no data, an error, no traffic) is inconclusive;
- otherwise the criterion passes.
The value shown is the highest long-window burn rate measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from gates.comparison import Judgement
from gates.conditions import format_duration
from gates.engine import CriterionOutcome, format_number
from gates.model import BurnWindow, Slo

# Burn rates and budgets are ratios of ratios: "exactly at the rate" as a person writes
# it (1.44 % errors at 99.9 %, rate 14.4) must not fire on the last bit of a float.
_ROUNDING = 1e-9


def _above(value: float, bound: float) -> bool:
    return value > bound + _ROUNDING * max(1.0, abs(bound))


@dataclass(frozen=True, slots=True)
class WindowReading:
    """What the source said for one window: both numbers, or why there are none."""

    errors: float | None = None
    total: float | None = None
    cause: str | None = None

    def ratio(self) -> float | str:
        """The error ratio, or why there is none."""
        if self.cause is not None:
            return self.cause
        if self.errors is None or self.total is None:
            return "not measured"
        if not (math.isfinite(self.errors) and math.isfinite(self.total)):
            return "errors or total is not a finite number"
        if self.total <= 0:
            return "no requests in the window"
        if self.errors < 0:
            return f"errors is negative ({format_number(self.errors)})"
        if self.errors > self.total:
            return (
                f"errors ({format_number(self.errors)}) exceed total ({format_number(self.total)})"
            )
        return self.errors / self.total


def slo_windows(spec: Slo) -> tuple[timedelta, ...]:
    """Every window the criterion reads, once each: the pairs', then the budget's period."""
    found: dict[timedelta, None] = {}
    for pair in spec.windows:
        found[pair.long] = None
        found[pair.short] = None
    if spec.budget is not None:
        found[spec.budget.period] = None
    return tuple(found)


def _pair_name(pair: BurnWindow) -> str:
    return f"{format_duration(pair.long)}/{format_duration(pair.short)}"


def judge_slo(spec: Slo, readings: Mapping[timedelta, WindowReading]) -> Judgement:
    """The outcome of ``spec`` from one reading per window of ``slo_windows(spec)``."""
    allowed = 1 - spec.objective
    burns: dict[timedelta, float] = {}
    missing: dict[timedelta, str] = {}
    for window in slo_windows(spec):
        ratio = readings.get(window, WindowReading(cause="not measured")).ratio()
        if isinstance(ratio, str):
            missing[window] = ratio
        else:
            burns[window] = ratio / allowed

    def burn_text(window: timedelta) -> str:
        return format_number(burns[window]) if window in burns else "unknown"

    pairs: list[dict[str, Any]] = []
    fired: list[BurnWindow] = []
    for pair in spec.windows:
        did = (
            pair.long in burns
            and pair.short in burns
            and _above(burns[pair.long], pair.burn_rate)
            and _above(burns[pair.short], pair.burn_rate)
        )
        if did:
            fired.append(pair)
        pairs.append(
            {
                "long": format_duration(pair.long),
                "short": format_duration(pair.short),
                "burn_rate": pair.burn_rate,
                "then": pair.then,
                "long_burn": burns.get(pair.long),
                "short_burn": burns.get(pair.short),
                "fired": did,
            }
        )
    long_burns = [burns[p.long] for p in spec.windows if p.long in burns]
    value = max(long_burns) if long_burns else None
    details: dict[str, Any] = {"objective": spec.objective, "windows": pairs}
    budget_short: str | None = None
    if spec.budget is not None:
        period = spec.budget.period
        remaining = 1 - burns[period] if period in burns else None
        details["budget"] = {
            "period": format_duration(period),
            "at_least": spec.budget.at_least,
            "remaining": remaining,
        }
        if remaining is not None and _above(spec.budget.at_least, remaining):
            budget_short = (
                f"error budget over {format_duration(period)}: {remaining * 100:.3g}% left,"
                f" need {spec.budget.at_least * 100:g}%"
            )

    def fired_reason(pair: BurnWindow) -> str:
        return (
            f"{_pair_name(pair)} pair fired: burn rate {burn_text(pair.long)} over"
            f" {format_duration(pair.long)} and {burn_text(pair.short)} over"
            f" {format_duration(pair.short)}, both above {format_number(pair.burn_rate)}"
            f" (then: {pair.then})"
        )

    rollback = next((p for p in fired if p.then == "rollback"), None)
    if rollback is not None:
        return Judgement(CriterionOutcome.BREACH, fired_reason(rollback), value, details)
    no_go = next((p for p in fired if p.then == "no_go"), None)
    if no_go is not None:
        return Judgement(CriterionOutcome.FAIL, fired_reason(no_go), value, details)
    if budget_short is not None:
        return Judgement(CriterionOutcome.FAIL, budget_short, value, details)
    if missing:
        said = "; ".join(f"{format_duration(w)}: {cause}" for w, cause in missing.items())
        return Judgement(
            CriterionOutcome.INCONCLUSIVE,
            f"no error ratio for every window ({said})",
            value,
            details,
        )
    summary = ", ".join(
        f"{_pair_name(p)} burn {burn_text(p.long)}/{burn_text(p.short)}"
        f" (fires above {format_number(p.burn_rate)})"
        for p in spec.windows
    )
    reason = f"no pair fired: {summary}"
    if spec.budget is not None:
        remaining = details["budget"]["remaining"]
        reason += f"; budget {remaining * 100:.3g}% left over {format_duration(spec.budget.period)}"
    return Judgement(CriterionOutcome.PASS, reason, value, details)
