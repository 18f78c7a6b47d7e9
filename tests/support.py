"""Helpers shared by test folders: the repository root, and servers a test needs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
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


# How long a real Prometheus may take to have a rate() for every served series.
RATES_DEADLINE = 30.0


@contextmanager
def prometheus_scraping_requests(
    work: Path, traffic: Mapping[tuple[str, str], float]
) -> Iterator[str]:
    """A real Prometheus scraping a target that serves ``http_requests_total`` growing at
    ``traffic[(version, code)]`` requests per second; yields its URL once ``rate()`` has a
    value for every series (two scrapes each)."""
    from aiohttp import web

    from tests.fakes.server import ThreadedServer

    started = time.time()

    async def metrics(_: web.Request) -> web.Response:
        elapsed = time.time() - started
        lines = ["# TYPE http_requests_total counter"]
        for (version, code), per_second in traffic.items():
            lines.append(
                f'http_requests_total{{version="{version}",code="{code}"}}'
                f" {per_second * elapsed:.3f}"
            )
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    with ThreadedServer(app) as target, real_prometheus(work, target.url) as url:
        _wait_for_rates(url, len(traffic))
        yield url


def _wait_for_rates(url: str, series: int) -> None:
    deadline = time.monotonic() + RATES_DEADLINE
    query = "count(rate(http_requests_total[5m]))"
    while True:
        try:
            answer = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=1)
            result = answer.json()["data"]["result"] if answer.status_code == 200 else []
            if result and float(result[0]["value"][1]) == series:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"prometheus had no rates within {RATES_DEADLINE}s")
        time.sleep(0.2)  # bounded poll of a child process until its second scrape
