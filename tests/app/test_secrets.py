"""Secrets never leave the process: not in any response body, not in any log line.

A whole scenario runs with known API token secrets and a probe token taken from the
environment, against a fake Prometheus that echoes the credentials it received in its
error body; every response and every log line (structlog output) is then searched."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import structlog
import yaml

from app.core.clock import ManualClock
from app.core.logging import REDACTED, configure_logging, redactor
from app.core.settings import load_settings
from app.gates.catalog import GateCatalog
from app.main import create_app
from tests.app.conftest import TOKENS, TOKENS_SETTING, Service
from tests.app.fakes import ProbeBench
from tests.conftest import T0
from tests.fakes import Reply, ScriptedFake
from tests.fakes.alertmanager import AlertmanagerFake
from tests.fakes.datadog import DatadogFake
from tests.fakes.datadog import series as dd_series
from tests.fakes.health import HealthFake
from tests.fakes.jsonapi import JsonApiFake
from tests.fakes.newrelic import NewRelicFake
from tests.fakes.prometheus import PrometheusFake
from tests.fakes.sentry import SentryFake

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


# -- the secret-echo matrix -------------------------------------------------------------------
#
# Every built-in probe type, against its fake, where the source (or a proxy in front of
# it) puts the credential it received into every text its wire format carries, in 2xx
# answers and in errors, raw, percent-encoded and as the header it was sent in. The whole
# service runs (real probes, scheduler, a check, notifications to a local receiver) and
# the credential must show up nowhere a human or a machine can read.

ECHO_SECRETS = {
    "GONOGO_PROBE_ECHO_PROM_PASSWORD": "prom-pass/+=&7f3a9c1e5d",
    "GONOGO_PROBE_ECHO_DD_API": "ddapi0123456789abcdef01",
    "GONOGO_PROBE_ECHO_DD_APP": "ddapp9876543210fedcba98",
    "GONOGO_PROBE_ECHO_NR": "NRAK-ECHO0123456789ABCDEF",
    "GONOGO_PROBE_ECHO_SENTRY": "sntrys_echo_0123456789abcdef",
    "GONOGO_PROBE_ECHO_AM": "am-token-0123456789abcdef",
    "GONOGO_PROBE_ECHO_JSON": "json-token-0123456789abcd",
    "GONOGO_PROBE_ECHO_HTTP": "http-token-0123456789abcd",
}
PROM_USER = "echo-user"
MARK = "echo-mark"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _bearer(var: str) -> str:
    return f"Bearer {ECHO_SECRETS[var]}"


def _forms(secret: str, header: str) -> list[str]:
    """How a source may echo a credential: as it is, percent-encoded, as the header."""
    return [secret, quote(secret, safe=""), header]


def _vector(value: str = "0.5", **extra: Any) -> dict[str, Any]:
    data = {"resultType": "vector", "result": [{"metric": {}, "value": [1767436620, value]}]}
    return {"status": "success", "data": data, **extra}


def _prom_echoes() -> list[Reply]:
    password = ECHO_SECRETS["GONOGO_PROBE_ECHO_PROM_PASSWORD"]
    replies: list[Reply] = []
    for form in _forms(password, _basic(PROM_USER, password)):
        text = f"{MARK} {form}"
        replies += [
            Reply(json={"status": "error", "errorType": "bad_data", "error": text}),  # a 200
            Reply(json=_vector(text)),
            Reply(json={"status": "success", "data": {"resultType": text, "result": []}}),
            Reply(json=_vector(warnings=[text])),
            Reply(json=_vector(infos=[text], warnings=["partial"])),
            Reply(json={**_vector(), "status": text}),
            Reply(json=_vector(), headers={"X-Echo": form}),
            Reply(body=f"<html><body>{text}</body></html>".encode(), content_type="text/html"),
            Reply(status=400, json={"status": "error", "errorType": "bad_data", "error": text}),
            Reply(status=503, body=f"<html>{text}</html>".encode(), content_type="text/html"),
        ]
    return replies


def _dd_echoes() -> list[Reply]:
    replies: list[Reply] = []
    for var, header in (
        ("GONOGO_PROBE_ECHO_DD_API", "DD-API-KEY"),
        ("GONOGO_PROBE_ECHO_DD_APP", "x"),
    ):
        secret = ECHO_SECRETS[var]
        for form in _forms(secret, secret):
            text = f"{MARK} {form}"
            now_ms = T0.timestamp() * 1000
            one = dd_series([0.5], scope=text, metric=text, end_ms=now_ms)
            stale = dd_series([0.5], scope=text, end_ms=now_ms - 3_600_000)
            replies += [
                Reply(json={"status": "error", "error": text}),
                Reply(json={"status": text, "series": []}),
                Reply(json={"status": "ok", "series": [one, one]}),
                Reply(json={"status": "ok", "series": [stale]}),
                Reply(json={"status": "ok", "series": [{"pointlist": [[1, text]], "scope": text}]}),
                Reply(json={"message": text}),
                Reply(status=403, json={"errors": [text]}),
                Reply(status=400, json={"errors": [text, header]}),
            ]
    return replies


def _nr_echoes() -> list[Reply]:
    secret = ECHO_SECRETS["GONOGO_PROBE_ECHO_NR"]
    replies: list[Reply] = []
    for form in _forms(secret, secret):
        text = f"{MARK} {form}"
        rows = {"data": {"actor": {"account": {"nrql": {"results": [{text: "x"}]}}}}}
        several = {
            "data": {"actor": {"account": {"nrql": {"results": [{"a": {text: 1, "b": 2}}]}}}}
        }
        replies += [
            Reply(json={"errors": [{"message": text, "extensions": {"errorClass": text}}]}),
            Reply(json=rows),
            Reply(json=several),
            Reply(status=401, json={"errors": [{"message": text}]}),
            Reply(status=500, body=text.encode()),
        ]
    return replies


def _sentry_echoes() -> list[Reply]:
    secret = ECHO_SECRETS["GONOGO_PROBE_ECHO_SENTRY"]
    replies: list[Reply] = []
    for form in _forms(secret, f"Bearer {secret}"):
        text = f"{MARK} {form}"
        replies += [
            Reply(json={"detail": text}),
            Reply(json={"groups": [{"by": {"outcome": text}, "totals": {text: "x"}}]}),
            Reply(json={"groups": [{"totals": {"sum(quantity)": text}}]}),
            Reply(status=400, json={"detail": text}),
            Reply(status=403, json={"detail": text}),
        ]
    return replies


def _am_echoes() -> list[Reply]:
    var = "GONOGO_PROBE_ECHO_AM"
    replies: list[Reply] = []
    for form in _forms(ECHO_SECRETS[var], _bearer(var)):
        text = f"{MARK} {form}"
        firing = {
            "labels": {"alertname": text},
            "annotations": {"summary": text},
            "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
        }
        replies += [
            Reply(json=[firing]),
            Reply(json={"message": text}),
            Reply(status=400, json=text),
            Reply(status=422, json={"code": 601, "message": text}),
        ]
    return replies


def _json_echoes() -> list[Reply]:
    var = "GONOGO_PROBE_ECHO_JSON"
    replies: list[Reply] = []
    for form in _forms(ECHO_SECRETS[var], _bearer(var)):
        text = f"{MARK} {form}"
        replies += [
            Reply(json={"data": {"rate": text}}),
            Reply(json={"data": {"rate": {"x": text}}}),
            Reply(json={"data": {text: 1}}),
            Reply(body=f"<html>{text}</html>".encode(), content_type="text/html"),
            Reply(status=401, json={"error": text}),
        ]
    return replies


def _http_echoes() -> list[Reply]:
    var = "GONOGO_PROBE_ECHO_HTTP"
    replies: list[Reply] = []
    for form in _forms(ECHO_SECRETS[var], _bearer(var)):
        text = f"{MARK} {form}"
        replies += [
            Reply(json={"status": "warn", "output": text}),
            Reply(json={"status": text}),
            Reply(status=503, json={"status": "fail", "output": text}),
            Reply(status=401, body=text.encode(), headers={"WWW-Authenticate": form}),
            Reply(body=f"<html>{text}</html>".encode(), content_type="text/html"),
        ]
    return replies


@dataclass
class _EchoCase:
    gate: str
    fake: ScriptedFake
    probe: str  # the probe entry, with {url}
    criterion: str
    healthy: Reply
    echoes: list[Reply]


def _echo_cases() -> list[_EchoCase]:
    quick = "retries: 0, timeout: 2"
    return [
        _EchoCase(
            "echo-prometheus",
            PrometheusFake(),
            f"{{type: prometheus, url: '{{url}}', username: {PROM_USER},"
            f" password_env: GONOGO_PROBE_ECHO_PROM_PASSWORD, {quick}}}",
            "{name: c, probe: p, query: up, go: '>= 0'}",
            Reply(json=_vector()),
            _prom_echoes(),
        ),
        _EchoCase(
            "echo-datadog",
            DatadogFake(),
            "{type: datadog, url: '{url}', api_key_env: GONOGO_PROBE_ECHO_DD_API,"
            f" app_key_env: GONOGO_PROBE_ECHO_DD_APP, {quick}}}",
            "{name: c, probe: p, query: 'avg:x{*}', go: '>= 0'}",
            Reply(json={"status": "ok", "series": []}),
            _dd_echoes(),
        ),
        _EchoCase(
            "echo-newrelic",
            NewRelicFake(),
            f"{{type: newrelic, url: '{{url}}', account_id: 1,"
            f" api_key_env: GONOGO_PROBE_ECHO_NR, {quick}}}",
            "{name: c, probe: p, query: 'SELECT count(*) FROM T', go: '>= 0', no_data: pass}",
            Reply(json={"data": {"actor": {"account": {"nrql": {"results": [{"c": 1}]}}}}}),
            _nr_echoes(),
        ),
        _EchoCase(
            "echo-sentry",
            SentryFake(),
            f"{{type: sentry, url: '{{url}}', org: acme, project: '42',"
            f" token_env: GONOGO_PROBE_ECHO_SENTRY, {quick}}}",
            "{name: c, probe: p, metric: events, go: '>= 0'}",
            Reply(json={"groups": []}),
            _sentry_echoes(),
        ),
        _EchoCase(
            "echo-alertmanager",
            AlertmanagerFake(),
            f"{{type: alertmanager, url: '{{url}}', token_env: GONOGO_PROBE_ECHO_AM, {quick}}}",
            "{name: c, probe: p, matchers: ['alertname=\"X\"'], go: '== 0'}",
            Reply(json=[]),
            _am_echoes(),
        ),
        _EchoCase(
            "echo-json",
            JsonApiFake(),
            f"{{type: json, url: '{{url}}/stats', token_env: GONOGO_PROBE_ECHO_JSON, {quick}}}",
            "{name: c, probe: p, path: data.rate, go: '>= 0'}",
            Reply(json={"data": {"rate": 0.5}}),
            _json_echoes(),
        ),
        _EchoCase(
            "echo-http",
            HealthFake(),
            f"{{type: http, url: '{{url}}/health', token_env: GONOGO_PROBE_ECHO_HTTP,"
            f" json_path: status, expect_value: UP, {quick}}}",
            "{name: c, probe: p, metric: latency, go: '< 10s'}",  # its reason quotes why',
            Reply(json={"status": "UP"}),
            _http_echoes(),
        ),
    ]


def _banned(secrets: dict[str, str]) -> list[str]:
    """Every text that must never be read back: each secret raw and percent-encoded, and
    each credential header as sent."""
    banned = set()
    for secret in secrets.values():
        banned |= {secret, quote(secret, safe=""), quote_plus(secret)}
    password = secrets["GONOGO_PROBE_ECHO_PROM_PASSWORD"]
    banned.add(_basic(PROM_USER, password).removeprefix("Basic "))
    return sorted(banned)


async def test_a_credential_echoed_anywhere_by_any_source_is_read_back_nowhere(
    database_url: str,
    tmp_path: Path,
    captured_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var, secret in ECHO_SECRETS.items():
        monkeypatch.setenv(var, secret)
    cases = _echo_cases()
    receiver = JsonApiFake({"ok": True})
    gates = tmp_path / "gates"
    gates.mkdir()
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(receiver.serving())
        for case in cases:
            await stack.enter_async_context(case.fake.serving())
            (gates / f"{case.gate}.yaml").write_text(
                "interval: 1s\nsteady_for: 1\ninitial_delay: 1s\ntimeout: 1h\n"
                f"probes:\n  p: {case.probe.replace('{url}', case.fake.url)}\n"
                f"criteria:\n  - {case.criterion}\n"
                "signoffs:\n  - {id: uat, description: keeps the check running}\n"
                f"notify:\n  - {{url: '{receiver.url}/json', format: json}}\n"
                f"  - {{url: '{receiver.url}/slack', format: slack}}\n"
            )
            # healthy, echo, healthy, echo, ...: every echo is a decision change (go to
            # no_go), so it is also in a webhook; each reply twice, once for the
            # continuous decision and once for the check.
            for echo in case.echoes:
                case.fake.script(case.healthy, case.healthy, echo, echo)
        clock = ManualClock(T0)
        app = create_app(
            load_settings(database_url=database_url, gates_dir=gates, tokens=TOKENS_SETTING),
            clock=clock,
        )
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://t")
        )
        service = Service(app, client, clock, ProbeBench(), database_url)
        checks = {}
        for case in cases:
            created = await service.post(
                f"/api/v1/gates/{case.gate}/checks", "pipeline", json={"version": "1"}
            )
            assert created.status_code == 201, created.text
            checks[case.gate] = created.json()["id"]
        ticks = max(2 * len(case.echoes) for case in cases) + 2
        for _ in range(ticks):
            await service.advance(1)
        await service.quiet()
        for case in cases:
            assert not case.fake.queue, f"{case.gate}: {len(case.fake.queue)} replies unused"

        async def delivered() -> bool:
            return len(receiver.requests) >= 2 * len(cases)

        await service.until(delivered)

        bodies: list[str] = []

        async def read(method: str, path: str, **kw: Any) -> httpx.Response:
            response = await client.request(method, path, headers=service.headers("admin"), **kw)
            bodies.append(response.text)
            bodies.append(json.dumps(dict(response.headers)))
            return response

        await read("GET", "/api/v1/gates")
        await read("GET", "/api/v1/checks?limit=100")
        for case in cases:
            await read("GET", f"/api/v1/gates/{case.gate}")
            await read("GET", f"/api/v1/gates/{case.gate}/decision")
            await read("GET", f"/api/v1/gates/{case.gate}/samples?limit=1000")
            await read("GET", f"/api/v1/checks/{checks[case.gate]}")
            await read("GET", f"/api/v1/checks/{checks[case.gate]}/events?limit=1000")
            await read(
                "POST",
                f"/api/v1/integrations/flagger/{case.gate}",
                json={"name": "n", "namespace": "s"},
            )
        await read("GET", "/")
        await read("GET", "/status.json")
        await read("GET", "/metrics")
        samples = [
            (
                await client.get(
                    f"/api/v1/gates/{c.gate}/samples?limit=1000", headers=service.headers("viewer")
                )
            ).text
            for c in cases
        ]
        events = [
            (
                await client.get(
                    f"/api/v1/checks/{checks[c.gate]}/events?limit=1000",
                    headers=service.headers("viewer"),
                )
            ).text
            for c in cases
        ]
    notifications = [seen.body.decode("utf-8", errors="replace") for seen in receiver.requests]
    logs = captured_logs.getvalue()

    places = {"log": logs, **{f"notification {i}": b for i, b in enumerate(notifications)}}
    places.update({f"response {i}": b for i, b in enumerate(bodies)})
    for secret in _banned(ECHO_SECRETS):
        for where, text in places.items():
            assert secret not in text, f"{secret[:6]}... reached {where}: {text[:300]}"
    # The run saw the echoes: masked reasons were stored and sent, for every type.
    for case, stored, trail in zip(cases, samples, events, strict=True):
        assert MARK in stored and "***" in stored, f"{case.gate}: no echo reached its samples"
        assert MARK in trail, f"{case.gate}: no echo reached its check's events"
    assert any(MARK in body and "***" in body for body in notifications)


# -- definitions shown to viewers ----------------------------------------------------------------

COOKIE = "session=c00kie-value-4d2e9f"
SESSION = "sess-token-8b1c7a3e5f"
URL_KEY = "url-key-5e6f7a8b9c"

REDACT_YAML = f"""\
interval: 10s
probes:
  health:
    type: http
    url: "https://portal.example/health?api_key={URL_KEY}&region=eu"
    headers:
      Cookie: "{COOKIE}"
      X-Session-Token: &tok {SESSION}
      X-Scope-OrgID: tenant-1
  other:
    type: http
    url: https://other.example/health
    headers:
      X-Session-Token: *tok
      Set-Cookie: |
        {COOKIE}
