"""Gate files: loading, and every problem reported with file:line:col, location and hint."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest
import typer
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import gates.criteria_checks
import gates.loader
from app.cli import gatefiles
from gates.errors import GateFileError, GateProblem, format_loc, loc
from gates.loader import (
    check_gate_text,
    gate_file_problems,
    load_gate_dir,
    load_gate_file,
    load_gate_text,
)
from gates.model import GATE_NAME, NAME_PATTERN, Gate
from gates.secret_rules import EnvPolicy
from probes.base import ProbeConfig, ProbeQuery, QuoteContext
from probes.registry import probe_type

GATEFILES = Path(__file__).resolve().parents[1] / "gatefiles"

VALID = textwrap.dedent(
    """\
    description: Patient portal
    interval: 10s
    vars: {version: ".+", environment: production}
    probes:
      steady: {type: constant, value: 0.9995, timeout: 2}
    criteria:
      - name: availability
        probe: steady
        query: 'up{version=~"${version}", env="${environment}", stage="${stage}"}'
        go: "> 99.9%"
        rollback: "< 95%"
        rollback_after: 1
      - name: errors
        probe: steady
        go: ["< 1%", ">= 0"]
        min_volume: {query: 'sum(requests{version=~"${version}"})', at_least: 100}
    signoffs:
      - {id: uat, description: UAT signed off}
    notify:
      - {url: "https://ops.example/gonogo", secret_env: GONOGO_NOTIFY_WEBHOOK_SECRET}
    """
)


def problems_of(text: str, *, name: str = "portal") -> list[GateProblem]:
    gate, problems = check_gate_text(textwrap.dedent(text), name=name, source="portal.yaml")
    assert gate is None, "expected the definition to be refused"
    assert problems, "a refused definition must say why"
    return problems


def only(text: str, **kw: Any) -> GateProblem:
    problems = problems_of(text, **kw)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# -- valid definitions ------------------------------------------------------------------------


def test_a_valid_gate_loads_with_validated_probe_configs() -> None:
    gate = load_gate_text(VALID, name="portal", source="portal.yaml")
    assert gate.name == "portal"
    assert gate.interval.total_seconds() == 10
    assert gate.steady_for == 3  # the default
    config = gate.probes["steady"]
    assert type(config) is probe_type("constant").config_model
    assert isinstance(config, ProbeConfig)
    assert (config.type, config.timeout) == ("constant", 2)
    assert config.model_dump()["value"] == 0.9995
    assert [c.name for c in gate.criteria] == ["availability", "errors"]
    assert [c.threshold for c in gate.criteria[1].go] == [0.01, 0]
    assert gate.rollback_after_for(gate.criteria[0]) == 1
    assert gate.signoffs[0].id == "uat"


def test_a_json_body_is_accepted_like_yaml() -> None:
    body = (
        '{\n\t"probes": {"c": {"type": "constant", "value": 1}},\n'
        '\t"criteria": [{"name": "up", "probe": "c", "go": "== 1"}]\n}'
    )
    gate = load_gate_text(body, name="api-gate", source="gate api-gate")
    assert gate.criteria[0].probe == "c"


def test_json_problems_have_positions_too() -> None:
    problem = only('{"probes": {"c": {"type": "constant", "value": 1}},\n "criteria": 5}')
    assert (problem.line, problem.col, problem.loc) == (2, 14, ("criteria",))


def test_yaml_anchors_and_merge_keys_share_settings() -> None:
    text = textwrap.dedent(
        """\
        probes:
          a: &base {type: constant, value: 1, timeout: 3}
          b: {<<: *base, value: 2}
        criteria:
          - {name: a, probe: a, go: "> 0"}
          - {name: b, probe: b, go: "> 0"}
        """
    )
    gate = load_gate_text(text, name="merged", source="merged.yaml")
    assert gate.probes["b"].timeout == 3
    assert gate.probes["b"].model_dump()["value"] == 2


def test_a_placeholder_declared_under_vars_is_accepted() -> None:
    text = VALID.replace("environment: production}", "environment: production, ring: all}")
    text = text.replace('stage="${stage}"', 'ring="${ring}"')
    gate = load_gate_text(text, name="portal", source="portal.yaml")
    assert gate.vars["ring"] == "all"


def test_load_gate_file_names_the_gate_after_the_file() -> None:
    gate = load_gate_file(GATEFILES / "valid.yaml")
    assert gate.name == "valid"
    assert gate_file_problems(GATEFILES / "valid.yaml") == []


# -- problems: one row per kind -------------------------------------------------------------

CASES: list[tuple[str, str, tuple[int | None, int | None], str, str, str | None]] = [
    # (id, text, (line, col), loc, message contains, hint contains)
    ("empty", "", (None, None), "", "empty", "probes: and criteria:"),
    ("only a comment", "# nothing\n", (None, None), "", "empty", None),
    (
        "yaml syntax error",
        "probes:\n  p: {type: constant, value: 1\ncriteria: []\n",
        (3, 9),
        "",
        "YAML syntax error: while parsing a flow mapping (opened at line 2)",
        None,
    ),
    (
        "tab indentation",
        "probes:\n\tp: 1\n",
        (2, 1),
        "",
        "YAML syntax error",
        None,
    ),
    ("top-level list", "- a\n- b\n", (1, 1), "", "not a list", None),
    ("top-level scalar", "hello\n", (1, 1), "", "not a single value (str)", None),
    ("two documents", "a: 1\n---\nb: 2\n", (2, 1), "", "expected a single document", None),
    (
        "criteria missing",
        "probes: {c: {type: constant, value: 1}}\n",
        (1, 1),
        "",
        "criteria: is missing",
        "criteria: [{name:",
    ),
    ("criteria empty", "criteria: []\n", (1, 11), "criteria", "criteria is empty", None),
    ("criteria not a list", "criteria: x\n", (1, 11), "criteria", "must be a list", None),
    (
        "criterion not a mapping",
        "criteria:\n  - availability\n",
        (2, 5),
        "criteria[0]",
        "a criterion is a mapping",
        None,
    ),
    (
        "probes not a mapping",
        "probes: [prometheus]\ncriteria: [{name: a, probe: x, go: '> 1'}]\n",
        (1, 9),
        "probes",
        "map each probe name",
        None,
    ),
]

BASE = "probes:\n  c: {type: constant, value: 1}\ncriteria:\n"


def crit(*lines: str) -> str:
    return BASE + "".join(f"    {line}\n" if i else f"  - {line}\n" for i, line in enumerate(lines))


CASES += [
    (
        "bad go condition",
        crit("name: a", "probe: c", 'go: ">> 5"'),
        (6, 9),
        "criteria[0].go",
        "bad condition '>> 5': expected '<op> <number>[unit]'",
        "write it in quotes",
    ),
    (
        "bad rollback condition",
        crit("name: a", "probe: c", 'go: "> 1"', 'rollback: "5 %%"'),
        (7, 15),
        "criteria[0].rollback",
        "bad condition '5 %%'",
        None,
    ),
    (
        "unquoted number as condition",
        crit("name: a", "probe: c", "go: 5"),
        (6, 9),
        "criteria[0].go",
        "write it as a quoted string",
        None,
    ),
    (
        "bad duration",
        crit("name: a", "probe: c", 'go: "> 1"', "window: 5 minutes"),
        (7, 13),
        "criteria[0].window",
        "bad duration '5 minutes'",
        "500ms, 30s, 5m",
    ),
    (
        "interval zero",
        "interval: 0s\n" + crit("name: a", "probe: c", 'go: "> 1"'),
        (1, 11),
        "interval",
        "interval must be at least 1s, got 0s",
        "at least 1s",
    ),
    (
        "interval negative",
        "interval: -30s\n" + crit("name: a", "probe: c", 'go: "> 1"'),
        (1, 11),
        "interval",
        "bad duration '-30s'",
        None,
    ),
    (
        "interval negative number",
        "interval: -5\n" + crit("name: a", "probe: c", 'go: "> 1"'),
        (1, 11),
        "interval",
        "must be a non-negative number of seconds",
        None,
    ),
    (
        "steady_for zero",
        "steady_for: 0\n" + crit("name: a", "probe: c", 'go: "> 1"'),
        (1, 13),
        "steady_for",
        "greater than or equal to 1",
        "consecutive all-pass samples",
    ),
    (
        "steady_for not a number",
        "steady_for: three\n" + crit("name: a", "probe: c", 'go: "> 1"'),
        (1, 13),
        "steady_for",
        "valid integer",
        None,
    ),
    (
        "rollback_after zero on a criterion",
        crit("name: a", "probe: c", 'go: "> 1"', "rollback_after: 0"),
        (7, 21),
        "criteria[0].rollback_after",
        "greater than or equal to 1",
        None,
    ),
    (
        "bad no_data policy",
        crit("name: a", "probe: c", 'go: "> 1"', "no_data: ignore"),
        (7, 14),
        "criteria[0].no_data",
        "'inconclusive', 'pass' or 'fail'",
        None,
    ),
    (
        "unknown unit",
        crit("name: a", "probe: c", 'go: "> 1"', "unit: percentage"),
        (7, 11),
        "criteria[0].unit",
        "'ratio', 'percent', 'seconds' or 'count'",
        None,
    ),
    (
        "go missing",
        crit("name: a", "probe: c"),
        (4, 5),
        "criteria[0].go",
        "go is required",
        None,
    ),
    (
        "unknown top-level key",
        "rollbak_after: 2\n" + crit("name: a", "probe: c", 'go: "> 1"'),
        (1, 1),
        "rollbak_after",
        "unknown key 'rollbak_after'",
        "did you mean 'rollback_after'?",
    ),
    (
        "unknown criterion key",
        crit("name: a", "probe: c", 'go: "> 1"', "rollback_afer: 1"),
        (7, 5),
        "criteria[0].rollback_afer",
        "unknown key 'rollback_afer'",
        "did you mean 'rollback_after'?",
    ),
    (
        "unknown key without a close match lists the known ones",
        crit("name: a", "probe: c", 'go: "> 1"', "colour: blue"),
        (7, 5),
        "criteria[0].colour",
        "unknown key 'colour'",
        "known keys: baseline, compare, description, dry_run, field,",
    ),
    (
        "unknown min_volume key",
        crit("name: a", "probe: c", 'go: "> 1"', "min_volume: {at_least: 5, qurey: x}"),
        (7, 31),
        "criteria[0].min_volume.qurey",
        "unknown key 'qurey'",
        "did you mean 'query'?",
    ),
    (
        "unknown probe config key",
        "probes:\n  c: {type: constant, value: 1, timeot: 1}\n"
        "criteria: [{name: a, probe: c, go: '> 1'}]\n",
        (2, 33),
        "probes.c.timeot",
        "unknown key 'timeot'",
        "did you mean 'timeout'?",
    ),
    (
        "duplicate key",
        crit("name: a", "probe: c", 'go: "> 1"', 'go: "< 1"'),
        (7, 5),
        "criteria[0].go",
        "duplicate key 'go' (first at line 6)",
        "silently keep only the last one",
    ),
    (
        "unknown probe reference",
        crit("name: a", "probe: cc", 'go: "> 1"'),
        (5, 12),
        "criteria[0].probe",
        "unknown probe 'cc'",
        "did you mean 'c'?",
    ),
    (
        "unknown probe reference far from any name",
        crit("name: a", "probe: prometheus", 'go: "> 1"'),
        (5, 12),
        "criteria[0].probe",
        "unknown probe 'prometheus'",
        "define it under probes: (defined: c)",
    ),
    (
        "unknown probe type",
        "probes:\n  c: {type: constnt, value: 1}\ncriteria: [{name: a, probe: c, go: '> 1'}]\n",
        (2, 13),
        "probes.c.type",
        "unknown probe type 'constnt'",
        "did you mean 'constant'? known types:",
    ),
    (
        "probe without type",
        "probes:\n  c: {value: 1}\ncriteria: [{name: a, probe: c, go: '> 1'}]\n",
        (2, 6),
        "probes.c.type",
        "every probe needs type:",
        None,
    ),
    (
        "probe config of the wrong type",
        "probes:\n  c: {type: constant, value: lots}\ncriteria: [{name: a, probe: c, go: '> 1'}]\n",
        (2, 30),
        "probes.c.value",
        "valid number",
        None,
    ),
    (
        "probe config missing a required key",
        "probes:\n  c: {type: constant}\ncriteria: [{name: a, probe: c, go: '> 1'}]\n",
        (2, 6),
        "probes.c.value",
        "value is required",
        None,
    ),
    (
        "probe timeout out of range",
        "probes:\n  c: {type: constant, value: 1, timeout: 0}\n"
        "criteria: [{name: a, probe: c, go: '> 1'}]\n",
        (2, 42),
        "probes.c.timeout",
        "greater than 0",
        None,
    ),
    (
        "duplicate criterion names",
        BASE + "  - {name: a, probe: c, go: '> 1'}\n  - {name: a, probe: c, go: '< 1'}\n",
        (5, 12),
        "criteria[1].name",
        "duplicate criterion name 'a' (also criteria[0])",
        "unique",
    ),
    (
        "placeholder typo",
        crit("name: a", "probe: c", 'go: "> 1"', "query: 'up{v=\"${verison}\"}'"),
        (7, 12),
        "criteria[0].query",
        "placeholder ${verison} is not version, environment, stage or a key of vars",
        "did you mean ${version}?",
    ),
    (
        "placeholder typo of a declared var",
        "vars: {region: eu}\n"
        + crit("name: a", "probe: c", 'go: "> 1"', "matchers: ['r=\"${regoin}\"']"),
        (8, 16),
        "criteria[0].matchers[0]",
        "placeholder ${regoin}",
        "did you mean ${region}?",
    ),
    (
        "undeclared placeholder",
        crit("name: a", "probe: c", 'go: "> 1"', "params: {q: '${tenant}'}"),
        (7, 17),
        "criteria[0].params.q",
        "placeholder ${tenant}",
        "declare it under vars: with a default",
    ),
    (
        "undeclared placeholder in the volume query",
        crit(
            "name: a",
            "probe: c",
            'go: "> 1"',
            "min_volume: {query: 'x{t=\"${tenant}\"}', at_least: 1}",
        ),
        (7, 25),
        "criteria[0].min_volume.query",
        "placeholder ${tenant}",
        "declare it under vars:",
    ),
    (
        "malformed placeholder",
        crit("name: a", "probe: c", 'go: "> 1"', "query: 'up{v=\"${ version}\"}'"),
        (7, 12),
        "criteria[0].query",
        "malformed placeholder '${ version}'",
        "letters, digits and _",
    ),
    (
        "criterion name with capitals",
        crit("name: Availability", "probe: c", 'go: "> 1"'),
        (4, 11),
        "criteria[0].name",
        "should match pattern",
        "lowercase letters",
    ),
    (
        "duplicate sign-off id",
        crit("name: a", "probe: c", 'go: "> 1"') + "signoffs: [{id: uat}, {id: uat}]\n",
        (7, 28),
        "signoffs[1].id",
        "duplicate sign-off id 'uat'",
        None,
    ),
    (
        "bad sign-off role",
        crit("name: a", "probe: c", 'go: "> 1"') + "signoffs: [{id: uat, role: boss}]\n",
        (7, 28),
        "signoffs[0].role",
        "'approver' or 'admin'",
        None,
    ),
    (
        "placeholder in a probe setting, which every check shares",
        "vars: {env: prod}\nprobes:\n  h: {type: http, url: 'https://${env}.example/health'}\n"
        "criteria:\n  - {name: up, probe: h, metric: up, go: '== 1'}\n",
        (3, 24),
        "probes.h.url",
        "placeholders are not filled in probe settings",
        "put ${...} in the criterion's query",
    ),
    (
        "sign-off role below approver, who records sign-offs",
        crit("name: a", "probe: c", 'go: "> 1"') + "signoffs: [{id: uat, role: pipeline}]\n",
        (7, 28),
        "signoffs[0].role",
        "'approver' or 'admin'",
        None,
    ),
    (
        "notify url without scheme",
        crit("name: a", "probe: c", 'go: "> 1"') + "notify: [{url: ops.example}]\n",
        (7, 16),
        "notify[0].url",
        "should match pattern",
        None,
    ),
    (
        "vars not a mapping",
        "vars: [a, b]\n" + crit("name: a", "probe: c", 'go: "> 1"'),
        (1, 7),
        "vars",
        "valid dictionary",
        None,
    ),
    (
        "name differs from the file name",
        "name: billing\n" + crit("name: a", "probe: c", 'go: "> 1"'),
        (1, 7),
        "name",
        "name 'billing' does not match the gate name 'portal'",
        "remove name:",
    ),
    (
        "recursive alias",
        "&a [*a]\n",
        (1, 1),
        "",
        "nested too deeply",
        None,
    ),
]


@pytest.mark.parametrize(
    ("text", "position", "where", "message", "hint"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_problem_is_located_and_explained(
    text: str, position: tuple[int | None, int | None], where: str, message: str, hint: str | None
) -> None:
    problem = only(text)
    assert (problem.line, problem.col) == position, str(problem)
    assert format_loc(problem.loc) == where
    assert message in problem.message
    if hint is None:
        return
    assert problem.hint is not None and hint in problem.hint


SECRET = "s3cr3t-value-never-printed"


@pytest.mark.parametrize(
    ("text", "where", "hint"),
    [
        (
            f"probes:\n  c: {{type: constant, value: 1, token: {SECRET}}}\n",
            "probes.c.token",
            "token_env",
        ),
        (
            f"probes:\n  c: {{type: constant, value: 1, password: {SECRET}}}\n",
            "probes.c.password",
            "password_env",
        ),
        (
            f"probes:\n  c: {{type: constant, value: 1, api_key: {SECRET}}}\n",
            "probes.c.api_key",
            "api_key_env",
        ),
        (
            f"probes:\n  c: {{type: nosuchtype, app_key: {SECRET}}}\n",
            "probes.c.app_key",
            "app_key_env",
        ),
        (
            "probes:\n  c: {type: constant, value: 1,"
            f" headers: {{Authorization: 'Bearer {SECRET}'}}}}\n",
            "probes.c.headers.Authorization",
            "token_env",
        ),
        (
            "probes:\n  c: {type: constant, value: 1}\n"
            f"notify: [{{url: 'https://x.example', secret: {SECRET}}}]\n",
            "notify[0].secret",
            "secret_env",
        ),
    ],
    ids=["token", "password", "api_key", "unknown type", "header", "notify secret"],
)
def test_inline_secrets_are_refused_and_never_echoed(text: str, where: str, hint: str) -> None:
    text += "criteria: [{name: a, probe: c, go: '> 1'}]\n"
    problems = problems_of(text)
    secret_problems = [p for p in problems if format_loc(p.loc) == where]
    assert len(secret_problems) == 1, [str(p) for p in problems]
    assert "secrets never go in gate files" in secret_problems[0].message
    assert secret_problems[0].hint is not None and hint in secret_problems[0].hint
    with pytest.raises(GateFileError) as refused:
        load_gate_text(text, name="portal", source="portal.yaml")
    assert SECRET not in str(refused.value)
    assert SECRET not in repr(refused.value.errors)


def test_every_problem_of_a_file_is_reported_in_line_order() -> None:
    problems = gate_file_problems(GATEFILES / "many-problems.yaml")
    rendered = [str(p) for p in problems]
    assert [(p.line, format_loc(p.loc)) for p in problems] == [
        (2, "interval"),
        (3, "steady_for"),
        (4, "rollbak_after"),
        (6, "probes.prom.token"),
        (7, "probes.alerts.type"),
        (11, "criteria[0].go"),
        (12, "criteria[1].name"),
        (13, "criteria[1].probe"),
        (14, "criteria[1].query"),
        (16, "criteria[1].window"),
    ], rendered
    path = str(GATEFILES / "many-problems.yaml")
    assert rendered[5] == (
        f"{path}:11:9: criteria[0].go: bad condition '>> 5': expected '<op> <number>[unit]'"
        " with op one of > >= < <= == != and unit one of % ms s m, e.g. '> 99.9%' or '< 2s'"
        " (hint: write it in quotes, e.g. go: '> 99.9%', or a list of them to AND)"
    )
    assert all("s3cr3t" not in line for line in rendered)


def test_problem_prints_like_a_compiler_diagnostic() -> None:
    problem = GateProblem("portal.yaml", 12, 9, loc("criteria", 1, "go"), "bad condition", "fix it")
    assert str(problem) == "portal.yaml:12:9: criteria[1].go: bad condition (hint: fix it)"
    assert problem.as_dict() == {
        "loc": ["criteria", 1, "go"],
        "msg": "bad condition (hint: fix it)",
        "line": 12,
        "col": 9,
    }
    assert str(GateProblem("portal.yaml", None, None, (), "empty")) == "portal.yaml: empty"


def test_gate_file_error_lists_problems_and_accepts_plain_messages() -> None:
    error = GateFileError(["gate x: probe 'p' cannot be built"])
    assert str(error.problems[0]) == "gate x: probe 'p' cannot be built"
    assert "1 problem)" in str(error)


@pytest.mark.parametrize("stem", ["Portal", "-portal", "portal_v2", "p" * 64, "porta l"])
def test_a_bad_gate_name_is_refused(stem: str) -> None:
    problem = only(crit("name: a", "probe: c", 'go: "> 1"'), name=stem)
    assert f"gate name {stem!r} is not valid" in problem.message
    assert problem.hint is not None and "lowercase" in problem.hint


def test_a_bad_file_stem_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Patient_Portal.yaml"
    path.write_text((GATEFILES / "valid.yaml").read_text())
    with pytest.raises(GateFileError) as refused:
        load_gate_file(path)
    assert "gate name 'Patient_Portal' is not valid" in str(refused.value)


def test_unreadable_files_are_problems_not_tracebacks(tmp_path: Path) -> None:
    missing = gate_file_problems(tmp_path / "missing.yaml")
    assert [p.message for p in missing] == ["cannot read: No such file or directory"]
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8 text" in gate_file_problems(binary)[0].message


def test_an_oversized_definition_is_refused() -> None:
    problem = only("a: " + "x" * 1_000_001)
    assert "larger than" in problem.message


def test_the_fixture_files_fail_as_documented() -> None:
    assert gate_file_problems(GATEFILES / "empty.yaml")[0].message == "the gate definition is empty"
    syntax = gate_file_problems(GATEFILES / "syntax-error.yaml")[0]
    assert (syntax.line, syntax.col) == (3, 9)
    assert "not a list" in gate_file_problems(GATEFILES / "top-level-list.yaml")[0].message


# -- probe types: check_query, and types that fail to load ---------------------------------


class QueryStrictConfig(ProbeConfig):
    pass


class QueryStrictProbe:
    """A probe type whose ``check_query`` wants a PromQL-ish query and no metric."""

    type_name: ClassVar[str] = "strict"
    config_model: ClassVar[type[ProbeConfig]] = QueryStrictConfig

    def __init__(self, config: ProbeConfig, *, name: str) -> None:
        self.config = config

    @staticmethod
    def check_query(query: ProbeQuery) -> list[tuple[str, str]]:
        problems = []
        if query.query is None:
            problems.append(("query", "a strict criterion needs query:"))
        if query.metric is not None:
            problems.append(("metric", "strict probes have no metrics"))
        if query.query == "crash":
            raise RuntimeError("checker bug")
        return problems


@pytest.fixture
def strict_type(monkeypatch: pytest.MonkeyPatch) -> None:
    real = probe_type

    def lookup(type_name: str) -> Any:
        if type_name == "strict":
            return QueryStrictProbe
        if type_name == "broken":
            raise ModuleNotFoundError("No module named 'probes.broken'")
        return real(type_name)

    monkeypatch.setattr(gates.criteria_checks, "probe_type", lookup)


STRICT = "probes:\n  s: {type: strict}\ncriteria:\n"


def test_check_query_problems_are_reported_at_the_criterion(strict_type: None) -> None:
    problems = problems_of(STRICT + "  - name: a\n    probe: s\n    metric: up\n    go: '> 1'\n")
    assert [(p.line, format_loc(p.loc), p.message) for p in problems] == [
        (4, "criteria[0].query", "a strict criterion needs query:"),
        (6, "criteria[0].metric", "strict probes have no metrics"),
    ]


def test_a_crashing_check_query_is_a_problem_not_a_crash(strict_type: None) -> None:
    problem = only(STRICT + "  - {name: a, probe: s, query: crash, go: '> 1'}\n")
    assert "could not check this query: RuntimeError: checker bug" in problem.message


def test_a_probe_type_that_fails_to_import_is_a_problem(strict_type: None) -> None:
    problem = only("probes:\n  b: {type: broken}\ncriteria: [{name: a, probe: b, go: '> 1'}]\n")
    assert format_loc(problem.loc) == "probes.b.type"
    assert "probe type 'broken' could not be loaded: ModuleNotFoundError" in problem.message


def test_a_valid_query_passes_check_query(strict_type: None) -> None:
    gate = load_gate_text(
        STRICT + "  - {name: a, probe: s, query: up, go: '> 1'}\n", name="g", source="g.yaml"
    )
    assert isinstance(gate, Gate)


# -- directories --------------------------------------------------------------------------------


def test_load_gate_dir_returns_valid_gates_and_every_problem(tmp_path: Path) -> None:
    valid = (GATEFILES / "valid.yaml").read_text()
    (tmp_path / "portal.yaml").write_text(valid)
    (tmp_path / "billing.yml").write_text(valid)
    (tmp_path / "portal.yml").write_text(valid)  # same gate name as portal.yaml
    (tmp_path / "broken.yaml").write_text((GATEFILES / "many-problems.yaml").read_text())
    (tmp_path / ".swap.yaml").write_text(": not yaml")
    (tmp_path / "README.md").write_text("not a gate")

    gates_found, problems = load_gate_dir(tmp_path)

    assert sorted(gates_found) == ["billing", "portal"]
    assert any(p.file.endswith("portal.yml") and "also defined" in p.message for p in problems)
    broken = [p for p in problems if p.file.endswith("broken.yaml")]
    assert len(broken) == 10


def test_load_gate_dir_on_a_missing_directory(tmp_path: Path) -> None:
    gates_found, problems = load_gate_dir(tmp_path / "nope")
    assert gates_found == {}
    assert [p.message for p in problems] == ["not a directory"]


# -- the shipped example gates ----------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "gates"


class AnyConfig(ProbeConfig):
    model_config = ProbeConfig.model_config | {"extra": "allow"}


class AnyProbe:
    type_name: ClassVar[str] = "any"
    config_model: ClassVar[type[ProbeConfig]] = AnyConfig

    @staticmethod
    def check_query(query: ProbeQuery) -> list[tuple[str, str]]:
        return []

    @staticmethod
    def quote(value: str, context: QuoteContext) -> str:
        return value

    async def measure_range(self, *args: object) -> None:
        raise NotImplementedError  # only its presence is checked at load


def test_example_gates_are_valid_apart_from_each_probe_types_own_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gates.criteria_checks, "probe_type", lambda type_name: AnyProbe)
    found, problems = load_gate_dir(EXAMPLES)
    assert [str(p) for p in problems] == []
    assert sorted(found) == ["canary-vs-stable", "portal", "staged-rollout"]

    portal = found["portal"]
    by_name = {c.name: c for c in portal.criteria}
    assert str(by_name["availability"].go[0]) == "> 99.9%"
    assert str(by_name["availability"].rollback[0]) == "< 95%"  # type: ignore[index]
    assert str(by_name["response-time-p95"].go[0]) == "< 2s"
    assert str(by_name["error-rate"].go[0]) == "< 1%"
    assert by_name["error-rate"].min_volume is not None
    assert by_name["security-or-corruption"].rollback_after == 1
    assert "SecurityBreach|DataCorruption" in by_name["security-or-corruption"].matchers[0]
    assert by_name["new-fatal-issues"].metric == "new_issues"
    assert [s.id for s in portal.signoffs] == ["uat", "clinical-safety"]
    assert any(n.secret_env for n in portal.notify)
    assert portal.vars["version"] == ".+"

    staged = found["staged-rollout"]
    assert all("${stage}" in (c.query or " ".join(c.matchers)) for c in staged.criteria)
    assert "stage" in staged.vars


def test_example_gates_validate_with_the_built_in_probes() -> None:
    """``gonogo validate examples/gates`` must pass with the real probe types."""
    found, problems = load_gate_dir(EXAMPLES)
    assert [str(p) for p in problems] == []
    assert sorted(found) == ["canary-vs-stable", "portal", "staged-rollout"]


# -- the module's public names ------------------------------------------------------------------


def test_the_loader_keeps_its_public_names() -> None:
    """The loader is split over several modules; its own names stay importable from it."""
    public = {
        "CHECK_PLACEHOLDERS",
        "GATE_FILE_SUFFIXES",
        "MAX_DEFINITION_CHARS",
        "CheckedGate",
        "check_gate_file",
        "check_gate_text",
        "format_loc",
        "gate_file_problems",
        "gate_files",
        "load_gate_dir",
        "load_gate_file",
        "load_gate_text",
    }
    assert set(gates.loader.__all__) == public
    assert all(hasattr(gates.loader, name) for name in public)
    assert gates.loader.CHECK_PLACEHOLDERS == ("version", "environment", "stage")
    assert gates.loader.GATE_FILE_SUFFIXES == (".yaml", ".yml")


def test_gate_names_have_one_pattern() -> None:
    assert GATE_NAME.pattern == NAME_PATTERN


# -- strict types, overflow and windows longer than the history kept --------------------------

STRICT_BASE = """\
interval: 30s
probes:
  health: {type: http, url: "http://portal/health"}
