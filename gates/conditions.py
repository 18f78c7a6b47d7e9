"""Small value languages of gate files: conditions, durations and ``${placeholders}``."""

from __future__ import annotations

import enum
import math
import operator
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from probes.timefmt import format_duration

__all__ = ["format_duration"]

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
# Decimal so that '>= 99.9%' means exactly 0.999 (99.9 * 0.01 is 0.9990000000000001 in floats).
_UNIT_SCALE = {
    "": Decimal(1),
    "%": Decimal("0.01"),
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
}
_CONDITION = re.compile(
    r"^\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<sign>[+-])?\s*"
    r"(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
    r"\s*(?P<unit>%|ms|s|m)?\s*$"
)


# Thresholds beyond this are refused: 1e999 would overflow to inf.
MAX_THRESHOLD = 1e300


class ConditionError(ValueError):
    """A condition string that does not parse; the message says what is expected."""


class Relative(enum.StrEnum):
    """How a signed condition is measured from the baseline's value."""

    PERCENT = "percent"  # ``<= +10%``: the baseline plus 10 % of its size
    DIFFERENCE = "difference"  # ``<= +200ms``: the baseline plus 0.2


@dataclass(frozen=True, slots=True)
class Condition:
    """``<op> <number>[unit]``, e.g. ``> 99.9%`` (threshold 0.999) or ``< 2s``.

    A signed number is relative to a baseline (docs/decisions.md, "Baselines and relative
    conditions"): ``<= +10%`` (``relative`` percent, ``threshold`` 0.1) or ``<= +200ms``
    (``relative`` difference, ``threshold`` 0.2); ``bound`` turns it into a threshold.
    """

    op: str
    threshold: float
    text: str
    relative: Relative | None = None

    @classmethod
    def parse(cls, text: str) -> Condition:
        match = _CONDITION.match(text)
        if match is None:
            raise ConditionError(
                f"bad condition {text!r}: expected '<op> <number>[unit]' with op one of"
                " > >= < <= == != and unit one of % ms s m, e.g. '> 99.9%' or '< 2s'"
            )
        sign = -1 if match["sign"] == "-" else 1
        exact = sign * Decimal(match["number"]) * _UNIT_SCALE[match["unit"] or ""]
        threshold = float(exact)
        if not math.isfinite(threshold) or abs(threshold) > MAX_THRESHOLD:
            # 1e999 would become inf: a bound no value can meet (or every value meets).
            raise ConditionError(
                f"bad condition {text!r}: the number is too large; thresholds are finite,"
                f" at most {MAX_THRESHOLD:g} in size"
            )
        if threshold == 0 and exact != 0:
            raise ConditionError(
                f"bad condition {text!r}: the number is too small to tell from 0; write 0"
            )
        relative = None
        if match["sign"] is not None:
            relative = Relative.PERCENT if match["unit"] == "%" else Relative.DIFFERENCE
        return cls(match["op"], threshold, " ".join(text.split()), relative)

    @property
    def offset(self) -> str:
        """The written number with its sign and unit (``+10%``), as reasons show it."""
        return self.text[len(self.op) :].strip().replace(" ", "")

    def bound(self, baseline: float) -> float:
        """The threshold against ``baseline``: the written one for an absolute condition;
        ``baseline + |baseline| × N%`` or ``baseline + N`` for a relative one. Computed
        in decimals and rounded once, so ``<= +10%`` of 0.01 is exactly 0.011; may be
        infinite for a huge baseline (the caller refuses it)."""
        if self.relative is None:
            return self.threshold
        # Each number as the shortest decimal that reads back as it (what reasons show),
        # so 0.3 - 100ms is 0.2, not 0.19999999999999998.
        base = Decimal(repr(baseline))
        offset = Decimal(repr(self.threshold))
        if self.relative is Relative.PERCENT:
            offset = abs(base) * offset
        try:
            return float(base + offset)
        except ArithmeticError:
            return math.inf

    def compare(self, value: float, bound: float) -> bool:
        """Whether ``value <op> bound``; ``==`` and ``!=`` with a tiny tolerance."""
        if self.op in ("==", "!="):
            equal = math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-12)
            return equal if self.op == "==" else not equal
        return _OPERATORS[self.op](value, bound)

    def holds(self, value: float) -> bool:
        """Whether an absolute condition holds (a relative one needs ``bound``)."""
        if self.relative is not None:
            raise ValueError(f"{self.text!r} is relative: it needs a baseline")
        return self.compare(value, self.threshold)

    def __str__(self) -> str:
        return self.text


def describe_conditions(conditions: tuple[Condition, ...]) -> str:
    return " and ".join(c.text for c in conditions)


def relative_conditions(conditions: tuple[Condition, ...] | None) -> tuple[Condition, ...]:
    return tuple(c for c in conditions or () if c.relative is not None)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# The longest duration a gate file may write (interval, timeout, window, ...): far beyond
# any sane setting, far below what overflows a timedelta or a datetime sum.
MAX_DURATION = timedelta(days=366)


def parse_duration(text: str | int | float) -> timedelta:
    """``30s``, ``5m``, ``1h30m``, ``500ms``, ``7d``, or a number of seconds, at most
    ``MAX_DURATION``; raises ``ValueError`` (never ``OverflowError``) otherwise."""
    if isinstance(text, bool):
        raise ValueError("a duration is like '30s', '5m', '1h30m' or '500ms', not a boolean")
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"bad duration {text!r}: must be a non-negative number of seconds")
        return _bounded(float(text), text)
    compact = text.strip().replace(" ", "")
    if not compact or _DURATION_PART.sub("", compact) != "":
        raise ValueError(
            f"bad duration {text!r}: use a number with a unit (ms, s, m, h, d),"
            " e.g. '30s', '5m', '1h30m'"
        )
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(compact))
    return _bounded(seconds, text)


def _bounded(seconds: float, written: str | int | float) -> timedelta:
    if not math.isfinite(seconds) or seconds > MAX_DURATION.total_seconds():
        raise ValueError(
            f"bad duration {written!r}: longer than the maximum of {format_duration(MAX_DURATION)}"
        )
    return timedelta(seconds=seconds)


_PLACEHOLDER = r"""\$(?:
    (?P<escaped>\$) |
    \{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\} |
    (?P<named>(?!)) |
    (?P<invalid>\{[^}]*\})
)"""


class Placeholders(string.Template):
    """``${name}`` only: a bare ``$`` (as in regexes) is left alone, ``$$`` is a literal ``$``."""

    pattern = _PLACEHOLDER  # type: ignore[assignment]


def placeholder_names(text: str) -> set[str]:
    return {
        m["braced"] for m in re.finditer(_PLACEHOLDER, text, re.VERBOSE) if m["braced"] is not None
    }


class UnfilledPlaceholder(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return (
            f"placeholder ${{{self.name}}} has no value"
            " (set it in the check's vars or the gate's vars)"
        )


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Fill every ``${name}``; raise ``UnfilledPlaceholder`` naming the first one missing."""
    try:
        return Placeholders(text).substitute(values)
    except KeyError as missing:
        raise UnfilledPlaceholder(str(missing.args[0])) from None
    except ValueError as bad:
        raise UnfilledPlaceholder(str(bad)) from None
