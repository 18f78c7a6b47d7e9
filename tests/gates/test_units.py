"""Units: which one a criterion's values are shown in, and the one formatter."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gates.conditions import Condition
from gates.engine import CriterionOutcome, judge
from gates.model import Criterion
from gates.units import Unit, condition_unit, format_pair, format_value, implied_unit
from probes.base import Measurement

AT = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def ok(value: float) -> Measurement:
    return Measurement.ok(value, AT)


def conditions(*texts: str | None) -> list[Condition]:
    return [Condition.parse(part) for text in texts if text for part in text.split(" and ")]


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("> 99.9%", Unit.PERCENT),
        ("< 500ms", Unit.SECONDS),
        ("< 2s", Unit.SECONDS),
        ("< 1m", Unit.SECONDS),
        ("== 0", None),
        ("> 0.999", None),
        ("<= +10%", None),  # a change from the baseline, not a percentage of the value
        ("<= +200ms", None),
    ],
)
def test_a_condition_implies_a_unit_only_when_absolute_and_written_with_one(
    text: str, unit: Unit | None
) -> None:
    assert condition_unit(Condition.parse(text)) is unit


@pytest.mark.parametrize(
    ("value", "go", "rollback", "text"),
    [
        (0.9995, "> 99.9%", "< 95%", "99.95 %"),
        (0.9997, "> 99.9%", None, "99.97 %"),
        (0.013, "< 1%", None, "1.3 %"),
        (0.329993, "< 2s", None, "330 ms"),
        (0.35, "< 2s", None, "350 ms"),
        (2.5, "< 2s", None, "2.5 s"),
        (0.2, "< 500ms", None, "200 ms"),
        (0.9996, "< 1s", None, "1 s"),  # 999.6 ms rounds to 1000 ms: shown as seconds
        (3.0, "== 0", "> 0", "3"),
        (0.329993, "> 0.1", None, "0.329993"),
        (0.0104, "<= +10%", None, "0.0104"),  # only relative conditions: plain numbers
        (0.0104, "<= +10%", "> 5%", "1.04 %"),  # the absolute rollback gives the unit
        (None, "> 1", None, "no value"),
    ],
)
def test_values_are_shown_in_the_unit_of_their_absolute_conditions(
    value: float | None, go: str, rollback: str | None, text: str
) -> None:
    assert format_value(value, implied_unit(conditions(go, rollback))) == text


def test_the_unit_key_wins_over_the_conditions() -> None:
    assert implied_unit(conditions("> 99.9%"), Unit.RATIO) is Unit.RATIO
    assert format_value(0.9997, Unit.RATIO) == "0.9997"
    assert format_value(1234567.0, Unit.COUNT) == "1234567"
    assert format_value(2.5, Unit.COUNT) == "2.5"


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (math.nan, Unit.PERCENT, "nan"),
        (math.inf, Unit.SECONDS, "inf"),
        (-math.inf, None, "-inf"),
        (0.0, Unit.SECONDS, "0 s"),
        (-0.2, Unit.SECONDS, "-200 ms"),
        (1e300, Unit.PERCENT, "1e+302 %"),
        (1.23456789e-9, None, "1.23457e-09"),
    ],
)
def test_odd_values_are_shown_without_failing(value: float, unit: Unit | None, text: str) -> None:
    assert format_value(value, unit) == text


def test_a_plain_number_reads_as_it_always_did() -> None:
    for value in (0.329993, 1234567.0, 0.0001, 1e-05, -2.5e-9, 1 / 3, 999999.5, 42.0):
        assert format_value(value) == f"{value:.6g}"


def test_a_failing_value_never_reads_as_its_bound() -> None:
    assert format_pair(0.99899, 0.999, Unit.PERCENT) == ("99.899 %", "99.9 %")
    assert format_pair(0.9996, 1.0, Unit.SECONDS) == ("999.6 ms", "1 s")
    assert format_pair(0.999, 0.999, Unit.PERCENT) == ("99.9 %", "99.9 %")
    # The bound as written, not rounded to look like another one.
    assert format_pair(0.9997, 0.99975, Unit.PERCENT) == ("99.97 %", "99.975 %")


def test_the_unit_key_is_used_by_reasons() -> None:
    counted = Criterion(name="restarts", probe="p", go="< 3", unit="count")
    result = judge(counted, ok(4.0))
    assert (result.outcome, result.reason) == (CriterionOutcome.FAIL, "4 >= 3 (go: < 3)")
    assert result.as_dict()["unit"] == "count"
    assert result.as_dict()["value"] == 4.0  # the JSON keeps the raw number


def test_reasons_show_the_unit_on_both_sides() -> None:
    criterion = Criterion(name="availability", probe="p", go="> 99.9%")
    result = judge(criterion, ok(0.99899))
    assert result.reason == "99.899 % <= 99.9 % (go: > 99.9%)"
    latency = Criterion(name="latency", probe="p", go="< 300ms", rollback="> 1s")
    assert judge(latency, ok(0.329993)).reason == "330 ms >= 300 ms (go: < 300ms)"
    assert judge(latency, ok(2.5)).reason == "2.5 s > 1 s (rollback: > 1s)"


def test_relative_reasons_show_the_baseline_in_the_unit() -> None:
    criterion = Criterion(
        name="errors", probe="p", go=["<= +10%", "< 5%"], baseline={"vars": {"v": "1"}}
    )
    result = judge(criterion, ok(0.012), baseline=ok(0.01))
    assert result.reason == "1.2 % > 1.1 % (baseline 1 % +10%; go: <= +10% and < 5%)"


_SHOWN = re.compile(r"^(?P<number>\S+)(?: (?P<unit>%|ms|s))?$")
_SCALE = {None: Decimal(1), "%": Decimal("0.01"), "ms": Decimal("0.001"), "s": Decimal(1)}


def read_back(text: str) -> Decimal:
    match = _SHOWN.match(text)
    assert match is not None, text
    return Decimal(match["number"]) * _SCALE[match["unit"]]


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
condition_texts = st.builds(
    lambda op, number, unit: f"{op} {number}{unit}",
    st.sampled_from([">", ">=", "<", "<=", "==", "!="]),
    st.decimals(min_value=0, max_value=100000, places=4, allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "%", "ms", "s", "m"]),
)


@given(
    text=condition_texts,
    written=st.none() | st.sampled_from(list(Unit)),
    far=finite,
    near=st.floats(min_value=-1e-3, max_value=1e-3),
    steps=st.integers(min_value=-3, max_value=3),
    how=st.sampled_from(["far", "near", "steps"]),
)
def test_a_reason_never_reads_its_value_as_its_bound_when_they_differ(
    text: str, written: Unit | None, far: float, near: float, steps: int, how: str
) -> None:
    condition = Condition.parse(text)
    # Values anywhere, a little off the bound, or a few floats away from it.
    value = {"far": far, "near": condition.threshold * (1 + near), "steps": condition.threshold}[
        how
    ]
    for _ in range(abs(steps) if how == "steps" else 0):
        value = math.nextafter(value, math.inf if steps > 0 else -math.inf)
    unit = implied_unit([condition], written)
    criterion = Criterion(name="c", probe="p", go=text, unit=written)
    result = judge(criterion, ok(value))
    words = re.match(r"^(.+?) (?:>=|<=|==|!=|>|<) (.+?) \(go: ", result.reason)
    assert words is not None, result.reason
    shown, bound = words.groups()
    assert (shown, bound) == format_pair(value, condition.threshold, unit)
    # The bound is shown as written, and the value never on the wrong side of it.
    assert read_back(bound) == Decimal(repr(condition.threshold))
    assert not (value < condition.threshold and read_back(shown) > read_back(bound))
    assert not (value > condition.threshold and read_back(shown) < read_back(bound))
    if result.outcome is CriterionOutcome.FAIL and value != condition.threshold:
        assert read_back(shown) != read_back(bound)