criteria:
  - name: up
    probe: health
    metric: up
    go: "== 1"
"""

STRICT_CASES = [
    # (what is written, where, located at line, message fragment)
    ("steady_for: true\n", ("steady_for",), 9, "not the boolean true"),
    ("steady_for: 3.0\n", ("steady_for",), 9, "valid integer"),
    ("rollback_after: true\n", ("rollback_after",), 9, "not the boolean true"),
    ("timeout: true\n", ("timeout",), 9, "not a boolean"),
    ("timeout: 99999999999999999999d\n", ("timeout",), 9, "longer than the maximum of 366d"),
    ("interval: 99999999999999999999d\n", ("interval",), 1, "longer than the maximum of 366d"),
    ("initial_delay: 99999999999999999999d\n", ("initial_delay",), 9, "longer than the max"),
]


@pytest.mark.parametrize(
    ("extra", "where", "line", "fragment"), STRICT_CASES, ids=[c[0].strip() for c in STRICT_CASES]
)
def test_loose_or_overflowing_gate_keys_are_located_problems(
    extra: str, where: tuple[str, ...], line: int, fragment: str
) -> None:
    text = STRICT_BASE + extra
    if extra.startswith("interval:"):
        text = extra + STRICT_BASE.split("\n", 1)[1]
    problem = only(text)
    assert (problem.loc, problem.line) == (where, line), str(problem)
    assert fragment in problem.message
    assert problem.hint


CRITERION_CASES = [
    ("go", '"> 1e999"', "too large"),
    ("rollback", '"< -1e999"', "too large"),
    ("rollback_after", "true", "not the boolean true"),
    ("window", "99999999999999999999d", "longer than the maximum of 366d"),
]


@pytest.mark.parametrize(("key", "written", "fragment"), CRITERION_CASES)
def test_loose_or_overflowing_criterion_keys_are_located_problems(
    key: str, written: str, fragment: str
) -> None:
    text = STRICT_BASE.replace("metric: up", "metric: availability\n    window: 5m")
    if key in ("window", "go"):
        text = text.replace("window: 5m" if key == "window" else 'go: "== 1"', f"{key}: {written}")
    else:
        text += f"    {key}: {written}\n"
    problem = only(text)
    assert problem.loc == ("criteria", 0, key), str(problem)
    assert problem.line is not None and problem.line >= 5
    assert fragment in problem.message


@pytest.mark.parametrize(("key", "fragment"), [("timeout", "number"), ("retries", "integer")])
def test_a_boolean_probe_timeout_or_retries_is_a_located_problem(key: str, fragment: str) -> None:
    text = STRICT_BASE.replace('url: "http://portal/health"}', f'url: "http://h/", {key}: true}}')
    problem = only(text)
    assert (problem.loc, problem.line) == (("probes", "health", key), 3), str(problem)
    assert fragment in problem.message


def test_a_nan_min_volume_is_a_located_problem() -> None:
    text = STRICT_BASE + "    min_volume: {at_least: .nan}\n"
    problem = only(text)
    assert problem.loc == ("criteria", 0, "min_volume", "at_least")
    assert problem.line == 9


def test_an_availability_window_longer_than_the_history_is_refused_at_its_line() -> None:
    text = STRICT_BASE.replace("metric: up", "metric: availability\n    window: 1d")
    problem = only(text)
    assert str(problem) == (
        "portal.yaml:8:13: criteria[0].window: window 1d at interval 30s needs 2881 samples"
        " of history; gonogo keeps at most 2000"
        " (hint: use a window of at most 16h39m30s, or a longer interval)"
    )
    # The same window at a longer interval fits, and so does a source-computed window.
    assert load_gate_text(text.replace("interval: 30s", "interval: 45s"), name="p", source="x")


def test_validate_reports_overflow_and_booleans_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "loose.yaml"
    path.write_text(
        STRICT_BASE.replace("metric: up", "metric: availability\n    window: 99999999999999999999d")
        + "steady_for: true\n"
    )
    cli = typer.Typer()
    gatefiles.register(cli)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert f"{path}:8:13: criteria[0].window: bad duration" in result.output
    assert f"{path}:10:13: steady_for:" in result.output


# -- environment variables a gate may name ------------------------------------------------

ENV_GATE = """\
probes:
  prom: {type: prometheus, url: "http://prometheus:9090", token_env: %s}
