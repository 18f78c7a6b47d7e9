"""``gonogo evaluate GATE_FILE``: one sample now; exit 0 go-able, 1 not, 3 error."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from app.cli import gatefiles
from probes.base import ProbeConfig
from tests.fakeprobe import FakeProbe

GATEFILES = Path(__file__).resolve().parents[2] / "gatefiles"


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    gatefiles.register(app)
    return app


def gate_file(tmp_path: Path, text: str, name: str = "portal") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def constant_gate(value: float, *, rollback_after: int = 2) -> str:
    return f"""\
        vars: {{version: ".+"}}
        probes:
          c: {{type: constant, value: {value}}}
        criteria:
          - name: availability
            probe: c
            query: 'up{{version=~"${{version}}"}}'
            go: "> 99.9%"
            rollback: "< 95%"
            rollback_after: {rollback_after}
          - name: latency
            probe: c
            go: "< 2s"
        signoffs: [{{id: uat}}]
        """


def evaluate(cli: typer.Typer, *args: str | Path) -> Result:
    result = CliRunner().invoke(cli, ["evaluate", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_a_go_able_sample_exits_0_and_shows_the_table(cli: typer.Typer, tmp_path: Path) -> None:
    result = evaluate(cli, gate_file(tmp_path, constant_gate(0.9995)))
    assert result.exit_code == 0, result.output
    for column in ("criterion", "value", "go", "rollback", "outcome", "reason"):
        assert column in result.stdout
    assert "99.95 % > 99.9 % (go: > 99.9%)" in result.stdout
    assert "go-able: every criterion passes" in result.stdout
    # Sign-offs belong to checks: a one-off evaluation does not wait for them.
    assert "missing sign-off" not in result.stdout


def test_a_failing_criterion_exits_1_with_its_reason(cli: typer.Typer, tmp_path: Path) -> None:
    result = evaluate(cli, gate_file(tmp_path, constant_gate(0.99)))
    assert result.exit_code == 1
    assert "not go-able (no_go):" in result.stdout
    assert "availability: 99 % <= 99.9 % (go: > 99.9%)" in result.stdout
    assert "steady 0/1" not in result.stdout


def test_json_output_carries_the_decision_and_each_criterion(
    cli: typer.Typer, tmp_path: Path
) -> None:
    result = evaluate(cli, gate_file(tmp_path, constant_gate(0.5, rollback_after=1)), "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["gate"] == "portal"
    assert body["decision"] == "rollback"
    assert body["go_able"] is False
    assert body["reasons"] == ["availability: 50 % < 95 % (rollback: < 95%) [breach 1/1]"]
    availability, latency = body["criteria"]
    assert availability | {"duration_ms": None, "observed_at": None} == {
        "name": "availability",
        "outcome": "breach",
        "value": 0.5,
        "volume": None,
        "go": "> 99.9%",
        "rollback": "< 95%",
        "reason": "50 % < 95 % (rollback: < 95%)",
        "probe": "c",
        "duration_ms": None,
        "dry_run": False,
        "baseline": None,
        "unit": "percent",
        "probe_type": "constant",
        "status": "ok",
        "observed_at": None,
    }
    assert availability["observed_at"].endswith("Z")
    assert latency["outcome"] == "pass"


def test_json_go_able(cli: typer.Typer, tmp_path: Path) -> None:
    result = evaluate(cli, gate_file(tmp_path, constant_gate(1.0)), "--json")
    assert result.exit_code == 0
    body = json.loads(result.stdout)
    assert (body["decision"], body["go_able"], body["reasons"]) == ("go", True, [])


class Factories:
    """Stands in for the registry: builds FakeProbes and remembers them."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.built: list[FakeProbe] = []

    def __call__(self, type_name: str) -> Any:
        def build(config: ProbeConfig, *, name: str) -> FakeProbe:
            answer = self.answers[name]
            if isinstance(answer, type) and issubclass(answer, Exception):
                raise answer(f"cannot build {name}")
            probe = FakeProbe(answer)
            self.built.append(probe)
            return probe

        return build


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Factories:
    factories = Factories(c=1.0, d=1.0)
    monkeypatch.setattr(gatefiles, "probe_type", factories)
    return factories


TWO_PROBES = """\
    vars: {version: ".+", ring: all}
    probes:
      c: {type: constant, value: 1}
      d: {type: constant, value: 1}
    criteria:
      - {name: a, probe: c, query: 'x{v=~"${version}", ring="${ring}"}', go: "> 0"}
      - {name: b, probe: d, go: "> 0"}
    """


def test_vars_fill_placeholders_and_probes_are_closed(
    cli: typer.Typer, tmp_path: Path, fakes: Factories
) -> None:
    path = gate_file(tmp_path, TWO_PROBES)
    result = evaluate(cli, path, "--var", "version=2.4.1", "--var", "ring=canary=1")
    assert result.exit_code == 0, result.output
    first = fakes.built[0]
    assert first.calls[0].query.query == 'x{v=~"2.4.1", ring="canary=1"}'
    assert all(p.closed for p in fakes.built)


def test_a_raising_probe_is_inconclusive_not_a_crash(
    cli: typer.Typer, tmp_path: Path, fakes: Factories
) -> None:
    fakes.answers["d"] = RuntimeError("boom")
    result = evaluate(cli, gate_file(tmp_path, TWO_PROBES), "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["criteria"][1]["outcome"] == "inconclusive"
    assert body["criteria"][1]["reason"] == "probe failed: RuntimeError: boom"
    assert all(p.closed for p in fakes.built)


def test_an_unfilled_placeholder_is_named(cli: typer.Typer, tmp_path: Path) -> None:
    text = constant_gate(1.0).replace('vars: {version: ".+"}', "vars: {}")
    result = evaluate(cli, gate_file(tmp_path, text), "--json")
    assert result.exit_code == 1
    reason = json.loads(result.stdout)["criteria"][0]["reason"]
    assert "${version}" in reason


def test_a_probe_that_cannot_be_built_exits_3(
    cli: typer.Typer, tmp_path: Path, fakes: Factories
) -> None:
    fakes.answers["d"] = KeyError
    result = evaluate(cli, gate_file(tmp_path, TWO_PROBES))
    assert result.exit_code == 3
    assert "probe 'd' (constant) cannot be built" in result.stderr
    assert [p.closed for p in fakes.built] == [True]  # the one already built is released


def test_an_invalid_gate_file_exits_3_with_its_problems(cli: typer.Typer) -> None:
    result = evaluate(cli, GATEFILES / "many-problems.yaml")
    assert result.exit_code == 3
    assert "many-problems.yaml:4:1: rollbak_after: unknown key" in result.stderr
    assert "is not a valid gate file" in result.stderr
    assert "s3cr3t" not in result.output


def test_a_missing_gate_file_exits_3(cli: typer.Typer, tmp_path: Path) -> None:
    result = evaluate(cli, tmp_path / "nope.yaml")
    assert result.exit_code == 3
    assert "no such file" in result.stderr


@pytest.mark.parametrize("bad", ["version", "=1.2", "1x=2", "with space=1"])
def test_a_bad_var_exits_3(cli: typer.Typer, bad: str) -> None:
    result = evaluate(cli, GATEFILES / "valid.yaml", "--var", bad)
    assert result.exit_code == 3
    assert f"bad --var {bad!r}" in result.stderr
