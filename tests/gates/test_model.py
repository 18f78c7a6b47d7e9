"""The gate model's own rules: strict counts and how much history a gate keeps."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from gates.model import (
    HISTORY_CAP,
    Criterion,
    Gate,
    MinVolume,
    history_needed,
    history_problems,
    history_size,
    history_window,
)
from probes.base import ProbeConfig
from probes.http import HttpConfig


def gate_with(*criteria: dict[str, Any], **fields: Any) -> Gate:
    return Gate(
        name="portal",
        probes={
            "health": HttpConfig(type="http", url="http://portal/health"),
            "prom": ProbeConfig(type="prometheus"),
        },
        criteria=[Criterion(**c) for c in criteria],
        **fields,
    )


AVAILABILITY = {"name": "availability", "probe": "health", "metric": "availability"}
UP = {"name": "up", "probe": "health", "metric": "up", "go": "== 1"}


@pytest.mark.parametrize("field", ["steady_for", "rollback_after"])
@pytest.mark.parametrize("written", [True, False, "3", 3.0])
def test_gate_counts_are_whole_numbers_as_written(field: str, written: Any) -> None:
    """Regression: steady_for: true meant 1."""
    with pytest.raises(ValidationError) as raised:
        gate_with(UP, **{field: written})
    assert raised.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("written", [True, "2", 2.0, 0, 1001])
def test_criterion_rollback_after_is_a_whole_number_from_1_to_1000(written: Any) -> None:
    with pytest.raises(ValidationError):
        Criterion(name="c", probe="p", go="> 0", rollback_after=written)


@pytest.mark.parametrize("written", [True, float("nan"), float("inf"), -1])
def test_min_volume_at_least_is_a_finite_number(written: Any) -> None:
    with pytest.raises(ValidationError):
        MinVolume(at_least=written)
    assert MinVolume(at_least=100).at_least == 100.0


@pytest.mark.parametrize("field", ["timeout", "retries"])
def test_probe_timeout_and_retries_refuse_booleans(field: str) -> None:
    """Regression: a probe's timeout: true meant 1 second."""
    with pytest.raises(ValidationError):
        HttpConfig(type="http", url="http://portal/health", **{field: True})


def test_durations_past_the_maximum_are_validation_errors() -> None:
    with pytest.raises(ValidationError) as raised:
        gate_with(UP, interval=timedelta(days=400))
    assert "longer than the maximum of 366d" in str(raised.value)


def test_only_windows_gonogo_aggregates_itself_count_as_history_windows() -> None:
    gate = gate_with(
        {**AVAILABILITY, "go": "> 99.9%", "window": "5m"},
        {"name": "errors", "probe": "prom", "query": "x", "go": "< 1%", "window": "5m"},
    )
    assert history_window(gate, gate.criteria[0]) == timedelta(minutes=5)
    assert history_window(gate, gate.criteria[1]) is None


def test_history_needed_covers_steady_breach_runs_with_inconclusives_and_windows() -> None:
    assert history_needed(gate_with(UP, steady_for=5, rollback_after=2)) == 5
    # A breach run of 3 may hold as many inconclusive samples as breaches.
    assert history_needed(gate_with(UP, steady_for=2, rollback_after=3)) == 6
    windowed = gate_with({**AVAILABILITY, "go": "> 99%", "window": "5m"}, interval="30s")
    assert history_needed(windowed) == 11


def test_a_window_longer_than_the_history_kept_is_a_problem_with_a_fix() -> None:
    """Regression: HISTORY_CAP silently shortened a long window, which then counted."""
    longest = gate_with(
        {**AVAILABILITY, "go": "> 99%", "window": timedelta(seconds=30 * (HISTORY_CAP - 1))},
        interval="30s",
    )
    assert history_problems(longest) == []
    assert history_size(longest) == HISTORY_CAP
    too_long = gate_with(UP, {**AVAILABILITY, "go": "> 99%", "window": "1d"}, interval="30s")
    assert history_problems(too_long) == [
        (
            ("criteria", 1, "window"),
            "window 1d at interval 30s needs 2881 samples of history; gonogo keeps at most 2000",
            "use a window of at most 16h39m30s, or a longer interval",
        )
    ]
    assert history_size(too_long) == HISTORY_CAP
    # A window the source computes needs no history: no problem, however long.
    source_window = gate_with(
        {"name": "errors", "probe": "prom", "query": "x", "go": "< 1%", "window": "7d"},
        interval="30s",
    )
    assert history_problems(source_window) == []
