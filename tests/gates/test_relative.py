"""Relative conditions against a baseline, and dry-run criteria (docs/decisions.md,
"Baselines and relative conditions" and "Dry-run criteria"): one row per rule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from gates.conditions import Condition, Relative
from gates.engine import CriterionOutcome, CriterionResult, Decision, Sample, decide, judge
from gates.model import Criterion, Gate
from probes.base import Measurement, ProbeConfig
from tests.conftest import T0

PASS, FAIL, BREACH, INCONCLUSIVE = (
    CriterionOutcome.PASS,
    CriterionOutcome.FAIL,
    CriterionOutcome.BREACH,
    CriterionOutcome.INCONCLUSIVE,
)
BASELINE = {"vars": {"version": "${baseline}"}}
STABLE = {"version": "1.4.1"}


def ok(value: float) -> Measurement:
    return Measurement.ok(value, T0)


def criterion(go: Any, rollback: Any = None, **fields: Any) -> Criterion:
    return Criterion(
        name="errors", probe="p", go=go, rollback=rollback, baseline=BASELINE, **fields
    )


def judged(
    go: Any, value: float, baseline: Measurement | float | None, rollback: Any = None
) -> CriterionResult:
    base = ok(baseline) if isinstance(baseline, int | float) else baseline
    return judge(criterion(go, rollback), ok(value), baseline=base, baseline_vars=STABLE)


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "relative", "threshold", "offset"),
    [
        ("<= +10%", Relative.PERCENT, 0.1, "+10%"),
        (">= -5%", Relative.PERCENT, -0.05, "-5%"),
        ("<= +200ms", Relative.DIFFERENCE, 0.2, "+200ms"),
        ("< -1s", Relative.DIFFERENCE, -1.0, "-1s"),
        ("== +0", Relative.DIFFERENCE, 0.0, "+0"),
        ("> + 3", Relative.DIFFERENCE, 3.0, "+3"),
        ("<= 10%", None, 0.1, "10%"),
    ],
)
def test_a_signed_number_is_relative(
    text: str, relative: Relative | None, threshold: float, offset: str
) -> None:
    condition = Condition.parse(text)
    assert (condition.relative, condition.offset) == (relative, offset)
    assert condition.threshold == pytest.approx(threshold)


def test_a_relative_bound_is_exact_not_float_noise() -> None:
    # 0.01 * 1.1 is 0.011000000000000001 in floats: 0.011 itself must meet '<= +10%'.
    assert Condition.parse("<= +10%").bound(0.01) == 0.011
    assert Condition.parse("<= +200ms").bound(0.3) == 0.5


def test_a_relative_condition_cannot_be_held_without_a_baseline() -> None:
    with pytest.raises(ValueError, match="relative"):
        Condition.parse("<= +10%").holds(0.1)


# -- judge: one row per rule -----------------------------------------------------------------

RELATIVE_TABLE = [
    # (rule, go, rollback, value, baseline, outcome, reason)
    (
        "+N% met",
        "<= +10%",
        None,
        0.0105,
        0.01,
        PASS,
        "0.0105 <= 0.011 (baseline 0.01 +10%; go: <= +10%)",
    ),
    (
        "+N% missed",
        "<= +10%",
        None,
        0.0123,
        0.01,
        FAIL,
        "0.0123 > 0.011 (baseline 0.01 +10%; go: <= +10%)",
    ),
    ("+N% at the bound", "<= +10%", None, 0.011, 0.01, PASS, None),
    ("< +N% at the bound", "< +10%", None, 0.011, 0.01, FAIL, None),
    ("-N%: throughput kept", ">= -10%", None, 95.0, 100.0, PASS, None),
    (
        "-N%: throughput lost",
        ">= -10%",
        None,
        85.0,
        100.0,
        FAIL,
        "85 < 90 (baseline 100 -10%; go: >= -10%)",
    ),
    ("> -N% above", "> -10%", None, 90.5, 100.0, PASS, None),
    ("> -N% at the bound", "> -10%", None, 90.0, 100.0, FAIL, None),
    ("< +N[unit] below", "< +200ms", None, 0.49, 0.3, PASS, None),
    (
        "<= +N[unit] above",
        "<= +200ms",
        None,
        0.51,
        0.3,
        FAIL,
        "0.51 > 0.5 (baseline 0.3 +200ms; go: <= +200ms)",
    ),
    ("-N[unit]: faster by enough", "<= -100ms", None, 0.2, 0.3, PASS, None),
    ("-N[unit]: not faster", "<= -100ms", None, 0.25, 0.3, FAIL, None),
    ("== +0: the same", "== +0", None, 0.3, 0.3, PASS, None),
    ("!= +0: the same", "!= +0", None, 0.3, 0.3, FAIL, None),
    ("a negative baseline: +N% is of its size", "<= +10%", None, -0.95, -1.0, PASS, None),
    (
        "breach on +N%",
        "<= +10%",
        "> +50%",
        0.0301,
        0.01,
        BREACH,
        "0.0301 > 0.015 (baseline 0.01 +50%; rollback: > +50%)",
    ),
    ("above go, below rollback: fail", "<= +10%", "> +50%", 0.012, 0.01, FAIL, None),
    # A baseline of 0: a percentage of 0 is 0.
    ("zero baseline, zero canary, +N%", "<= +10%", "> +50%", 0.0, 0.0, PASS, None),
    (
        "zero baseline, non-zero canary, +N%",
        "<= +10%",
        None,
        0.002,
        0.0,
        INCONCLUSIVE,
        "0.002 against a baseline of 0: a percentage of 0 is 0, so '<= +10%' cannot judge it"
        " (go: <= +10%)",
    ),
    ("zero baseline, rollback +N% unknown", "< 1%", "> +50%", 0.002, 0.0, INCONCLUSIVE, None),
    ("zero baseline, difference works", "<= +200ms", None, 0.1, 0.0, PASS, None),
    (
        "zero baseline: a broken canary still breaches an absolute floor beside +N%",
        ["<= +10%", "< 2%"],
        ["> +50%", "> 1%"],
        0.05,
        0.0,
        BREACH,
        "5 % > 1 % (rollback: > +50% and > 1%) ['> +50%' cannot be judged; the absolute"
        " conditions decide]",
    ),
    (
        "zero baseline: below the floor, go stays unjudged",
        ["<= +10%", "< 2%"],
        ["> +50%", "> 1%"],
        0.005,
        0.0,
        INCONCLUSIVE,
        None,
    ),
    # Mixed lists are ANDed: any unmet condition settles it, else any unknown one.
    ("mixed: both hold", ["<= +10%", "< 1%"], None, 0.005, 0.005, PASS, None),
    (
        "mixed: absolute unmet",
        ["<= +10%", "< 1%"],
        None,
        0.02,
        0.02,
        FAIL,
        "2 % >= 1 % (go: <= +10% and < 1%)",
    ),
    (
        "mixed: relative unmet",
        ["< 1%", "<= +10%"],
        None,
        0.005,
        0.001,
        FAIL,
        "0.5 % > 0.11 % (baseline 0.1 % +10%; go: < 1% and <= +10%)",
    ),
    ("mixed: zero baseline but absolute unmet", ["<= +10%", "< 1%"], None, 0.02, 0.0, FAIL, None),
    ("mixed rollback: both needed", "< 1%", ["> +50%", "> 5%"], 0.06, 0.01, BREACH, None),
    ("mixed rollback: one short", "< 1%", ["> +50%", "> 5%"], 0.04, 0.01, FAIL, None),
]


@pytest.mark.parametrize(
    ("go", "rollback", "value", "baseline", "expected", "reason"),
    [row[1:] for row in RELATIVE_TABLE],
    ids=[row[0] for row in RELATIVE_TABLE],
)
def test_relative_rule(
    go: Any, rollback: Any, value: float, baseline: float, expected: Any, reason: str | None
) -> None:
    result = judged(go, value, baseline, rollback)
    assert result.outcome is expected, result.reason
    if reason is not None:
        assert result.reason == reason
    assert result.baseline is not None
    assert result.baseline.as_dict() == {"value": baseline, "vars": STABLE}


UNUSABLE_BASELINES = [
    (
        "no data",
        Measurement.no_data("prometheus: query returned no series", T0),
        "baseline (version=1.4.1): no data: prometheus: query returned no series",
    ),
    (
        "probe error",
        Measurement.error("prometheus: connection refused after 3 tries", T0),
        "baseline (version=1.4.1): prometheus: connection refused after 3 tries",
    ),
    ("timeout", Measurement.timeout("no answer within 5s", T0), "no answer within 5s"),
    ("not measured", None, "baseline (version=1.4.1): not measured"),
]


@pytest.mark.parametrize(
    ("baseline", "reason"),
    [row[1:] for row in UNUSABLE_BASELINES],
    ids=[row[0] for row in UNUSABLE_BASELINES],
)
def test_a_baseline_without_a_value_is_inconclusive_never_pass(
    baseline: Measurement | None, reason: str
) -> None:
    for go, rollback in (("<= +10%", None), ("<= +10%", "> +50%"), (["< 5%", ">= -90%"], None)):
        result = judged(go, 0.0, baseline, rollback)
        assert result.outcome is INCONCLUSIVE
        assert reason in result.reason
        assert result.value == 0.0 and result.baseline is not None
        assert result.baseline.value is None


@pytest.mark.parametrize(
    ("baseline", "reason"),
    [row[1:] for row in UNUSABLE_BASELINES],
    ids=[row[0] for row in UNUSABLE_BASELINES],
)
def test_a_baseline_without_a_value_spares_no_canary_its_absolute_rollback(
    baseline: Measurement | None, reason: str
) -> None:
    for rollback in ("> 5%", ["> +50%", "> 5%"]):
        broken = judged("<= +10%", 0.5, baseline, rollback)
        assert broken.outcome is BREACH, broken.reason
        assert reason in broken.reason
        healthy = judged("<= +10%", 0.01, baseline, rollback)
        assert healthy.outcome is INCONCLUSIVE, healthy.reason


def test_a_canary_with_no_data_follows_its_no_data_policy_not_the_baseline() -> None:
    empty = Measurement.no_data("query returned no series", T0)
    passing = Criterion(name="c", probe="p", go="<= +10%", baseline=BASELINE, no_data="pass")
    assert judge(passing, empty, baseline=ok(0.1)).outcome is PASS
    assert judge(criterion("<= +10%"), empty, baseline=ok(0.1)).outcome is INCONCLUSIVE


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_baseline_or_bound_never_passes(bad: float) -> None:
    # Measurement.ok refuses these; a probe that builds its own must not slip one by.
    baseline = Measurement(Measurement.ok(1.0, T0).status, T0, bad)
    result = judged(">= -10%", 1.0, baseline)
    assert result.outcome is INCONCLUSIVE
    assert "not a finite number" in result.reason
    huge = judged("<= +100%", 1.0, 1.7e308)  # 2 × 1.7e308 is beyond a float
    assert huge.outcome is INCONCLUSIVE
    assert "is not a finite number" in huge.reason


def test_absolute_conditions_need_no_baseline_value() -> None:
    result = judged("< 1%", 0.005, Measurement.error("down", T0))
    assert result.outcome is PASS


def test_a_relative_condition_on_a_criterion_without_baseline_is_inconclusive() -> None:
    # The loader refuses it; the engine still fails closed if one gets this far.
    bare = Criterion(name="c", probe="p", go="<= +10%")
    result = judge(bare, ok(0.0), baseline=ok(1.0))
    assert result.outcome is INCONCLUSIVE
    assert "needs baseline:" in result.reason


# -- dry run ---------------------------------------------------------------------------------


def make_gate(*criteria: Mapping[str, Any], **fields: Any) -> Gate:
    return Gate(
        name="portal",
        probes={"p": ProbeConfig(type="fake")},
        criteria=[Criterion(probe="p", **c) for c in criteria],
        **fields,
    )


DECIDING = {"name": "availability", "go": "> 99%", "rollback": "< 95%"}
TRIAL = {"name": "trial", "go": "< 1%", "rollback": "> 5%", "dry_run": True}


def history(gate: Gate, *rows: tuple[float, float]) -> list[Sample]:
    """Samples 30 s apart; each row is (availability, trial value)."""
    samples = []
    for index, row in enumerate(rows):
        results = tuple(judge(c, ok(v)) for c, v in zip(gate.criteria, row, strict=True))
        samples.append(Sample(T0 + timedelta(seconds=30 * index), results))
    return samples


GOOD, DOWN = 0.999, 0.5
HEALTHY, BROKEN = 0.001, 0.5

DRY_RUN_TABLE = [
    # (rule, rows (availability, trial), decision, reasons, dry-run reasons)
    (
        "a failing dry-run criterion does not stop go",
        [(GOOD, 0.02)] * 3,
        Decision.GO,
        (),
        ("trial: 2 % >= 1 % (go: < 1%) (dry run)",),
    ),
    (
        "a breaching dry-run criterion never rolls back",
        [(GOOD, BROKEN)] * 3,
        Decision.GO,
        (),
        ("trial: 50 % > 5 % (rollback: > 5%) [breach 2/2] (dry run: would roll back)",),
    ),
    (
        "its breach run so far is shown",
        [(GOOD, HEALTHY), (GOOD, HEALTHY), (GOOD, BROKEN)],
        Decision.GO,
        (),
        ("trial: 50 % > 5 % (rollback: > 5%) [breach 1/2] (dry run)",),
    ),
    (
        "an inconclusive-free pass is not listed",
        [(GOOD, HEALTHY)] * 3,
        Decision.GO,
        (),
        (),
    ),
    (
        "a passing dry-run criterion does not make go: the deciding one is steady 1/3",
        [(DOWN, HEALTHY), (0.97, HEALTHY), (GOOD, HEALTHY)],
        Decision.NO_GO,
        ("steady 1/3",),
        (),
    ),
    (
        "no_go reasons list only deciding criteria",
        [(0.97, 0.02)],
        Decision.NO_GO,
        ("availability: 97 % <= 99 % (go: > 99%)", "steady 0/3"),
        ("trial: 2 % >= 1 % (go: < 1%) (dry run)",),
    ),
    (
        "rollback comes from deciding criteria only, dry-run reasons apart",
        [(DOWN, BROKEN), (DOWN, BROKEN)],
        Decision.ROLLBACK,
        ("availability: 50 % < 95 % (rollback: < 95%) [breach 2/2]",),
        ("trial: 50 % > 5 % (rollback: > 5%) [breach 2/2] (dry run: would roll back)",),
    ),
]


@pytest.mark.parametrize(
    ("rows", "decision", "reasons", "dry_run_reasons"),
    [row[1:] for row in DRY_RUN_TABLE],
    ids=[row[0] for row in DRY_RUN_TABLE],
)
def test_dry_run_rule(
    rows: list[tuple[float, float]],
    decision: Decision,
    reasons: tuple[str, ...],
    dry_run_reasons: tuple[str, ...],
) -> None:
    gate = make_gate(DECIDING, TRIAL)
    verdict = decide(gate, history(gate, *rows))
    assert (verdict.decision, verdict.reasons, verdict.dry_run_reasons) == (
        decision,
        reasons,
        dry_run_reasons,
    )
    trial = verdict.as_dict()["criteria"][1]
    assert trial["dry_run"] is True and trial["outcome"] == verdict.criteria[1].outcome.value
    assert verdict.as_dict()["dry_run_reasons"] == list(dry_run_reasons)


@pytest.mark.parametrize(
    "trial", [HEALTHY, 0.02, BROKEN], ids=["dry run passing", "failing", "breaching"]
)
def test_a_dry_run_criterion_never_changes_a_decision(trial: float) -> None:
    """The same history decides the same with the dry-run criterion's value anything, in
    every decision and with the steady and breach runs it counts."""
    gate = make_gate(DECIDING, TRIAL, steady_for=2, rollback_after=2)
    without = make_gate(DECIDING, steady_for=2, rollback_after=2)
    for availability in (
        [GOOD, GOOD],
        [GOOD],
        [DOWN, DOWN],
        [DOWN, GOOD],
        [DOWN, 0.97, DOWN],
        [GOOD, 0.97, GOOD, GOOD],
    ):
        verdict = decide(gate, history(gate, *((a, trial) for a in availability)))
        reference = decide(without, history(without, *((a,) for a in availability)))
        assert (verdict.decision, verdict.reasons, verdict.steady) == (
            reference.decision,
            reference.reasons,
            reference.steady,
        )


def test_a_gate_of_dry_run_criteria_only_is_never_go() -> None:
    gate = make_gate(TRIAL, steady_for=1)
    verdict = decide(gate, history_of_one(gate, HEALTHY))
    assert verdict.decision is Decision.NO_GO
    assert verdict.reasons == ("no criterion decides: every criterion is dry_run",)


def history_of_one(gate: Gate, value: float) -> list[Sample]:
    return [Sample(T0, tuple(judge(c, ok(value)) for c in gate.criteria))]
