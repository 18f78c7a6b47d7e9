"""Criterion templates in the loader (docs/templates.md): resolution, overrides, the
placeholder rule for arguments, and every problem located in the file that holds it,
naming the other file of the use."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.gates.catalog import definition_version
from gates.loader import check_gate_definition, load_gate_dir
from gates.placeholders import PlaceholderValues, fill_text
from gates.templates import Template, check_template_text, references
from gates.yaml_source import MAX_DEFINITION_CHARS
from probes.quoting import quote_promql

TEMPLATE = """\
description: Share of a service's requests that failed
params:
  - name: service
  - {name: codes, default: "5.."}
  - {name: max, default: 1%}
criterion:
  probe: prom
  query: >-
    sum(rate(http_requests_total{service="{{ args.service }}", code=~"{{ args.codes }}"}[5m]))
    / sum(rate(http_requests_total{service="{{args.service}}", version="${version}"}[5m]))
  go: "< {{ args.max }}"
  rollback: "> 5%"
"""
HEAD = """\
probes:
  prom: {type: prometheus, url: "http://prometheus:9090"}
criteria:
"""


def templates(text: str = TEMPLATE, name: str = "error-rate") -> dict[str, Template]:
    template, problems = check_template_text(text, name=name, source=f"templates/{name}.yaml")
    assert problems == [] and template is not None
    return {name: template}


def check(criteria: str, found: dict[str, Template] | None = None) -> list[str]:
    result = check_gate_definition(
        HEAD + criteria, name="portal", source="portal.yaml", templates=found or templates()
    )
    return [str(p) for p in result.problems]


def test_a_criterion_from_a_template_is_the_template_with_its_args_and_overrides() -> None:
    result = check_gate_definition(
        HEAD
        + "  - template: error-rate\n"
        + "    args: {service: portal}\n"
        + "  - template: error-rate\n"
        + "    name: api-errors\n"
        + "    args: {service: api, max: 2%}\n"
        + "    rollback: '> 10%'\n"
        + "    window: 10m\n"
        + "    description: the API's own\n",
        name="portal",
        source="portal.yaml",
        templates=templates(),
    )
    assert result.problems == []
    assert result.gate is not None and result.templates == {"error-rate"}
    first, second = result.gate.criteria
    assert first.name == "error-rate"  # the template's name when the gate gives none
    assert first.description == "Share of a service's requests that failed"
    assert first.query is not None and 'service="portal", code=~"5.."' in first.query
    assert [c.text for c in first.go] == ["< 1%"]
    assert second.name == "api-errors" and second.description == "the API's own"
    assert [c.text for c in second.go] == ["< 2%"]
    assert second.rollback is not None and [c.text for c in second.rollback] == ["> 10%"]
    assert second.window is not None and second.window.total_seconds() == 600


def test_the_resolved_text_reads_back_as_the_same_gate_without_templates() -> None:
    result = check_gate_definition(
        HEAD + "  - {template: error-rate, args: {service: portal}}\n",
        name="portal",
        source="portal.yaml",
        templates=templates(),
    )
    assert result.gate is not None
    assert "{{" not in result.text and "template:" not in result.text
    again = check_gate_definition(result.text, name="portal", source="stored")
    assert again.problems == [] and again.gate == result.gate
    assert again.templates == frozenset()


def test_a_template_change_gives_the_gate_a_new_version_and_a_comment_does_not() -> None:
    def version(text: str) -> str:
        result = check_gate_definition(
            HEAD + "  - {template: error-rate, args: {service: portal}}\n",
            name="portal",
            source="portal.yaml",
            templates=templates(text),
        )
        assert result.gate is not None
        return definition_version(result.gate)

    assert version(TEMPLATE) == version("# a comment\n" + TEMPLATE)
    assert version(TEMPLATE) != version(TEMPLATE.replace('"> 5%"', '"> 6%"'))


def test_a_gate_without_templates_keeps_its_own_text() -> None:
    text = HEAD + "  - {name: up, probe: prom, query: up, go: '== 1'}\n"
    result = check_gate_definition(text, name="portal", source="portal.yaml")
    assert result.problems == [] and result.text == text and result.templates == frozenset()


def test_a_placeholder_in_an_argument_stays_a_placeholder_quoted_for_the_check() -> None:
    """An argument is the author's text, like a gate var; a ``${...}`` in it is filled
    later, and a check's value there is quoted like anywhere else."""
    result = check_gate_definition(
        HEAD + "  - {template: error-rate, args: {service: web, codes: '${stage}'}}\n",
        name="portal",
        source="portal.yaml",
        templates=templates(),
    )
    assert result.problems == [] and result.gate is not None
    query = result.gate.criteria[0].query
    assert query is not None and 'code=~"${stage}"' in query
    filled = fill_text(
        query,
        PlaceholderValues(check={"stage": "5..", "version": "1.0"}),
        field="query",
        quote=quote_promql,
    )
    # The check's value selects exactly its text: it does not widen the regex.
    assert 'code=~"5\\\\.\\\\."' in filled
    assert references("{{ args.a }} {{args.b-c}} ${x}") == ["a", "b-c"]