criteria:
  - {name: up, probe: prom, query: up, go: "> 0"}
notify:
  - {url: "https://ops.example/hook", secret_env: %s}
"""
SETTINGS_NAMES = ("GONOGO_TOKENS", "GONOGO_DATABASE_URL", "GONOGO_ENV_ALLOW")


def env_problems(token_env: str, secret_env: str, policy: EnvPolicy | None = None) -> list[str]:
    kwargs = {"env_policy": policy} if policy is not None else {}
    _, problems = check_gate_text(
        ENV_GATE % (token_env, secret_env), name="g", source="g.yaml", **kwargs
    )
    return [f"{p.line}:{p.col} {format_loc(p.loc)}: {p.message} ({p.hint})" for p in problems]


def test_by_default_gates_name_only_gonogo_probe_and_notify_variables() -> None:
    assert env_problems("GONOGO_PROBE_PROM_TOKEN", "GONOGO_NOTIFY_HOOK_SECRET") == []
    assert env_problems("PROM_TOKEN", "HOOK_SECRET") == [
        "2:70 probes.prom.token_env: PROM_TOKEN is not allowed by GONOGO_ENV_ALLOW (it allows"
        " GONOGO_PROBE_*, GONOGO_NOTIFY_*) (name a variable GONOGO_ENV_ALLOW allows, e.g."
        " GONOGO_PROBE_TOKEN)",
        "6:51 notify[0].secret_env: HOOK_SECRET is not allowed by GONOGO_ENV_ALLOW (it allows"
        " GONOGO_PROBE_*, GONOGO_NOTIFY_*) (name a variable GONOGO_ENV_ALLOW allows, e.g."
        " GONOGO_NOTIFY_SECRET)",
    ]


@given(
    name=st.sampled_from(SETTINGS_NAMES),
    flips=st.lists(st.booleans(), min_size=30, max_size=30),
    allow=st.lists(st.sampled_from(["*", "GONOGO_*", "GONOGO_TOKENS", "G*", "*_URL"]), max_size=3),
)
def test_no_allow_list_lets_a_gate_read_gonogos_own_settings(
    name: str, flips: list[bool], allow: list[str]
) -> None:
    """Whatever the operator allows and however the name is cased (settings are read
    without regard to case), a gate never names one of gonogo's own settings."""
    cased = "".join(c.lower() if flip else c for c, flip in zip(name, flips, strict=False))
    policy = EnvPolicy(allow=tuple(allow))
    assert policy.refusal(cased) is not None
    problems = env_problems(cased, cased, policy)
    assert len(problems) == 2
    assert all("one of gonogo's own settings" in p for p in problems)


