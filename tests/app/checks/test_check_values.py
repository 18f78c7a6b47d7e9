"""Values a check supplies, at the API's edge and in ``--var``: 1-128 characters of
``A-Z a-z 0-9 . _ : @ + / = -``, only for placeholders the gate uses, never a name gonogo
fills itself (docs/decisions.md, "Placeholders and quoting")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from app.cli import gatefiles
from app.cli.options import VarError, parse_vars
from gates.placeholders import check_value_problem
from tests.app.conftest import Service
from tests.probes.test_quoting import INJECTIONS

REFUSED = [v for v in INJECTIONS if check_value_problem(v) is not None]
ACCEPTED = [v for v in INJECTIONS if check_value_problem(v) is None]

RINGS = """\
interval: 10s
steady_for: 1
timeout: 60s
vars: {ring: all, tenant: acme}
probes:
  p: {type: constant, value: 1}
criteria:
  - name: errors
    probe: p
    query: 'errors{version=~"${version}", env="${environment}", ring="${ring}"}'
    go: "> 0"
  - name: volume
    probe: p
    query: "x"
    min_volume: {query: 'requests{tenant="${tenant}", stage="${stage}"}', at_least: 0}
    go: "> 0"
"""


@pytest.fixture
def gates_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "gates"
    directory.mkdir()
    (directory / "rings.yaml").write_text(RINGS)
    return directory


async def start(service: Service, body: dict[str, Any]) -> Any:
    return await service.post("/api/v1/gates/rings/checks", "pipeline", json=body)


def where(field: str) -> tuple[dict[str, Any], list[str]]:
    """A body with ``field`` to fill in and the ``loc`` a refusal names."""
    if field == "vars":
        return {"version": "1.0", "vars": {"ring": None}}, ["body", "vars", "ring"]
    return {"version": "1.0", field: None}, ["body", field]


def with_value(body: dict[str, Any], field: str, value: str) -> dict[str, Any]:
    if field == "vars":
        return {**body, "vars": {"ring": value}}
    return {**body, field: value}


@pytest.mark.parametrize("field", ["version", "environment", "stage", "vars"])
async def test_values_outside_the_rule_are_422_naming_the_field(
    service: Service, field: str
) -> None:
    body, loc = where(field)
    for value in REFUSED:
        response = await start(service, with_value(body, field, value))
        assert response.status_code == 422, (value, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert [e["loc"] for e in problem["errors"]] == [loc], value
        assert "Traceback" not in response.text
    listed = await service.get("/api/v1/checks")
    assert listed.json()["items"] == []


@pytest.mark.parametrize("field", ["version", "environment", "stage", "vars"])
async def test_values_inside_the_rule_start_a_check(service: Service, field: str) -> None:
    body, _ = where(field)
    for value in ACCEPTED:
        response = await start(service, with_value(body, field, value))
        assert response.status_code == 201, (value, response.text)
        check = response.json()
        if field != "vars":
            assert check[field] == value


async def test_the_message_says_which_character_and_what_is_allowed(service: Service) -> None:
    response = await start(service, {"version": "1.4.1|1.4.2"})
    (error,) = response.json()["errors"]
    assert "'|' is not allowed" in error["msg"]
    assert "A-Z a-z 0-9 . _ : @ + / = -" in error["msg"]
    too_long = await start(service, {"version": "1" * 129})
    assert "at most 128 characters" in too_long.json()["errors"][0]["msg"]


async def test_surrounding_whitespace_is_refused_not_trimmed(service: Service) -> None:
    response = await start(service, {"version": " 1.4.2"})
    assert response.status_code == 422


async def test_a_check_may_set_only_placeholders_its_gate_uses(service: Service) -> None:
    response = await start(service, {"version": "1.0", "vars": {"tenant": "x", "team": "web"}})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", "vars", "team"]
    assert "${team} is not used by gate 'rings'" in error["msg"]
    assert "${ring}" in error["msg"]
    ok = await start(service, {"version": "1.0", "vars": {"tenant": "x", "ring": "r-1"}})
    assert ok.status_code == 201


@pytest.mark.parametrize("name", ["window", "baseline_version", "baseline_"])
async def test_names_gonogo_fills_itself_are_reserved(service: Service, name: str) -> None:
    response = await start(service, {"version": "1.0", "vars": {name: "5m"}})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["loc"][:3] == ["body", "vars", name]
    assert "filled by gonogo itself" in error["msg"]


@pytest.mark.parametrize("name", ["bad key", "1st", "a-b", "x" * 129, "", "ü"])
async def test_vars_names_are_placeholder_names(service: Service, name: str) -> None:
    response = await start(service, {"version": "1.0", "vars": {name: "x"}})
    assert response.status_code == 422, name
    assert response.json()["errors"][0]["loc"][:3] == ["body", "vars", name]


async def test_the_check_samples_with_its_own_values(service: Service) -> None:
    """(The bench's fake probes do not quote; the real types' quoting through the API is
    tested against a real Prometheus in tests/probes/test_quoting_prometheus_real.py.)"""
    check = (await start(service, {"version": "1.4.+", "environment": "prod"})).json()
    await service.samples_reach(check["id"], 1)
    asked = {c.query.query for c in service.probe("p").calls}
    assert 'errors{version=~"1.4.+", env="prod", ring="all"}' in asked
    body = await service.check(check["id"])
    assert body["decision"] == "no_go"
    assert any("${stage}" in r for r in body["reasons"])


# -- --var ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", REFUSED)
def test_var_options_follow_the_same_rule(value: str) -> None:
    with pytest.raises(VarError, match="bad --var ring"):
        parse_vars([f"ring={value}"])


@pytest.mark.parametrize("value", ACCEPTED)
def test_var_options_inside_the_rule_parse(value: str) -> None:
    assert parse_vars([f"ring={value}"]) == {"ring": value}


@pytest.mark.parametrize("name", ["window", "baseline_x"])
def test_var_options_cannot_set_reserved_names(name: str) -> None:
    with pytest.raises(VarError, match="filled by gonogo itself"):
        parse_vars([f"{name}=5m"])


def evaluate(tmp_path: Path, *args: str) -> Result:
    path = tmp_path / "rings.yaml"
    path.write_text(RINGS)
    cli = typer.Typer()
    gatefiles.register(cli)
    return CliRunner().invoke(cli, ["evaluate", str(path), *args])


def test_evaluate_refuses_a_var_its_gate_does_not_use(tmp_path: Path) -> None:
    result = evaluate(tmp_path, "--var", "team=web")
    assert result.exit_code == 3
    assert "bad --var team: ${team} is not used by gate 'rings'" in result.output
    assert "Traceback" not in result.output


def test_evaluate_refuses_a_value_outside_the_rule(tmp_path: Path) -> None:
    result = evaluate(tmp_path, "--var", "ring=a|b")
    assert result.exit_code == 3
    assert "'|' is not allowed" in result.output


def test_evaluate_takes_vars_its_gate_uses(tmp_path: Path) -> None:
    args = ["--var", "version=1.0", "--var", "environment=prod", "--var", "stage=canary"]
    result = evaluate(tmp_path, *args, "--json")
    assert result.exit_code == 0, result.output
