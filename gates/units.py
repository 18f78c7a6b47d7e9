"""The units values are shown in, and the one formatter every reason, table, page and
notification uses (docs/decisions.md, "Units shown").

A value is always measured and stored as a plain number (a ratio, seconds, a count); the
unit only says how to show it. It comes from the criterion's ``unit:`` key, else from the
first of its absolute conditions written with a unit; a relative condition says nothing
about it (``<= +10%`` is a change, not a percentage of the value).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal

from gates.conditions import Condition


class Unit(enum.StrEnum):
    RATIO = "ratio"  # 0.9997, shown as a number
    PERCENT = "percent"  # 0.9997, shown as 99.97 %
    SECONDS = "seconds"  # 0.33, shown as 330 ms; 2.5 as 2.5 s
    COUNT = "count"  # 42, shown as an integer when whole


# Significant digits a value is shown with, before more are added to tell two apart.
_DIGITS = {None: 6, Unit.RATIO: 6, Unit.COUNT: 6, Unit.PERCENT: 4, Unit.SECONDS: 3}
# Enough to tell any two different floats apart.
_MAX_DIGITS = 17
_WRITTEN_UNIT = re.compile(r"(?P<unit>%|ms|s|m)$")


def condition_unit(condition: Condition) -> Unit | None:
    """The unit an absolute condition implies: ``%`` a percentage of a ratio, ``ms``,
    ``s`` or ``m`` seconds, no unit a plain number (``None``); a relative condition none."""
    if condition.relative is not None:
        return None
    match = _WRITTEN_UNIT.search(condition.text)
    if match is None:
        return None
    return Unit.PERCENT if match["unit"] == "%" else Unit.SECONDS


def implied_unit(conditions: Iterable[Condition], written: Unit | None = None) -> Unit | None:
    """A criterion's unit: ``written`` (its ``unit:`` key) when set, else the first unit
    its absolute conditions imply, else ``None`` (plain numbers)."""
    if written is not None:
        return written
    for condition in conditions:
        unit = condition_unit(condition)
        if unit is not None:
            return unit
    return None


def unit_named(name: object) -> Unit | None:
    """The unit a decision body names (its criteria's ``unit``); ``None`` for plain
    numbers, and for anything that is not a unit gonogo knows."""
    return Unit(name) if isinstance(name, str) and name in tuple(Unit) else None


def format_value(value: float | None, unit: Unit | None = None) -> str:
    """``value`` in ``unit``: ``99.97 %``, ``330 ms``, ``2.5 s``, ``42``, ``0.329993``."""
    if value is None:
        return "no value"
    return _shown(value, unit, _DIGITS[unit])[0]


def format_pair(value: float, bound: float, unit: Unit | None = None) -> tuple[str, str]:
    """``value`` and ``bound`` in ``unit``: the bound exactly as it reads in decimals
    (``99.975 %``, not ``99.98 %``), and both with as many digits as it takes for them not
    to read as equal when they differ (``99.899 % <= 99.9 %``, never ``99.9 % <= 99.9 %``).
    Both sides get the same digits, so rounding never shows them in the wrong order."""
    digits = _DIGITS[unit]
    if math.isfinite(bound):
        written = len(Decimal(repr(bound)).normalize().as_tuple().digits)
        digits = min(max(digits, written), _MAX_DIGITS)
    while True:
        shown_value, read_value = _shown(value, unit, digits)
        shown_bound, read_bound = _shown(bound, unit, digits)
        if value == bound or read_value != read_bound or digits >= _MAX_DIGITS:
            return shown_value, shown_bound
        digits += 1


def _shown(value: float, unit: Unit | None, digits: int) -> tuple[str, Decimal | None]:
    """The text of ``value`` and the number it reads as (in the base unit), or ``None``
    for a value that is not a finite number."""
    if math.isnan(value):
        return "nan", None
    if math.isinf(value):
        return ("inf" if value > 0 else "-inf"), None
    exact = Decimal(repr(value))
    if unit is Unit.PERCENT:
        percent = _round(exact * 100, digits)
        return f"{_text(percent, digits)} %", percent / 100
    if unit is Unit.SECONDS:
        if exact != 0 and abs(exact) < 1:
            millis = _round(exact * 1000, digits)
            if abs(millis) < 1000:
                return f"{_text(millis, digits)} ms", millis / 1000
        seconds = _round(exact, digits)
        return f"{_text(seconds, digits)} s", seconds
    if unit is Unit.COUNT and exact == exact.to_integral_value() and abs(exact) < 10**16:
        return str(int(exact)), exact
    plain = _round(exact, digits)
    return _text(plain, digits), plain


def _round(number: Decimal, digits: int) -> Decimal:
    if number == 0:
        return Decimal(0)
    return number.quantize(Decimal(1).scaleb(number.adjusted() - digits + 1), ROUND_HALF_EVEN)


def _text(number: Decimal, digits: int) -> str:
    """Like ``format(float, 'g')``: positional unless very small or too large for
    ``digits``, no trailing zeros."""
    if number == 0:
        return "0"
    exponent = number.adjusted()
    if -4 <= exponent < max(digits, 6):
        text = format(number, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa = number.scaleb(-exponent)
    shown = format(mantissa, "f")
    shown = shown.rstrip("0").rstrip(".") if "." in shown else shown
    return f"{shown}e{exponent:+03d}"