@given(st.from_regex(r"[A-Z][A-Z0-9_]{0,20}", fullmatch=True))
def test_a_variable_is_readable_exactly_when_the_allow_list_matches_it(name: str) -> None:
    policy = EnvPolicy(allow=("PROM_*", "EXACT_NAME"))
    readable = name.startswith("PROM_") or name == "EXACT_NAME"
    assert (policy.refusal(name) is None) == (readable and name not in SETTINGS_NAMES)


def test_every_env_key_of_a_probe_is_checked_whatever_its_type() -> None:
    text = """\
    probes:
      dd: {type: datadog, api_key_env: GONOGO_TOKENS, app_key_env: GONOGO_PROBE_DD_APP}
      c: {type: constant, value: 1, extra_env: GONOGO_DATABASE_URL}
    criteria:
      - {name: a, probe: dd, query: "avg:x{*}", go: "> 0"}
    """
    found = {format_loc(p.loc) for p in problems_of(text)}
    assert {"probes.dd.api_key_env", "probes.c.extra_env"} <= found


def test_load_gate_dir_applies_the_policy(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(ENV_GATE % ("GONOGO_TOKENS", "GONOGO_NOTIFY_X"))
    found, problems = load_gate_dir(tmp_path)
    assert found == {}
    assert [p.message for p in problems] == [
        "GONOGO_TOKENS is one of gonogo's own settings; a gate may never read it"
    ]
    allowing = EnvPolicy(allow=("*",), reserved=frozenset())
    assert load_gate_dir(tmp_path, env_policy=allowing)[1] == []


# -- limits on the text: depth, values, aliases, merge keys ---------------------------------


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("[" * 100_000 + "]" * 100_000, (1, 65)),
        ('{"a": ' * 5_000 + "1" + "}" * 5_000, (1, 385)),
        ("".join(" " * i + "a:\n" for i in range(100)), (65, 65)),
        ("x: &x " + "[" * 40 + "]" * 40 + "\ny: " + "[" * 40 + "*x" + "]" * 40 + "\n", (1, 31)),
    ],
    ids=["flow YAML", "JSON", "block YAML", "through an alias"],
)
def test_a_definition_nested_too_deeply_is_a_located_problem(
    text: str, position: tuple[int, int]
) -> None:
    problem = only(text)
    assert problem.message == "nested too deeply: deeper than 64 levels"
    assert (problem.line, problem.col) == position


