"""Pieces for the adversarial ``gonogo serve`` runs: the server as a child process, and a
scriptable Prometheus query API whose every answer the test decides.

``ScriptedPrometheus`` answers ``GET /api/v1/query`` by the query's exact text: the test
sets a function from the number of the call (0, 1, ...) to an ``Answer`` (a value, NaN, an
error, or a value given late). Queries nobody scripted answer an empty vector (no data).
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.app.conftest import TOKENS, TOKENS_SETTING
from tests.fakes.server import ThreadedServer
from tests.support import free_port

GONOGO = str(Path(sys.executable).with_name("gonogo"))
STARTUP_SECONDS = 30.0
POLL_SECONDS = 0.1  # how often a bounded wait asks again; the deadline bounds the loop


@dataclass(frozen=True)
class Answer:
    value: float | None = None  # None: an error answer (HTTP 503)
    delay: float = 0.0  # seconds before answering


Script = Callable[[int], Answer]


def steady(value: float) -> Script:
    return lambda _call: Answer(value)


class ScriptedPrometheus:
    """A Prometheus instant-query API in a background thread, answering by query text."""

    def __init__(self) -> None:
        self._scripts: dict[str, Script] = {}
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadedServer | None = None
        self.url = ""

    def script(self, query: str, answers: Script) -> None:
        with self._lock:
            self._scripts[query] = answers
            self._calls[query] = 0

    def calls(self, query: str) -> int:
        with self._lock:
            return self._calls.get(query, 0)

    def _next(self, query: str) -> Answer | None:
        with self._lock:
            script = self._scripts.get(query)
            if script is None:
                return None
            call = self._calls[query]
            self._calls[query] = call + 1
        return script(call)

    async def _query(self, request: web.Request) -> web.Response:
        answer = self._next(request.query.get("query", ""))
        if answer is not None and answer.delay:
            await asyncio.sleep(answer.delay)  # the source is slow: that is the scenario
        if answer is not None and answer.value is None:
            body: dict[str, Any] = {
                "status": "error",
                "errorType": "unavailable",
                "error": "scripted outage",
            }
            return web.json_response(body, status=503)
        result: list[dict[str, Any]] = []
        if answer is not None:
            value = "NaN" if math.isnan(answer.value or 0.0) else repr(answer.value)
            result = [{"metric": {}, "value": [time.time(), value]}]
        data = {"resultType": "vector", "result": result}
        return web.json_response({"status": "success", "data": data})

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "UP"})

    @contextmanager
    def running(self) -> Iterator[ScriptedPrometheus]:
        app = web.Application()
        app.router.add_get("/api/v1/query", self._query)
        app.router.add_get("/health", self._health)
        with ThreadedServer(app) as server:
            self.url = server.url
            yield self


def wait_for(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    """The first true value of ``condition()``, asked until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds}s")
        time.sleep(POLL_SECONDS)


class Serve:
    """``gonogo serve`` as a child process on a free loopback port, with API tokens."""

    def __init__(self, gates_dir: Path, database_url: str, log: Path) -> None:
        self.gates_dir = gates_dir
        self.database_url = database_url
        self.log_path = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "GONOGO_TOKENS": TOKENS_SETTING, "GONOGO_LOG_FORMAT": "json"}
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [
                    GONOGO,
                    "serve",
                    "--port",
                    str(self.port),
                    "--gates-dir",
                    str(self.gates_dir),
                    "--database-url",
                    self.database_url,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"gonogo serve exited: {self.log()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, STARTUP_SECONDS, "gonogo serve ready")

    def log(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def signal(self, number: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)  # a test may have left it stopped
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def call(
        self, method: str, path: str, role: str = "admin", timeout: float = 10, **kw: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKENS[role]}", **kw.pop("headers", {})}
        return httpx.request(
            method, f"{self.url}/api/v1{path}", headers=headers, timeout=timeout, **kw
        )

    def get(self, path: str, role: str = "viewer") -> httpx.Response:
        """A GET outside ``/api/v1`` (the status page, ``/metrics``, ``/readyz``)."""
        headers = {"Authorization": f"Bearer {TOKENS[role]}"}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10)

    def decision(self, gate: str) -> dict[str, Any]:
        response = self.call("GET", f"/gates/{gate}/decision", "viewer")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def start_check(self, gate: str, **body: Any) -> dict[str, Any]:
        response = self.call("POST", f"/gates/{gate}/checks", "pipeline", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def check(self, check_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("GET", f"/checks/{check_id}", "viewer").json()
        return body

    def final(self, check_id: str, seconds: float) -> dict[str, Any]:
        """The check once final, waiting at most ``seconds``; fails if it is still running."""

        def done() -> dict[str, Any] | None:
            body = self.call(
                "GET", f"/checks/{check_id}", "viewer", params={"wait": 2}, timeout=10
            ).json()
            return body if body["state"] != "running" else None

        found: dict[str, Any] = wait_for(done, seconds, f"check {check_id} final")
        return found

    def events(self, check_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.call(
            "GET", f"/checks/{check_id}/events", "viewer"
        ).json()["items"]
        return items


@contextmanager
def serving(gates_dir: Path, database_url: str, log: Path) -> Iterator[Serve]:
    server = Serve(gates_dir, database_url, log)
    server.start()
    try:
        yield server
    finally:
        server.stop()
