"""``gonogo serve`` and ``gonogo check`` as real processes: a check survives SIGKILL and
restart with its deadline and sign-offs; ``gonogo check`` exits 0/1/2/3."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.conftest import TOKENS, TOKENS_SETTING

GONOGO = str(Path(sys.executable).with_name("gonogo"))
STARTUP_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gate(value: float, *, go: str = "> 0.5", rollback: str | None = None, **fields: Any) -> str:
    defaults = {"interval": "1s", "steady_for": 1, "vars": "{team: all}"}
    lines = [f"{k}: {v}" for k, v in {**defaults, **fields}.items()]
    # A check may set only placeholders the gate uses: ${team} is there for --var.
    criterion = f'  - {{name: ratio, probe: c, query: "team=${{team}}", go: "{go}"'
    criterion += f', rollback: "{rollback}"}}' if rollback else "}"
    return (
        "\n".join(
            [*lines, "probes:", f"  c: {{type: constant, value: {value}}}", "criteria:", criterion]
        )
        + "\n"
    )


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds}s")
        time.sleep(0.1)  # polling interval; the deadline bounds the loop


class Server:
    def __init__(self, gates_dir: Path, database: Path) -> None:
        self.gates_dir = gates_dir
        self.database = database
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {**os.environ, "GONOGO_TOKENS": TOKENS_SETTING, "GONOGO_LOG_FORMAT": "json"}
        self.process = subprocess.Popen(
            [
                GONOGO,
                "serve",
                "--port",
                str(self.port),
                "--gates-dir",
                str(self.gates_dir),
                "--database-url",
                f"sqlite+aiosqlite:///{self.database}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                output = self.process.stderr.read() if self.process.stderr else ""
                pytest.fail(f"gonogo serve exited: {output}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, STARTUP_SECONDS, "gonogo serve ready")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def call(self, method: str, path: str, role: str = "admin", **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"}
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=10, **kw)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_check_survives_sigkill_with_its_deadline_and_signoffs(tmp_path: Path) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "release.yaml").write_text(
        gate(1, timeout="120s")
        + "signoffs:\n  - {id: uat, role: approver}\n  - {id: cso, role: admin}\n"
    )
    server = Server(gates, tmp_path / "gonogo.db")
    with running(server):
        created = server.call("POST", "/gates/release/checks", "pipeline", json={"version": "9"})
        assert created.status_code == 201
        check = created.json()

        def samples() -> int:
            events = server.call("GET", f"/checks/{check['id']}/events").json()["items"]
            return sum(1 for e in events if e["kind"] == "sample")

        wait_until(lambda: samples() >= 1, 15, "first sample")
        signed = server.call(
            "POST", f"/checks/{check['id']}/signoffs", "approver", json={"signoff": "uat"}
        )
        assert signed.status_code == 201
        server.kill()

    before_restart = samples_seen = 0
    with running(server):
        resumed = server.call("GET", f"/checks/{check['id']}").json()
        assert resumed["state"] == "running"
        assert resumed["deadline"] == check["deadline"]
        assert [s["signoff"] for s in resumed["signoffs"]] == ["uat"]
        assert "missing sign-off: cso" in resumed["reasons"]
        before_restart = samples()
        wait_until(lambda: samples() > before_restart, 15, "sampling resumed")
        samples_seen = samples()
        last = server.call("POST", f"/checks/{check['id']}/signoffs", json={"signoff": "cso"})
        assert last.status_code == 201
        final = server.call("GET", f"/checks/{check['id']}", params={"wait": 30}).json()
        assert (final["state"], final["decision"]) == ("final", "go")
    assert samples_seen > before_restart


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli")
    gates = root / "gates"
    gates.mkdir()
    (gates / "healthy.yaml").write_text(gate(0.9))
    (gates / "flat.yaml").write_text(gate(0.3, timeout="3s"))
    (gates / "broken.yaml").write_text(gate(0.01, rollback="< 0.05", rollback_after=1))
    server = Server(gates, root / "gonogo.db")
    with running(server):
        yield server


def gonogo_check(
    server: Server, gate_name: str, *extra: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GONOGO_TOKEN": token or TOKENS["pipeline"]}
    return subprocess.run(
        [
            GONOGO,
            "check",
            "--server",
            server.url,
            "--gate",
            gate_name,
            "--version",
            "1.2.3",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("gate_name", "code", "decision"),
    [("healthy", 0, "go"), ("flat", 1, "no_go"), ("broken", 2, "rollback")],
)
def test_gonogo_check_exit_codes(
    cli_server: Server, gate_name: str, code: int, decision: str
) -> None:
    result = gonogo_check(cli_server, gate_name, "--environment", "prod", "--var", "team=web")
    assert result.returncode == code, result.stdout + result.stderr
    assert f"final: {decision}" in result.stdout
    assert "Traceback" not in result.stderr


def test_gonogo_check_errors_exit_3_with_one_line(cli_server: Server) -> None:
    unknown = gonogo_check(cli_server, "nope")
    assert unknown.returncode == 3
    assert "no gate named 'nope'" in unknown.stderr
    bad_token = gonogo_check(cli_server, "healthy", token="not-a-real-token")
    assert bad_token.returncode == 3
    assert "401" in bad_token.stderr
    assert "not-a-real-token" not in bad_token.stderr + bad_token.stdout
    nobody = subprocess.run(
        [
            GONOGO,
            "check",
            "--server",
            f"http://127.0.0.1:{free_port()}",
            "--gate",
            "healthy",
            "--version",
            "1",
            "--token",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nobody.returncode == 3
    assert "cannot reach the server" in nobody.stderr
    assert "Traceback" not in nobody.stderr


def test_sighup_reloads_the_gate_directory_and_a_bad_file_keeps_the_old_gates(
    tmp_path: Path,
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "first.yaml").write_text(gate(1.0))
    with running(Server(gates, tmp_path / "gonogo.db")) as server:
        assert server.process is not None

        def names() -> list[str]:
            return [g["name"] for g in server.call("GET", "/gates", "viewer").json()]

        (gates / "second.yaml").write_text(gate(1.0))
        server.process.send_signal(signal.SIGHUP)
        wait_until(lambda: names() == ["first", "second"], 10, "second gate loaded on SIGHUP")

        (gates / "third.yaml").write_text("criteria: [\n")
        (gates / "second.yaml").unlink()
        server.process.send_signal(signal.SIGHUP)
        line = log_line(server, "gate reload refused", seconds=10)
        assert "third.yaml:" in line
        assert names() == ["first", "second"]
        assert server.process.poll() is None


def log_line(server: Server, text: str, *, seconds: float) -> str:
    """The first line of the server's log (stderr) containing ``text``."""
    assert server.process is not None and server.process.stderr is not None
    stream = server.process.stderr
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([stream], [], [], left)
        if not ready:
            break
        line = stream.readline()
        if not line:
            break
        if text in line:
            return line
    pytest.fail(f"no log line with {text!r} within {seconds}s")


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--gate", "g", "--version", "1", "--no-such-flag"],
        ["check", "--server", "http://127.0.0.1:1", "--version", "1"],  # no --gate
        ["check", "--server", "http://127.0.0.1:1", "--gate", "g", "--version", "1", "--var", "x"],
        ["validate"],
    ],
    ids=["unknown flag", "missing option", "bad --var", "validate without a path"],
)
def test_a_usage_error_exits_3_never_2_which_is_rollback(args: list[str]) -> None:
    result = subprocess.run([GONOGO, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Usage: gonogo" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_invalid_gate_dir_with_one_line(tmp_path: Path) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "bad.yaml").write_text("criteria: [1\n")
    result = subprocess.run(
        [
            GONOGO,
            "serve",
            "--port",
            str(free_port()),
            "--gates-dir",
            str(gates),
            "--database-url",
            f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        ],
        env={**os.environ, "GONOGO_TOKENS": TOKENS_SETTING},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "bad.yaml:" in result.stderr
    assert "Traceback" not in result.stderr
    open_bind = subprocess.run(
        [GONOGO, "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env={**os.environ, "GONOGO_TOKENS": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert open_bind.returncode == 1
    assert "GONOGO_TOKENS" in open_bind.stderr


def test_migrate_builds_the_schema(tmp_path: Path) -> None:
    result = subprocess.run(
        [GONOGO, "migrate", "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m.db").stat().st_size > 0