def merge_chain(levels: int) -> str:
    lines = ["vars:", "  a0: &a0 {x: '1', y: '2'}"]
    lines += [
        f"  a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], k{i}: '{i}'}}" for i in range(1, levels + 1)
    ]
    return "\n".join(lines) + "\n"


def test_a_chain_of_merge_keys_costs_its_distinct_keys_not_two_to_its_length() -> None:
    from gates.problems import Problems
    from gates.yaml_source import compose

    problems = Problems("chain.yaml")
    document = compose(merge_chain(40), problems)  # 2**40 pairs if expanded naively
    assert problems.items == []
    assert document is not None
    last = document.data["vars"]["a40"]
    assert last == {"x": "1", "y": "2", **{f"k{i}": str(i) for i in range(1, 41)}}


def test_merge_keys_keep_yamls_precedence() -> None:
    from gates.problems import Problems
    from gates.yaml_source import compose

    text = """\
    a: &a {x: a, y: a}
    b: &b {x: b, z: b}
    c: {<<: [*a, *b], y: own}
    d: {<<: *b, <<: *a}
    """
    document = compose(textwrap.dedent(text), Problems("m.yaml"))
    assert document is not None
    # Written keys win over merged ones; an earlier mapping in the list over a later one;
    # of two merge keys, the later. Exactly what a plain YAML load gives.
    assert document.data == yaml.safe_load(textwrap.dedent(text))
    assert document.data["c"] == {"x": "a", "y": "own", "z": "b"}
    assert document.data["d"] == {"x": "a", "z": "b", "y": "a"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'l0: &l0 "lol"\n'
            + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)),
            "too many values: more than 20000 (aliases expanded)",
        ),
        ("x: &x 1\ny: [" + ", ".join(["*x"] * 101) + "]\n", "too many aliases: more than 100"),
        (
            "y: [" + ", ".join(["{<<: {a: 1}}"] * 65) + "]\n",
            "too many merge keys: more than 64",
        ),
        ("y: [" + ", ".join(["1"] * 20_001) + "]\n", "too many values: more than 20000"),
    ],
    ids=["billion laughs", "aliases", "merge keys", "values"],
)
def test_alias_merge_and_value_limits_are_named(text: str, message: str) -> None:
    assert only(text).message.startswith(message)


