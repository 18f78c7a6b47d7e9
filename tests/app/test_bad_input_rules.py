"""The rules at the edge, each tested as a class: the environment allow-list (API, files,
``gonogo validate``), authentication before any body, bounds on every number and instant
a request carries, bounded check metadata, and nested gate definitions."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from app.cli import gatefiles
from app.core.clock import ManualClock
from app.gates.catalog import GateDirInvalid
from tests.app.conftest import TOKENS, Service, open_service
from tests.app.fakes import ProbeBench

GONOGO = str(Path(sys.executable).with_name("gonogo"))


def env_gate(token_env: str, secret_env: str = "GONOGO_NOTIFY_HOOK") -> str:
    return (
        "probes:\n"
        f"  prom: {{type: prometheus, url: 'http://127.0.0.1:9', token_env: {token_env}}}\n"
        "criteria:\n  - {name: up, probe: prom, query: up, go: '> 0'}\n"
        f"notify:\n  - {{url: 'http://127.0.0.1:9/hook', secret_env: {secret_env}}}\n"
    )


async def put(service: Service, name: str, text: str) -> httpx.Response:
    return await service.client.put(
        f"/api/v1/gates/{name}", content=text, headers=service.headers("admin")
    )


# -- the environment allow-list ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("token_env", "secret_env", "refused"),
    [
        ("GONOGO_TOKENS", "GONOGO_NOTIFY_HOOK", "probes.prom.token_env"),
        ("GONOGO_DATABASE_URL", "GONOGO_NOTIFY_HOOK", "probes.prom.token_env"),
        ("gonogo_tokens", "GONOGO_NOTIFY_HOOK", "probes.prom.token_env"),
        ("GONOGO_PROBE_X", "GONOGO_TOKENS", "notify.0.secret_env"),
        ("GONOGO_PROBE_X", "GONOGO_SAMPLE_RETENTION", "notify.0.secret_env"),
        ("PROM_TOKEN", "GONOGO_NOTIFY_HOOK", "probes.prom.token_env"),
        ("HOME", "GONOGO_NOTIFY_HOOK", "probes.prom.token_env"),
    ],
)
async def test_an_api_gate_naming_a_variable_it_may_not_read_is_a_422(
    service: Service, token_env: str, secret_env: str, refused: str
) -> None:
    response = await put(service, "leaky", env_gate(token_env, secret_env))
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert ".".join(str(p) for p in error["loc"]) == f"body.{refused}"
    assert "GONOGO_ENV_ALLOW" in error["msg"] or "gonogo's own settings" in error["msg"]
    assert (await service.get("/api/v1/gates/leaky")).status_code == 404


async def test_allowed_names_are_accepted(service: Service) -> None:
    response = await put(service, "tidy", env_gate("GONOGO_PROBE_PROM_TOKEN"))
    assert response.status_code == 201, response.text


@pytest.fixture
async def permissive(
    database_url: str, gates_dir: Path, clock: ManualClock, bench: ProbeBench
) -> AsyncIterator[Service]:
    """A service whose operator allows every variable (``GONOGO_ENV_ALLOW=*``)."""
    app, lifespan = await open_service(database_url, gates_dir, clock, bench, env_allow="*,PROM_*")
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gonogo.test") as client:
            yield Service(app, client, clock, bench, database_url)
    finally:
        await lifespan.__aexit__(None, None, None)


async def test_the_operators_list_widens_the_names_but_never_to_a_setting(
    permissive: Service,
) -> None:
    assert (await put(permissive, "a", env_gate("PROM_TOKEN", "ANY_THING"))).status_code == 201
    for name in ("GONOGO_TOKENS", "GONOGO_DATABASE_URL", "GONOGO_ENV_ALLOW", "GONOGO_HOST"):
        response = await put(permissive, "b", env_gate(name))
        assert response.status_code == 422
        assert "gonogo's own settings" in response.json()["errors"][0]["msg"]


async def test_a_gate_file_naming_a_setting_stops_start_up(
    database_url: str, tmp_path: Path, clock: ManualClock, bench: ProbeBench
) -> None:
    directory = tmp_path / "gates"
    directory.mkdir()
    (directory / "leaky.yaml").write_text(env_gate("GONOGO_TOKENS"))
    with pytest.raises(
        GateDirInvalid, match=r"leaky.yaml:2:\d+: probes.prom.token_env: GONOGO_TOKENS is one of"
    ):
        await open_service(database_url, directory, clock, bench)


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    gatefiles.register(app)
    return app


def test_gonogo_validate_applies_the_allow_list_from_the_environment(
    cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = tmp_path / "g.yaml"
    gate.write_text(env_gate("PROM_TOKEN"))
    refused = CliRunner().invoke(cli, ["validate", str(gate)])
    assert refused.exit_code == 1
    assert f"{gate}:2:" in refused.stdout
    assert "PROM_TOKEN is not allowed by GONOGO_ENV_ALLOW" in refused.stdout
    monkeypatch.setenv("GONOGO_ENV_ALLOW", "PROM_*,GONOGO_NOTIFY_*")
    assert CliRunner().invoke(cli, ["validate", str(gate)]).exit_code == 0
    gate.write_text(env_gate("GONOGO_TOKENS"))
    still = CliRunner().invoke(cli, ["validate", str(gate)])
    assert still.exit_code == 1
    assert "GONOGO_TOKENS is one of gonogo's own settings" in still.stdout
    monkeypatch.setenv("GONOGO_ENV_ALLOW", "PROM TOKEN")
    bad = CliRunner().invoke(cli, ["validate", str(gate)])
    assert bad.exit_code == 1
    assert "GONOGO_ENV_ALLOW" in bad.stderr


# -- nesting: located problems, never a traceback --------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["[" * 50_000 + "]" * 50_000, '{"a": ' * 5_000 + "1" + "}" * 5_000],
    ids=["YAML", "JSON"],
)
async def test_a_gate_nested_thousands_deep_is_a_located_422(service: Service, text: str) -> None:
    response = await put(service, "deep", text)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["msg"].startswith("line 1, column ")
    assert "nested too deeply: deeper than 64 levels" in error["msg"]


def test_gonogo_validate_locates_a_deep_file_without_a_traceback(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 50_000 + "]" * 50_000)
    merged = tmp_path / "merged.yaml"
    chain = ["a0: &a0 {x: 1}"]
    chain += [f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}]}}" for i in range(1, 40)]
    merged.write_text("\n".join(chain) + "\n")
    result = subprocess.run(
        [GONOGO, "validate", str(deep), str(merged)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert f"{deep}:1:65: nested too deeply: deeper than 64 levels" in result.stdout
    assert f"{merged}:1:1: a0: unknown key 'a0'" in result.stdout


# -- authentication before the body ----------------------------------------------------------


# GitHub and GitLab sign their webhooks (an HMAC, a secret token) instead of sending a
# gonogo token; their doors check that before reading the body.
FORGE_DOORS = ("/integrations/github", "/integrations/gitlab")


async def body_routes(service: Service) -> list[tuple[str, str]]:
    """Every operation that takes a body, found from the app's own OpenAPI schema."""
    schema = (await service.client.get("/openapi.json")).json()
    found = []
    for path, operations in schema["paths"].items():
        for method in operations:
            if method in ("post", "put", "patch"):
                concrete = path.replace("{check_id}", "0" * 32).replace("{gate}", "portal")
                found.append((method.upper(), concrete))
    return found


