"""Helpers shared by test folders: the repository root, and servers a test needs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_binary(name: str, *candidates: str) -> str:
    """Path of a server binary the test needs: skip locally when absent, fail in CI."""
    for candidate in (name, *candidates):
        found = shutil.which(candidate)
        if found:
            return found
    message = f"{name} is not installed (apt-get install {name})"
    if in_ci():
        pytest.fail(f"{message}; CI=true, so this must not be skipped")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def server_process(
    argv: list[str], *, ready_url: str, log_path: Path, deadline: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server binary on loopback until the block ends; wait until ``ready_url``
    answers 200 (a bounded readiness poll of a child process), fail with its log if not."""
    log = log_path.open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        give_up = time.monotonic() + deadline
        while True:
            if process.poll() is not None:
                pytest.fail(f"{argv[0]} exited early: {log_path.read_text()}")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > give_up:
                pytest.fail(f"{argv[0]} not ready within {deadline}s: {log_path.read_text()}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


@contextmanager
def real_prometheus(work: Path, target_url: str, *, scrape: str = "1s") -> Iterator[str]:
    """A real Prometheus (Debian ``prometheus``) scraping ``target_url`` every ``scrape``,
    on a free loopback port; yields its base URL once it is ready."""
    binary = require_binary("prometheus")
    config = work / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {scrape}, evaluation_interval: {scrape}}}\n"
        "scrape_configs:\n"
        "  - job_name: app\n"
        f"    static_configs: [{{targets: ['{target_url.removeprefix('http://')}']}}]\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with server_process(argv, ready_url=f"{url}/-/ready", log_path=work / "prometheus.log"):
        yield url
