"""Conditions, durations and placeholders: the small languages of gate files."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gates.conditions import (
    MAX_DURATION,
    Condition,
    ConditionError,
    UnfilledPlaceholder,
    fill_placeholders,
    format_duration,
    parse_duration,
    placeholder_names,
)


@pytest.mark.parametrize(
    ("text", "op", "threshold"),
    [
        ("> 99.9%", ">", 0.999),
        ("<2s", "<", 2.0),
        ("< 500ms", "<", 0.5),
        ("<= 1.5m", "<=", 90.0),
        (">= 0.98", ">=", 0.98),
        ("== 0", "==", 0.0),
        ("!= 3", "!=", 3.0),
        ("> 1e3", ">", 1000.0),
        ("  <   1 %  ", "<", 0.01),
    ],
)
def test_condition_parses_op_number_and_unit(text: str, op: str, threshold: float) -> None:
    condition = Condition.parse(text)
    assert condition.op == op
    assert condition.threshold == pytest.approx(threshold)


def test_condition_text_is_normalised_for_reasons() -> None:
    assert str(Condition.parse("  <   1 %  ")) == "< 1 %"


@pytest.mark.parametrize("text", [">> 5", "5 %%", "> 5 kb", "", "> ", "about 99", "=< 5", "> 5%%"])
def test_bad_conditions_say_what_is_expected(text: str) -> None:
    with pytest.raises(ConditionError, match=r"expected '<op> <number>\[unit\]'"):
        Condition.parse(text)


@pytest.mark.parametrize(
    ("text", "value", "holds"),
    [
        ("> 99.9%", 0.9991, True),
        ("> 99.9%", 0.999, False),
        (">= 99.9%", 0.999, True),
        ("== 0", 0.0, True),
        ("== 0", 1e-15, True),  # float noise is equality
        ("== 0", 0.001, False),
        ("!= 0", 1.0, True),
        ("!= 0", 0.0, False),
        ("< 2s", 1.999, True),
        ("< 2s", 2.0, False),
        ("<= 2s", 2.0, True),
    ],
)
def test_condition_holds(text: str, value: float, holds: bool) -> None:
    assert Condition.parse(text).holds(value) is holds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("7d", 604800),
        ("0s", 0),
        (45, 45),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text", ["", "5", "-5s", "5 minutes", "s", "1h-5m", "5x", -1, float("nan")]
)
def test_bad_durations(text: str | float) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_a_boolean_is_not_a_duration() -> None:
    with pytest.raises(ValueError, match="boolean"):
        parse_duration(True)


@given(st.integers(min_value=0, max_value=10 * 86400))
def test_duration_format_round_trips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


def test_format_duration_reads_like_the_files() -> None:
    assert format_duration(timedelta(seconds=90)) == "1m30s"
    assert format_duration(timedelta(milliseconds=250)) == "250ms"
    assert format_duration(timedelta(0)) == "0s"


def test_placeholder_names_skip_regex_dollars_and_escapes() -> None:
    text = 'up{v="${version}", path=~".*$", x="$$notone", e="${environment}"} ${version}'
    assert placeholder_names(text) == {"version", "environment"}


def test_fill_placeholders() -> None:
    assert fill_placeholders('v="${version}" $$ $', {"version": "1.2"}) == 'v="1.2" $ $'


def test_unfilled_placeholder_names_it() -> None:
    with pytest.raises(UnfilledPlaceholder) as missing:
        fill_placeholders('v="${version}", r="${region}"', {"version": "1"})
    assert missing.value.name == "region"
    assert "${region}" in str(missing.value)


@pytest.mark.parametrize(
    "text",
    ["99999999999999999999d", "1" + "0" * 400 + "s", "367d", "8785h", 10**30, 1e300, 40_000_000],
)
def test_durations_past_the_maximum_are_a_value_error_not_an_overflow(text: str | int) -> None:
    """Regression: 99999999999999999999d raised OverflowError (a 500, a traceback)."""
    with pytest.raises(ValueError, match="longer than the maximum of 366d"):
        parse_duration(text)


def test_the_maximum_duration_itself_is_accepted() -> None:
    assert parse_duration("366d") == MAX_DURATION
    assert parse_duration("365d23h59m59s").days == 365


@pytest.mark.parametrize("text", ["> 1e999", "< -1e999", ">= 1e301", "> 1e303%"])
def test_thresholds_that_overflow_are_refused(text: str) -> None:
    """Regression: '> 1e999' was accepted as '> inf' (a condition no value meets)."""
    with pytest.raises(ConditionError, match="too large"):
        Condition.parse(text)


def test_thresholds_that_underflow_to_zero_are_refused() -> None:
    with pytest.raises(ConditionError, match="too small to tell from 0"):
        Condition.parse("> 1e-999")
    assert Condition.parse("> 1e300").threshold == 1e300
    assert Condition.parse("> 0").threshold == 0
