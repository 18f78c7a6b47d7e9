"""``gonogo check`` and ``gonogo checks`` against a real ``gonogo serve``: the whole check
life cycle from the command line, with its exit codes, idempotent retries in CI, JSON
output, and lines a CI log shows whole and uncoloured."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from app.cli import cli
from app.cli.commands import register_all
from tests.app.cli.test_processes import GONOGO, Server, gate, running
from tests.app.conftest import TOKENS

register_all(cli)
GITHUB_RUN = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/shop", "GITHUB_RUN_ID": "77"}
NOT_IN_CI = ("GITHUB_ACTIONS", "GITLAB_CI", "TF_BUILD", "JENKINS_URL", "BUILDKITE")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("checks-cli")
    gates = root / "gates"
    gates.mkdir()
    (gates / "healthy.yaml").write_text(gate(0.9))
    (gates / "flat.yaml").write_text(gate(0.3, timeout="3s"))
    (gates / "signed.yaml").write_text(
        gate(0.9, timeout="120s") + "signoffs:\n  - {id: uat, role: approver}\n"
    )
    with running(Server(gates, root / "gonogo.db")) as started:
        yield started


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_IN_CI)}
    return {**env, **extra}


def installed(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GONOGO, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )


def gonogo(server: Server, *args: str, role: str = "pipeline") -> typer.testing.Result:
    """A command in this process (Typer's runner), with ``GONOGO_SERVER``/``GONOGO_TOKEN``."""
    env = {"GONOGO_SERVER": server.url, "GONOGO_TOKEN": TOKENS[role]}
    return CliRunner().invoke(cli, list(args), env=env, terminal_width=80)


def checks_of(server: Server, gate_name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = server.call("GET", f"/checks?gate={gate_name}").json()["items"]
    return items


def start(server: Server, gate_name: str, version: str) -> str:
    created = server.call(
        "POST", f"/gates/{gate_name}/checks", "pipeline", json={"version": version}
    )
    assert created.status_code == 201, created.text
    check_id: str = created.json()["id"]
    return check_id


def test_a_retried_ci_job_attaches_to_its_check_and_a_rerun_starts_a_new_one(
    server: Server,
) -> None:
    args = ("check", "--gate", "healthy", "--version", "2.0.0", "--stage", "canary")
    env = clean_env(
        GONOGO_SERVER=server.url,
        GONOGO_TOKEN=TOKENS["pipeline"],
        **GITHUB_RUN,
        GITHUB_RUN_ATTEMPT="1",
    )
    before = len(checks_of(server, "healthy"))

    first = installed(*args, env=env)
    retried = installed(*args, env=env)
    rerun = installed(*args, env={**env, "GITHUB_RUN_ATTEMPT": "2"})

    for result in (first, retried, rerun):
        assert result.returncode == 0, result.stdout + result.stderr
        assert "final: go" in result.stdout
    ids = [re.search(r"check (\w+)", r.stdout).group(1) for r in (first, retried, rerun)]  # type: ignore[union-attr]
    assert ids[0] == ids[1] != ids[2]
    assert "started earlier with idempotency key" in retried.stdout
    assert "run=77:attempt=1:gate=healthy:stage=canary" in first.stdout
    assert len(checks_of(server, "healthy")) == before + 2


def test_json_prints_only_the_final_body_and_keeps_the_exit_code(server: Server) -> None:
    env = clean_env(GONOGO_SERVER=server.url, GONOGO_TOKEN=TOKENS["pipeline"])
    result = installed("check", "--gate", "flat", "--version", "3.1.4", "--json", env=env)
    assert result.returncode == 1, result.stderr
    body = json.loads(result.stdout)  # nothing else on stdout
    assert (body["state"], body["decision"], body["version"]) == ("final", "no_go", "3.1.4")
    assert "final: no_go" in result.stderr


@pytest.mark.parametrize(
    "colour",
    [{}, {"FORCE_COLOR": "1", "TERM": "xterm-256color"}],  # a CI runner that asks for colour
    ids=["plain log", "forced colour"],
)
def test_lines_are_whole_and_a_version_is_not_coloured_in_a_ci_log(
    server: Server, colour: dict[str, str]
) -> None:
    version = "1.4.3"
    env = clean_env(
        GONOGO_SERVER=server.url, GONOGO_TOKEN=TOKENS["pipeline"], COLUMNS="80", **colour
    )
    result = installed(
        "check",
        "--gate",
        "healthy",
        "--version",
        version,
        "--environment",
        "production-eu-west-1",
        "--idempotency-key",
        f"release-1.4.3-production-eu-west-1-{len(colour)}-" + "k" * 40,  # a check each
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("check ") and first.endswith("k)"), result.stdout
    assert len(first) > 80
    assert f"version {version} " in first
    assert not re.search(r"\x1b\[[0-9;]*m[^\x1b]*1\.4\.3", result.stdout), repr(result.stdout)


def test_the_life_cycle_from_the_command_line(server: Server) -> None:
    signed = start(server, "signed", "5.0.0")

    listed = gonogo(server, "checks", "list", "--gate", "signed", "--state", "running", "--json")
    assert listed.exit_code == 0, listed.output
    assert signed in [c["id"] for c in json.loads(listed.stdout)["items"]]
    table = gonogo(server, "checks", "list", "--gate", "signed")
    assert table.exit_code == 0 and signed in table.stdout

    shown = gonogo(server, "checks", "show", signed)
    assert shown.exit_code == 0, shown.output
    assert f"check {signed} on gate signed for version 5.0.0: running" in shown.stdout
    assert "missing sign-off: uat" in shown.stdout

    refused = gonogo(server, "checks", "signoff", signed, "uat", role="viewer")
    assert refused.exit_code == 3
    assert "403" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    ok = gonogo(
        server, "checks", "signoff", signed, "uat", "--comment", "UAT passed", role="approver"
    )
    assert ok.exit_code == 0, ok.output
    assert "signed off uat" in ok.stdout
    attached = gonogo(server, "checks", "attach", signed, "--json")
    assert attached.exit_code == 0, attached.output
    final = json.loads(attached.stdout)
    assert (final["decision"], final["signoffs"][0]["comment"]) == ("go", "UAT passed")

    rolled = start(server, "signed", "5.0.1")
    decided = gonogo(
        server,
        "checks",
        "decide",
        rolled,
        "--decision",
        "rollback",
        "--reason",
        "bad canary",
        role="approver",
    )
    assert decided.exit_code == 0, decided.output
    assert gonogo(server, "checks", "attach", rolled).exit_code == 2

    cancelled = start(server, "signed", "5.0.2")
    stopped = gonogo(server, "checks", "cancel", cancelled, "--reason", "superseded")
    assert stopped.exit_code == 0, stopped.output
    assert gonogo(server, "checks", "attach", cancelled).exit_code == 3
    again = gonogo(server, "checks", "cancel", cancelled)
    assert again.exit_code == 3 and "409" in again.stderr


def test_server_and_auth_errors_are_one_line_and_exit_3(server: Server) -> None:
    missing = gonogo(server, "checks", "show", "no-such-check")
    assert missing.exit_code == 3
    assert "404" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    odd = gonogo(server, "checks", "show", "../gates")
    assert odd.exit_code == 3 and "404" in odd.stderr

    env = {"GONOGO_SERVER": server.url, "GONOGO_TOKEN": "wrong-token-9876"}
    unauthorised = CliRunner().invoke(cli, ["checks", "list"], env=env)
    assert unauthorised.exit_code == 3
    assert "401" in unauthorised.stderr
    assert "wrong-token-9876" not in unauthorised.output + unauthorised.stderr

    nobody = CliRunner().invoke(
        cli, ["checks", "list", "--server", "http://127.0.0.1:1", "--token", "t"]
    )
    assert nobody.exit_code == 3
    assert "cannot reach the server" in nobody.stderr
    assert nobody.exception is None or isinstance(nobody.exception, SystemExit)


def test_serve_exits_1_on_a_taken_port_before_it_says_it_started(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = installed(
            "serve",
            "--port",
            str(port),
            "--database-url",
            f"sqlite+aiosqlite:///{tmp_path / 's.db'}",
            env=clean_env(GONOGO_TOKENS="", GONOGO_LOG_FORMAT="json"),
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "started" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_a_bad_integrations_file_exits_1_naming_file_and_line(tmp_path: Path) -> None:
    doors = tmp_path / "integrations.yaml"
    doors.write_text("github:\n  app_id: 1\n  colour: blue\n")
    result = installed(
        "serve",
        "--port",
        "0",
        "--database-url",
        f"sqlite+aiosqlite:///{tmp_path / 's.db'}",
        env=clean_env(GONOGO_TOKENS="", GONOGO_INTEGRATIONS_FILE=str(doors)),
    )
    assert result.returncode == 1, result.stderr
    assert f"{doors}:3" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "started" not in result.stdout + result.stderr


def test_a_key_reused_for_another_release_is_refused_with_a_hint(server: Server) -> None:
    env = {
        "GONOGO_SERVER": server.url,
        "GONOGO_TOKEN": TOKENS["pipeline"],
        **GITHUB_RUN,
        "GITHUB_RUN_ID": "78",
        "GITHUB_RUN_ATTEMPT": "1",
    }
    args = ["check", "--gate", "healthy", "--stage", "matrix", "--version"]
    first = CliRunner().invoke(cli, [*args, "7.0.0"], env=env)
    assert first.exit_code == 0, first.output
    other = CliRunner().invoke(cli, [*args, "7.0.1"], env=env)
    assert other.exit_code == 3
    assert "409" in other.stderr and "pass --idempotency-key" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
