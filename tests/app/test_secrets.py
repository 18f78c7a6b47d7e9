"""Secrets never leave the process: not in any response body, not in any log line.

A whole scenario runs with known API token secrets and a probe token taken from the
environment, against a fake Prometheus that echoes the credentials it received in its
error body; every response and every log line (structlog output) is then searched."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from app.core.clock import ManualClock
from app.core.logging import REDACTED, configure_logging, redactor
from app.core.settings import load_settings
from app.main import create_app
from tests.app.conftest import TOKENS, TOKENS_SETTING

PROBE_SECRET = "probe-token-7f3a9c1e5d"


class _EchoingPrometheus(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {
                "status": "error",
                "errorType": "bad_data",
                "error": f"rejected credentials {self.headers.get('Authorization')}",
            }
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def echoing_prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingPrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("json", stream=stream, level=logging.DEBUG)
    try:
        yield stream
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "_gonogo", False):
                root.removeHandler(handler)
        structlog.reset_defaults()


async def test_no_secret_in_any_response_or_log_line(
    database_url: str,
    tmp_path: Path,
    echoing_prometheus: str,
    captured_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GONOGO_PROBE_TEST_PROM_TOKEN", PROBE_SECRET)
    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "guarded.yaml").write_text(
        "interval: 5s\nsteady_for: 1\ntimeout: 20s\n"
        f"probes:\n  prom: {{type: prometheus, url: '{echoing_prometheus}',"
        " token_env: GONOGO_PROBE_TEST_PROM_TOKEN, retries: 0, timeout: 2}\n"
        "criteria:\n  - {name: errors, probe: prom, query: 'up', go: '< 1%'}\n"
    )
    clock = ManualClock()
    app = create_app(
        load_settings(database_url=database_url, gates_dir=gates, tokens=TOKENS_SETTING),
        clock=clock,
    )
    bodies: list[str] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def call(method: str, path: str, role: str | None, **kw: Any) -> httpx.Response:
                headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
                headers.update(kw.pop("headers", {}))
                response = await client.request(method, path, headers=headers, **kw)
                bodies.append(response.text)
                bodies.append(json.dumps(dict(response.headers)))
                return response

            created = await call(
                "POST", "/api/v1/gates/guarded/checks", "pipeline", json={"version": "1"}
            )
            check_id = created.json()["id"]

            async def sampled() -> bool:
                events = (await call("GET", f"/api/v1/checks/{check_id}/events", "viewer")).json()
                return any(e["kind"] == "sample" for e in events["items"])

            for _ in range(500):
                if await sampled():
                    break
            else:
                pytest.fail("the check was never sampled")
            check = (await call("GET", f"/api/v1/checks/{check_id}", "viewer")).json()
            assert check["criteria"][0]["outcome"] == "inconclusive"
            await call("GET", "/api/v1/gates", "viewer")
            await call("GET", "/api/v1/gates/guarded", "admin")
            await call("GET", "/api/v1/gates/guarded/decision", "viewer")
            await call("GET", "/api/v1/gates/guarded/samples", "viewer")
            await call("GET", "/api/v1/gates", None)
            await call(
                "GET",
                "/api/v1/gates",
                None,
                headers={"Authorization": f"Bearer {TOKENS['admin']}x"},
            )
            await call("PUT", "/api/v1/gates/leaky", "admin", content=f"token: {PROBE_SECRET}\n")
            await call(
                "PUT",
                "/api/v1/gates/leaky",
                "admin",
                content="probes:\n  p: {type: prometheus, url: 'http://127.0.0.1:1',"
                f" token: '{PROBE_SECRET}'}}\ncriteria: []\n",
            )
            await call(
                "POST",
                f"/api/v1/checks/{check_id}/decision",
                "admin",
                json={"decision": "no_go", "reason": "done"},
            )
            await call("GET", f"/api/v1/checks/{check_id}/events", "viewer")
            await call("GET", "/metrics", None)
            await call("GET", "/docs", None)
            await call("GET", "/openapi.json", None)
            structlog.get_logger("test").warning(
                "a careless line", header=f"Bearer {TOKENS['admin']}", probe_token=PROBE_SECRET
            )

    logs = captured_logs.getvalue()
    assert "careless line" in logs and REDACTED in logs  # the capture works
    secrets = [*TOKENS.values(), PROBE_SECRET]
    for secret in secrets:
        assert secret not in logs, f"a secret reached the logs: {secret[:4]}..."
        for body in bodies:
            assert secret not in body, f"a secret reached a response: {secret[:4]}..."


def test_the_redactor_replaces_secrets_anywhere_in_an_event() -> None:
    redactor.add(["s3cr3t-value-1"])
    event = {"event": "x s3cr3t-value-1 y", "nested": {"list": ["s3cr3t-value-1", 5]}}
    cleaned = redactor(None, "info", event)
    assert "s3cr3t-value-1" not in json.dumps(cleaned)
    assert cleaned["nested"]["list"][1] == 5