def test_an_unknown_template_is_located_with_a_did_you_mean() -> None:
    assert check("  - {template: eror-rate, args: {service: x}}\n") == [
        "portal.yaml:4:16: criteria[0].template: unknown template 'eror-rate'"
        " (hint: did you mean 'error-rate'?)"
    ]
    [problem] = check("  - {template: latency}\n")
    assert "put it in templates/latency.yaml next to the gate files" in problem


def test_missing_and_unknown_arguments_name_both_files() -> None:
    problems = check("  - template: error-rate\n    args: {servise: x}\n")
    assert problems == [
        "portal.yaml:5:11: criteria[0].args: missing argument 'service' of template"
        " 'error-rate' (declared at templates/error-rate.yaml:3:5) (hint: add args:"
        " {service: ...}, or give the param a default in the template)",
        "portal.yaml:5:12: criteria[0].args.servise: unknown argument 'servise' of template"
        " 'error-rate' (hint: did you mean 'service'?)",
    ]
    [missing] = check("  - template: error-rate\n")
    assert missing.startswith("portal.yaml:4:15: criteria[0].template: missing argument")


def test_only_some_keys_may_be_set_beside_a_template() -> None:
    [problem] = check("  - {template: error-rate, args: {service: x}, query: up}\n")
    assert problem.startswith("portal.yaml:4:48: criteria[0].query: 'query' cannot be set")
    assert "override only name, go, rollback, window, dry_run, description" in problem


def test_a_problem_in_the_template_is_located_there_and_names_the_use() -> None:
    problems = check("  - {template: error-rate, args: {service: x, max: lots}}\n")
    assert problems == [
        "templates/error-rate.yaml:11:7: criteria[0].go: bad condition '< lots': expected"
        " '<op> <number>[unit]' with op one of > >= < <= == != and unit one of % ms s m,"
        " e.g. '> 99.9%' or '< 2s' (in template 'error-rate' at line 11, used by criteria[0] at"
        " portal.yaml:4:5) (hint: write it in quotes, e.g. go: '> 99.9%', or a list of"
        " them to AND)"
    ]
    wrong_probe = templates(TEMPLATE.replace("probe: prom", "probe: prometheus"))
    [problem] = check("  - {template: error-rate, args: {service: x}}\n", wrong_probe)
    assert problem.startswith("templates/error-rate.yaml:7:10: criteria[0].probe: unknown probe")
    assert "used by criteria[0] at portal.yaml:4:5" in problem


def test_an_override_problem_is_located_in_the_gate() -> None:
    [problem] = check("  - {template: error-rate, args: {service: x}, go: '<< 1'}\n")
    assert problem.startswith("portal.yaml:4:52: criteria[0].go: bad condition '<< 1'")


