"""The values a baseline run fills a query with, and who supplied each."""

from __future__ import annotations

import pytest

from gates.conditions import UnfilledPlaceholder
from gates.model import Baseline
from gates.placeholders import PlaceholderValues, baseline_values


def test_a_baseline_var_filled_from_a_check_value_stays_check_supplied() -> None:
    values = PlaceholderValues(gate={"baseline": "1.4.1"}, check={"version": "1.4.2"})
    checked = PlaceholderValues(gate={}, check={"version": "1.4.2", "baseline": "1.4.1"})
    for given in (values, checked):
        run = baseline_values(given, Baseline(vars={"version": "${baseline}"}))
        assert run["version"] == "1.4.1"
        assert run.supplied("version") == given.supplied("baseline")


def test_a_baseline_var_its_author_wrote_out_is_not_quoted() -> None:
    values = PlaceholderValues(gate={}, check={"version": "1.4.2", "stage": "canary"})
    run = baseline_values(values, Baseline(vars={"version": "stable", "stage": "main"}))
    assert dict(run) == {"version": "stable", "stage": "main"}
    assert not run.supplied("version") and not run.supplied("stage")


def test_a_baseline_var_mixing_author_text_and_a_check_value_is_check_supplied() -> None:
    values = PlaceholderValues(gate={}, check={"baseline": "1.4.1"})
    run = baseline_values(values, Baseline(vars={"version": "v${baseline}-$${x}"}))
    assert run["version"] == "v1.4.1-${x}"
    assert run.supplied("version")


def test_a_baseline_var_naming_an_unknown_placeholder_is_unfilled() -> None:
    with pytest.raises(UnfilledPlaceholder):
        baseline_values(PlaceholderValues(), Baseline(vars={"version": "${baseline}"}))
