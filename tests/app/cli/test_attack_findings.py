"""Defects the attack on a real server (``test_serve_attack.py``) found, each pinned by a
fast in-process test of its class."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from app.core.settings import load_settings
from app.main import create_app
from gates.loader import check_gate_text
from tests.app.conftest import TOKENS, TOKENS_SETTING, Service
from tests.app.test_secrets import captured_logs as captured_logs  # the fixture


@pytest.mark.parametrize(
    ("method", "path"), [("PUT", "/api/v1/gates/slow"), ("POST", "/api/v1/gates/portal/checks")]
)
async def test_a_caller_hanging_up_mid_body_is_no_server_fault(
    database_url: str,
    gates_dir: Path,
    captured_logs: io.StringIO,
    method: str,
    path: str,
) -> None:
    """Found by the attack: a slow body whose sender hung up was an "unhandled error"
    with a traceback in the log, and a 500 answer."""
    app = create_app(
        load_settings(database_url=database_url, gates_dir=gates_dir, tokens=TOKENS_SETTING)
    )
    incoming = [
        {
            "type": "http.request",
            "body": b'{"version": "1", "metadata": {"a": "',
            "more_body": True,
        },
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"t"),
            (b"authorization", f"Bearer {TOKENS['admin']}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"100000"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert all(status < 500 for status in statuses), statuses
    logs = captured_logs.getvalue()
    assert "Traceback" not in logs and "unhandled error" not in logs, logs[-2000:]


NON_FINITE = [
    # a probe type's own setting (this one is a plugin's: gonogo cannot type it strictly)
    ("probes:\n  c: {type: constant, value: 1e999}\n", ("probes", "c", "value")),
    ("probes:\n  c: {type: constant, value: .inf}\n", ("probes", "c", "value")),
    ("probes:\n  c: {type: constant, value: -.inf}\n", ("probes", "c", "value")),
    ("probes:\n  c: {type: constant, value: .nan}\n", ("probes", "c", "value")),
    ("probes:\n  c: {type: constant, value: '-1e999'}\n", ("probes", "c", "value")),
]
CRITERIA = "criteria:\n  - {name: ratio, probe: c, go: '> 0.5'}\n"


@pytest.mark.parametrize(("text", "where"), NON_FINITE)
def test_a_gate_holding_infinity_or_nan_anywhere_is_a_located_error(
    text: str, where: tuple[str, ...]
) -> None:
    checked = check_gate_text(text + CRITERIA, name="g", source="g.yaml")
    assert checked.gate is None
    [problem] = checked.problems
    assert problem.loc == where
    assert problem.line == 2
    assert "not a finite number" in problem.message


@pytest.mark.parametrize(
    "body",
    [
        "probes:\n  c: {type: constant, value: 1e999}\n" + CRITERIA,
        '{"probes": {"c": {"type": "constant", "value": 1e999}},'
        ' "criteria": [{"name": "ratio", "probe": "c", "go": "> 0.5"}]}',
        '{"probes": {"c": {"type": "constant", "value": "Infinity"}},'
        ' "criteria": [{"name": "ratio", "probe": "c", "go": "> 0.5"}]}',
        '{"probes": {"c": {"type": "constant", "value": "NaN"}},'
        ' "criteria": [{"name": "ratio", "probe": "c", "go": "> 0.5"}]}',
    ],
    ids=["yaml", "json-overflow", "json-infinity", "json-nan"],
)
async def test_putting_a_gate_with_a_non_finite_number_is_a_422_not_a_500(
    service: Service, body: str
) -> None:
    """Found by the attack: the gate was accepted, then showing it back (the PUT's own
    answer, and every later GET) was a 500, and uvicorn dropped the connection."""
    put = await service.client.put(
        "/api/v1/gates/infinite", headers=service.headers("admin"), content=body
    )
    assert put.status_code == 422, put.text
    assert put.headers["content-type"].startswith("application/problem+json")
    assert "probes.c.value" in put.text or '"value"' in put.text
    got = await service.get("/api/v1/gates/infinite")
    assert got.status_code == 404
    listing = await service.get("/api/v1/gates")
    assert listing.status_code == 200


BAD_URLS = [
    "http://[::1",  # an unclosed IPv6 literal
    "http://127.0.0.1:99999/",  # a port out of range
    "http://127.0.0.1:0/",
    "http://127.0.0.1:1/a\\0b",  # NUL (YAML escape)
    "http://127.0.0.1:1/a b",
    "http://127.0.0.1:1/\\r\\nX-Injected: 1",
    "http:///no-host",
]


@pytest.mark.parametrize("probe_type", ["http", "prometheus", "json"])
@pytest.mark.parametrize("url", BAD_URLS)
def test_a_probe_url_no_request_could_use_is_a_located_error(probe_type: str, url: str) -> None:
    """Found by the attack: these were accepted, and every sample then failed."""
    criterion = {
        "http": "{name: c, probe: p, metric: up, go: '> 0'}",
        "prometheus": "{name: c, probe: p, query: up, go: '> 0'}",
        "json": "{name: c, probe: p, path: a, go: '> 0'}",
    }[probe_type]
    text = f'probes:\n  p: {{type: {probe_type}, url: "{url}"}}\ncriteria:\n  - {criterion}\n'
    checked = check_gate_text(text, name="g", source="g.yaml")
    assert checked.gate is None, url
    [problem] = checked.problems
    assert problem.loc[:2] == ("probes", "p") and problem.line == 2
    assert "URL" in problem.message or "pattern" in problem.message  # whitespace: the pattern


@pytest.mark.parametrize(
    "headers",
    ['{"X\\0": v}', '{"X Y": v}', '{"": v}', '{X: "a\\r\\nInjected: 1"}', '{X: "a\\0b"}'],
)
def test_an_http_probe_header_no_client_could_send_is_a_located_error(headers: str) -> None:
    text = (
        f"probes:\n  p: {{type: http, url: 'http://127.0.0.1:1/', headers: {headers}}}\n"
        "criteria:\n  - {name: c, probe: p, metric: up, go: '> 0'}\n"
    )
    checked = check_gate_text(text, name="g", source="g.yaml")
    assert checked.gate is None
    [problem] = checked.problems
    assert problem.loc[:3] == ("probes", "p", "headers") and problem.line == 2
    assert "header" in problem.message


def test_ordinary_urls_and_headers_still_load() -> None:
    for url in ("http://127.0.0.1:9090", "https://[::1]:8443/api?x=%20y", "http://prom/"):
        text = (
            f"probes:\n  p: {{type: http, url: '{url}', headers: {{X-Scope-OrgID: 't 1'}}}}\n"
            "criteria:\n  - {name: c, probe: p, metric: up, go: '> 0'}\n"
        )
        checked = check_gate_text(text, name="g", source="g.yaml")
        assert checked.problems == [], url


def test_whitespace_around_a_header_value_is_dropped_not_refused() -> None:
    # A YAML block scalar ends in a newline; HTTP does not count surrounding whitespace.
    text = (
        "probes:\n  p:\n    type: http\n    url: 'http://127.0.0.1:1/'\n"
        "    headers:\n      X-Tenant: |\n        t1\n"
        "criteria:\n  - {name: c, probe: p, metric: up, go: '> 0'}\n"
    )
    checked = check_gate_text(text, name="g", source="g.yaml")
    assert checked.problems == []
    assert checked.gate is not None
    assert checked.gate.probes["p"].headers == {"X-Tenant": "t1"}  # type: ignore[attr-defined]