def test_a_placeholder_typo_in_an_argument_is_reported() -> None:
    [problem] = check("  - {template: error-rate, args: {service: '${verison}'}}\n")
    assert problem.startswith("templates/error-rate.yaml:8:10: criteria[0].query: placeholder")
    assert "${verison}" in problem and "portal.yaml:4:5" in problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("criterion: [1]\n", "t.yaml:1:12: criterion: criterion must be a mapping"),
        ("params: [a]\n", "t.yaml:1:1: criterion: is missing"),
        (
            "criterion: {probe: p, go: '> 1', template: other}\n",
            "t.yaml:1:34: criterion.template: a template cannot use another template",
        ),
        (
            "criterion: {probe: p, go: '> 1', args: {}}\n",
            "t.yaml:1:34: criterion.args: a template cannot use another template",
        ),
        ("criterion: {probe: p, qury: x}\n", "t.yaml:1:23: criterion.qury: unknown key 'qury'"),
        ("criterion: {go: '> 1'}\n", "t.yaml:1:12: criterion: probe is required in a template"),
        (
            "criterion: {probe: p, go: '> {{ args.x }}'}\n",
            "t.yaml:1:27: criterion.go: {{ args.x }} refers to no declared param",
        ),
        (
            "params: [x]\ncriterion: {probe: p, go: '> {{args x}}'}\n",
            "t.yaml:2:27: criterion.go: malformed parameter reference",
        ),
        ("params: [x, x]\ncriterion: {probe: p}\n", "t.yaml:1:13: params[1].name: duplicate"),
        ("params: [{name: x, default: [1]}]\ncriterion: {probe: p}\n", "params[0].default"),
        ("criterion: {probe: p\n", "t.yaml:2:1: YAML syntax error"),
        ("cirterion: {}\n", "t.yaml:1:1: cirterion: unknown key 'cirterion' (hint: did you mean"),
        ("x: " + "a" * MAX_DEFINITION_CHARS, "t.yaml: the definition is larger than"),
    ],
)
def test_a_template_that_is_not_a_valid_criterion_is_located(text: str, expected: str) -> None:
    template, problems = check_template_text(text, name="t", source="t.yaml")
    assert template is None
    assert any(str(p).startswith(expected) or expected in str(p) for p in problems), problems


def test_a_gate_too_large_once_its_templates_are_filled_in_is_refused() -> None:
    big = templates(TEMPLATE.replace('"{{ args.service }}"', '"{{ args.service }}"' * 40))
    service = "s" * 3000
    criteria = "".join(
        f"  - {{template: error-rate, name: c{i}, args: {{service: {service}}}}}\n"
        for i in range(10)
    )
    problems = check(criteria, big)
    assert problems and "larger than a definition may be" in problems[0]
    assert problems[0].startswith("portal.yaml:")


def test_a_gate_directory_finds_its_templates_folder(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "error-rate.yaml").write_text(TEMPLATE)
    (tmp_path / "portal.yaml").write_text(HEAD + "  - {template: error-rate, args: {service: x}}\n")
    gates, problems = load_gate_dir(tmp_path)
    assert problems == [] and list(gates) == ["portal"]
    (tmp_path / "templates" / "error-rate.yaml").write_text("criterion: {go: 1}\n")
    gates, problems = load_gate_dir(tmp_path)
    assert gates == {}
    files = {Path(p.file).name for p in problems}
    assert files == {"error-rate.yaml", "portal.yaml"}


def test_every_criterion_key_passes_through_with_its_args_filled_in() -> None:
    """Keys the template machinery knows nothing about (here ``baseline``) are copied as
    they are, with references in their strings filled in."""
    text = TEMPLATE.replace(
        '  rollback: "> 5%"\n',
        '  rollback: "> 5%"\n  baseline: {vars: {version: "{{ args.stable }}"}}\n',
    ).replace("params:\n", "params:\n  - {name: stable, default: '${version}'}\n")
    result = check_gate_definition(
        HEAD + "  - {template: error-rate, args: {service: x, stable: '1.0'}}\n",
        name="portal",
        source="portal.yaml",
        templates=templates(text),
    )
    assert result.problems == [] and result.gate is not None
    baseline = result.gate.criteria[0].baseline
    assert baseline is not None and baseline.vars == {"version": "1.0"}


@pytest.mark.parametrize(
    ("use", "expected"),
    [
        ("{template: 3}", "criteria[0].template: template: names a template"),
        ("{template: error-rate, args: [service]}", "criteria[0].args: args must map"),
        (
            "{template: error-rate, args: {service: [a, b]}}",
            "criteria[0].args.service: an argument is a single value",
        ),
    ],
)
def test_a_malformed_use_is_located_in_the_gate(use: str, expected: str) -> None:
    [problem] = check(f"  - {use}\n")
    assert problem.startswith("portal.yaml:4:") and expected in problem