def test_a_definition_over_the_size_limit_is_refused_before_it_is_read() -> None:
    problem = only("#" * (gates.loader.MAX_DEFINITION_CHARS + 1))
    assert problem.message == "the definition is larger than 262144 characters"


@st.composite
def merging_documents(draw: st.DrawFn) -> str:
    """Anchored mappings, each with its own keys and merge keys (single or lists, one or
    two of them) naming earlier mappings."""
    lines = []
    for index in range(draw(st.integers(1, 6))):
        entries = [
            f"{key}: v{index}"
            for key in draw(st.lists(st.sampled_from("abcde"), unique=True, max_size=3))
        ]
        for _ in range(draw(st.integers(0, 2)) if index else 0):
            sources = draw(st.lists(st.integers(0, index - 1), min_size=1, max_size=3))
            names = [f"*m{s}" for s in sources]
            entries.insert(
                draw(st.integers(0, len(entries))),
                f"<<: [{', '.join(names)}]" if len(names) > 1 else f"<<: {names[0]}",
            )
        lines.append(f"m{index}: &m{index} {{{', '.join(entries)}}}")
    return "\n".join(lines) + "\n"


@given(merging_documents())
def test_merge_keys_read_exactly_as_a_plain_yaml_load_reads_them(text: str) -> None:
    from gates.problems import Problems
    from gates.yaml_source import compose

    problems = Problems("m.yaml")
    document = compose(text, problems)
    assert document is not None
    assert document.data == yaml.safe_load(text), text