async def test_every_body_route_answers_401_before_judging_a_malformed_body(
    service: Service,
) -> None:
    routes = await body_routes(service)
    assert len(routes) >= 7
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong-secret-000000"}):
            response = await service.client.request(
                method,
                path,
                content=b'{"version": ',
                headers={**headers, "Content-Type": "application/json"},
            )
            assert response.status_code == 401, (method, path, response.text)
            assert "body" not in response.text


async def test_a_token_without_the_role_gets_403_before_its_body_is_judged(
    service: Service,
) -> None:
    for method, path in await body_routes(service):
        if "flagger" in path:
            continue  # any role may ask Flagger's question
        if path.endswith("/replay"):
            continue  # a viewer may replay a gate (tests/app/gates/test_replay_api.py)
        if path.endswith(FORGE_DOORS):
            continue  # no bearer token: the forge's signature (tests/app/integrations)
        response = await service.client.request(
            method,
            path,
            content=b"\xff{",
            headers={**service.headers("viewer"), "Content-Type": "application/json"},
        )
        assert response.status_code == 403, (method, path, response.text)


async def test_flagger_reads_the_token_from_the_body_then_validates_it(service: Service) -> None:
    path = "/api/v1/integrations/flagger/portal"
    token = {"token": TOKENS["pipeline"]}
    no_token = await service.client.post(path, json={"name": "c", "namespace": "n"})
    assert no_token.status_code == 401
    in_body = await service.client.post(
        path, json={"name": "c", "namespace": "n", "metadata": token}
    )
    assert in_body.status_code == 422  # the caller is known, so the body is judged
    assert in_body.json().get("title") != "Unauthorized"
    invalid = await service.client.post(path, json={"namespace": 1, "metadata": token})
    assert invalid.status_code == 422
    assert {tuple(e["loc"]) for e in invalid.json()["errors"]} == {
        ("body", "name"),
        ("body", "namespace"),
        ("body", "checksum"),
    }
    header = await service.client.post(
        path, content=b"{not json", headers=service.headers("pipeline")
    )
    assert header.status_code == 422