criteria:
  - {{name: up, probe: health, metric: up, go: "== 1"}}
  - {{name: up2, probe: other, metric: up, go: "== 1"}}
"""

REDACT_JSON = json.dumps(
    {
        "probes": {
            "health": {
                "type": "http",
                "url": f"https://portal.example/health?token={URL_KEY}",
                "headers": {"Cookie": COOKIE, "X-Scope-OrgID": "tenant-1"},
            }
        },
        "criteria": [{"name": "up", "probe": "health", "metric": "up", "go": "== 1"}],
    },
    indent=1,
).replace("\n", "\n\t")  # a JSON body may indent with tabs


@pytest.mark.parametrize("text", [REDACT_YAML, REDACT_JSON], ids=["yaml", "json"])
async def test_credential_headers_and_url_parameters_are_redacted_in_every_view_of_a_gate(
    service: Service, text: str
) -> None:
    put = await service.client.put(
        "/api/v1/gates/redacted", headers=service.headers("admin"), content=text
    )
    assert put.status_code in (200, 201), put.text
    got = await service.get("/api/v1/gates/redacted")
    assert got.status_code == 200
    for body in (put.text, got.text):
        for secret in (COOKIE, SESSION, URL_KEY, "c00kie-value"):
            assert secret not in body
    shown = got.json()
    health = shown["definition"]["probes"]["health"]
    assert health["headers"]["Cookie"] == "[redacted]"
    assert health["headers"]["X-Scope-OrgID"] == "tenant-1"  # not a credential: kept
    assert "api_key=%5Bredacted%5D" in health["url"] or "token=%5Bredacted%5D" in health["url"]
    # The text is still the admin's text, with only the credentials replaced.
    shown_text = shown["text"]
    reread = json.loads(shown_text) if text.startswith("{") else yaml.safe_load(shown_text)
    assert reread["probes"]["health"]["headers"]["Cookie"] == "[redacted]"
    assert reread["probes"]["health"]["headers"]["X-Scope-OrgID"] == "tenant-1"
    assert reread["criteria"][0]["name"] == "up"
    if "other" in reread["probes"]:
        assert reread["probes"]["other"]["headers"]["Set-Cookie"] == "[redacted]"
        assert reread["probes"]["other"]["headers"]["X-Session-Token"] == "[redacted]"
    listing = await service.get("/api/v1/gates")
    assert COOKIE not in listing.text


async def test_a_probe_url_with_credentials_is_refused_with_a_hint(service: Service) -> None:
    text = (
        "probes:\n  prom: {type: prometheus, url: 'http://admin:hunter2x@prom:9090'}\n"
        "criteria:\n  - {name: c, probe: prom, query: up, go: '> 0'}\n"
    )
    put = await service.client.put(
        "/api/v1/gates/userinfo", headers=service.headers("admin"), content=text
    )
    assert put.status_code == 422
    assert put.headers["content-type"].startswith("application/problem+json")
    [error] = put.json()["errors"]
    assert error["line"] == 2
    assert "credentials in the URL" in error["msg"] and "password_env" in error["msg"]
    assert "hunter2x" not in put.text


def test_the_log_redactor_masks_the_encoded_forms_of_a_secret_too() -> None:
    secret = "log-s3cret/+=value"
    redactor.add([secret])
    basic = base64.b64encode(f"someone:{secret}".encode()).decode()
    event = {
        "event": f"GET /x?token={quote(secret, safe='')}",
        "header": f"Basic {basic}",
        "form": quote_plus(secret),
        "json": json.dumps({"t": secret}),
    }
    cleaned = json.dumps(redactor(None, "info", event))
    assert secret not in cleaned
    assert quote(secret, safe="") not in cleaned and quote_plus(secret) not in cleaned
    assert basic not in cleaned


async def test_every_credential_a_built_probe_sends_is_redacted_from_the_logs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GONOGO_PROBE_LOG_PW", "pw-for-the-log-test")
    catalog = GateCatalog(gates_dir=None)
    try:
        catalog.put_api_gate(
            "basic",
            "probes:\n  prom: {type: prometheus, url: 'http://p:9090', username: ops,"
            " password_env: GONOGO_PROBE_LOG_PW}\n"
            "criteria:\n  - {name: c, probe: prom, query: up, go: '> 0'}\n",
        )
    finally:
        await catalog.aclose()
    header = _basic("ops", "pw-for-the-log-test")
    cleaned = json.dumps(redactor(None, "info", {"event": f"sent {header}"}))
    assert header.removeprefix("Basic ") not in cleaned
