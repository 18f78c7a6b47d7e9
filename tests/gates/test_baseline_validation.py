"""Baselines, relative conditions and dry-run criteria in gate files: every mistake is a
located error with a hint; a valid one loads."""

from __future__ import annotations

import textwrap

import pytest

from gates.errors import GateProblem, format_loc
from gates.loader import check_gate_text
from gates.placeholders import gate_placeholders

HEAD = """\
vars: {version: ".+", baseline: stable}
probes:
  c: {type: constant, value: 1}
criteria:
  - name: errors
    probe: c
    query: 'rate(x{version="${version}"}[5m])'
"""


def problems_of(criterion: str) -> list[GateProblem]:
    text = HEAD + textwrap.indent(textwrap.dedent(criterion), "    ")
    gate, problems = check_gate_text(text, name="portal", source="portal.yaml")
    assert gate is None and problems, "expected the definition to be refused"
    return problems


CASES = [
    # (id, criterion lines, (line, col), loc, message contains, hint contains)
    (
        "relative go without baseline",
        'go: "<= +10%"\n',
        (8, 9),
        "criteria[0].go",
        "'<= +10%' is relative (a signed number), and the criterion has no baseline:",
        "drop the sign for an absolute bound ('<= 10%')",
    ),
    (
        "relative rollback in a list without baseline",
        'go: "< 1%"\nrollback: ["> 5%", "> +200ms"]\n',
        (9, 24),
        "criteria[0].rollback[1]",
        "'> +200ms' is relative",
        "('> 200ms')",
    ),
    (
        "a negative number is relative too",
        'go: "> -5"\n',
        (8, 9),
        "criteria[0].go",
        "'> -5' is relative",
        "drop the sign",
    ),
    (
        "baseline var naming a placeholder with no value",
        'baseline: {vars: {version: "${previous}"}}\ngo: "<= +10%"\n',
        (8, 32),
        "criteria[0].baseline.vars.version",
        "placeholder ${previous} has no value",
        "declare it under vars:",
    ),
    (
        "baseline var with a typo of a declared placeholder",
        'baseline: {vars: {version: "${baselin}"}}\ngo: "<= +10%"\n',
        (8, 32),
        "criteria[0].baseline.vars.version",
        "placeholder ${baselin} has no value",
        "did you mean ${baseline}?",
    ),
    (
        "baseline var setting a reserved name",
        'baseline: {vars: {version: "${baseline}", window: 1h}}\ngo: "<= +10%"\n',
        (8, 47),
        "criteria[0].baseline.vars.window",
        "${window} is reserved: gonogo fills it itself",
        None,
    ),
    (
        "baseline var setting a baseline_ name",
        'baseline: {vars: {version: "${baseline}", baseline_x: a}}\ngo: "<= +10%"\n',
        (8, 47),
        "criteria[0].baseline.vars.baseline_x",
        "${baseline_x} is reserved",
        None,
    ),
    (
        "baseline var the query does not use",
        'baseline: {vars: {verison: "${baseline}"}}\ngo: "<= +10%"\n',
        (8, 23),
        "criteria[0].baseline.vars.verison",
        "the query does not use ${verison}, so the baseline would ask the same question",
        "did you mean 'version'?",
    ),
    (
        "baseline without vars",
        'baseline: {vars: {}}\ngo: "<= +10%"\n',
        (8, 22),
        "criteria[0].baseline.vars",
        "at least 1 item",
        None,
    ),
    (
        "dry_run not a boolean",
        'go: "< 1%"\ndry_run: "yes"\n',
        (9, 14),
        "criteria[0].dry_run",
        "valid boolean",
        None,
    ),
]


@pytest.mark.parametrize(
    ("criterion", "position", "where", "message", "hint"),
    [row[1:] for row in CASES],
    ids=[row[0] for row in CASES],
)
def test_a_mistake_is_located_and_explained(
    criterion: str, position: tuple[int, int], where: str, message: str, hint: str | None
) -> None:
    problems = problems_of(criterion)
    assert len(problems) == 1, [str(p) for p in problems]
    [problem] = problems
    assert (problem.line, problem.col) == position, str(problem)
    assert format_loc(problem.loc) == where
    assert message in problem.message, problem.message
    if hint is not None:
        assert problem.hint is not None and hint in problem.hint, problem.hint


def test_a_gate_of_dry_run_criteria_only_is_refused() -> None:
    [problem] = problems_of('go: "< 1%"\ndry_run: true\n')
    assert format_loc(problem.loc) == "criteria"
    assert "every criterion is dry_run" in problem.message


def test_a_baseline_criterion_loads_and_a_check_may_set_its_placeholders() -> None:
    text = (
        HEAD
        + textwrap.indent(
            'baseline: {vars: {version: "${baseline}"}}\n'
            'go: ["<= +10%", "< 5%"]\nrollback: "> +50%"\ndry_run: true\n',
            "    ",
        )
        + "  - {name: up, probe: c, go: '> 0'}\n"
    )
    gate, problems = check_gate_text(text, name="portal", source="portal.yaml")
    assert problems == [] and gate is not None
    errors = gate.criteria[0]
    assert errors.dry_run and errors.baseline is not None
    assert [c.relative is not None for c in errors.go] == [True, False]
    assert {"version", "baseline"} <= gate_placeholders(gate)
