"""``gonogo demo`` end to end, as a newcomer runs it: go, then no_go, then rollback."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app.demo.service import bind_loopback
from tests.support import REPO, in_ci

GONOGO = Path(sys.executable).with_name("gonogo")


def free_port() -> int:
    sock = bind_loopback(0)
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


@contextlib.contextmanager
def demo_process(port: int) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [str(GONOGO), "demo", "--port", str(port), "--speed", "20"],
        cwd=REPO,
        env={**os.environ, "UV": "uv"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=3) as response:
        return json.loads(response.read())


def test_demo_goes_go_then_no_go_then_rollback() -> None:
    if importlib.util.find_spec("app.main") is None and not in_ci():
        pytest.skip("app/main.py (create_app) is not in this tree yet")
    port = free_port()
    wanted = ["go", "no_go", "rollback"]
    seen: list[str] = []
    with demo_process(port) as process:
        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{port}/api/v1/gates/checkout/decision"
        while seen != wanted:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"gonogo demo exited with {process.returncode}:\n{output}")
            if time.monotonic() > deadline:
                pytest.fail(f"saw {seen} within 60 s, wanted {wanted}")
            try:
                body = get_json(url)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                body = None  # still starting
            if isinstance(body, dict) and body["decision"] == wanted[len(seen)]:
                seen.append(body["decision"])
            time.sleep(0.2)  # poll interval; the deadline above bounds the loop
        status = get_json(f"http://127.0.0.1:{port}/status.json")
        assert isinstance(status, dict)
        assert [g["name"] for g in status["gates"]] == ["checkout"]
        assert process.stdout is not None
        process.terminate()
        announced = process.stdout.read()
    # Started by ``uv run`` (which sets UV), gonogo is not on the reader's PATH.
    assert f"uv run gonogo check --server http://127.0.0.1:{port}" in announced


def demo_cli() -> typer.Typer:
    """A command group holding just ``demo``, registered the way app/commands does it."""
    from app.cli import demo

    cli = typer.Typer()

    @cli.callback()
    def group() -> None:
        """gonogo"""

    demo.register(cli)
    return cli


def test_demo_rejects_a_bad_speed_naming_the_option() -> None:
    result = subprocess.run(
        [str(GONOGO), "demo", "--speed", "0"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3
    assert "--speed" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_reports_a_port_in_use_without_a_traceback() -> None:
    cli = demo_cli()
    taken = bind_loopback(0)
    try:
        result = CliRunner().invoke(cli, ["demo", "--port", str(taken.getsockname()[1])])
    finally:
        taken.close()
    assert result.exit_code == 3
    assert "cannot listen on 127.0.0.1" in result.output
    assert "Traceback" not in result.output