# -- numbers and instants at the edge --------------------------------------------------------


def edge_parameters(service_schema: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Every integer, number and date-time query parameter of every operation."""
    found = []
    for path, operations in service_schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                kinds = {schema.get("type"), schema.get("format")}
                kinds |= {s.get("type") for s in schema.get("anyOf", [])}
                kinds |= {s.get("format") for s in schema.get("anyOf", [])}
                for kind in ("integer", "number", "date-time"):
                    if kind in kinds and parameter["in"] == "query":
                        found.append((method.upper(), path, parameter["name"], kind))
    return found


OUT_OF_RANGE = {
    "integer": [str(2**64), str(2**63), "-" + str(2**64), "1" * 40],
    "number": [str(2**64), "1e400", "nan", "-inf"],
    "date-time": [
        "99999999999999999999",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "1" * 40,
    ],
}


async def test_every_number_and_instant_a_request_carries_is_bounded(service: Service) -> None:
    check = await service.start_check()
    schema = (await service.client.get("/openapi.json")).json()
    parameters = edge_parameters(schema)
    names = {name for _, _, name, _ in parameters}
    assert {"limit", "after", "since", "wait"} <= names
    for method, path, name, kind in parameters:
        url = path.replace("{check_id}", check["id"]).replace("{gate}", "portal")
        for value in OUT_OF_RANGE[kind]:
            response = await service.client.request(
                method, url, params={name: value}, headers=service.headers("viewer")
            )
            assert response.status_code == 422, (method, path, name, value, response.text)
            assert name in json.dumps(response.json()["errors"]), response.text


@pytest.mark.parametrize("cursor", [str(2**64), "9223372036854775808", "²", "１２", "-1", "1 "])
async def test_a_cursor_that_names_no_row_is_a_422(service: Service, cursor: str) -> None:
    response = await service.get("/api/v1/gates/portal/samples", params={"cursor": cursor})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]


async def test_the_largest_ids_are_still_answered(service: Service) -> None:
    check = await service.start_check()
    largest = str(2**63 - 1)
    samples = await service.get("/api/v1/gates/portal/samples", params={"cursor": largest})
    assert samples.status_code == 200
    events = await service.get(f"/api/v1/checks/{check['id']}/events", params={"after": largest})
    assert (events.status_code, events.json()["items"]) == (200, [])


# -- check metadata ----------------------------------------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


async def test_metadata_nested_255_deep_is_a_422_and_every_read_still_works(
    service: Service,
) -> None:
    response = await service.post(
        "/api/v1/gates/portal/checks", "pipeline", json={"version": "1", "metadata": nested(255)}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "metadata"]
    assert "nested deeper than 8 levels" in response.json()["errors"][0]["msg"]
    deepest = await service.start_check(metadata=nested(8))
    assert (await service.check(deepest["id"]))["metadata"] == nested(8)
    assert (await service.get("/api/v1/checks")).status_code == 200


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=60,
)


@given(metadata=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_metadata_is_either_refused_or_stored_and_read_back(metadata: dict[str, Any]) -> None:
    """Any JSON metadata: a 422 naming the field, or a check whose every read works."""
    from app.checks.schemas import CheckRequest

    try:
        request = CheckRequest.model_validate({"version": "1", "metadata": metadata})
    except ValueError as refused:
        assert "metadata" in str(refused)
        return
    text = json.dumps(request.metadata, allow_nan=False)
    assert "\\u0000" not in text
    assert len(text.encode()) <= 16 * 1024
    assert json.loads(text) == request.metadata
