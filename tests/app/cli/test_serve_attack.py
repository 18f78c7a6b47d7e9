"""A bounded attack on a real ``gonogo serve`` process (tokens set, SQLite and PostgreSQL).

Sources that echo the credential they receive (every probe type, every text its wire
format carries) run beside the server; then, while a thread keeps asking ``/healthz``,
the test sends malformed requests built from the OpenAPI schema to every operation, an
auth matrix, YAML bombs and deep nesting, ``*_env`` naming the server's own variables,
URL credentials, huge integers, NUL and control characters, oversized bodies and
partial (slow) bodies. The rule: no 5xx, no traceback and no secret in any response or
log line, nothing stored lost or changed, and ``/healthz`` answering throughout.

Loopback only; every loop is bounded in count and in time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiohttp import web

from tests.app.cli.test_processes import GONOGO, free_port
from tests.app.conftest import POSTGRES_ENV, TOKENS, TOKENS_SETTING, reset_postgres
from tests.app.test_secrets import ECHO_SECRETS, MARK, _banned, _echo_cases
from tests.fakes import ScriptedFake
from tests.fakes.jsonapi import JsonApiFake
from tests.fakes.server import ThreadedServer
from tests.support import in_ci

STARTUP_SECONDS = 30
ATTACK_BUDGET_SECONDS = 35  # the request loops stop here whatever is left
# A frozen loop (a parse, a regex or a hash of attacker input run on it) stalls /healthz
# for seconds. With nothing frozen, a loaded two-CPU runner has delayed one answer by up
# to 0.64 s (once in CI; asyncio's debug mode finds no callback over 0.1 s locally).
HEALTHZ_BOUND_SECONDS = 1.0
SLOW_BODIES = 24
CRITERION = "{name: c, probe: p, query: up, go: '> 0'}"
SERVER_SECRETS_ENV = ("GONOGO_TOKENS", "GONOGO_DATABASE_URL", "HOME", "PATH")

SIGNED_GATE = """\
interval: 1s
steady_for: 1
timeout: 1h
probes:
  c: {type: constant, value: 1}
criteria:
  - {name: ratio, probe: c, go: "> 0.5"}
signoffs:
  - {id: uat, role: approver}
  - {id: cso, role: admin}  # never given: the stored check stays running
"""

KEPT_GATE = """\
description: stored before the attack
interval: 5s
probes:
  c: {type: constant, value: 1}
criteria:
  - {name: ratio, probe: c, go: "> 0.5"}
"""

HOSTILE_SCALARS: list[str] = [
    "9" * 30,
    "-" + "9" * 30,
    "18446744073709551616",
    "-9223372036854775809",
    "1e999",
    "-1e999",
    "NaN",
    "inf",
    "0x10",
    "1_000",
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x1b[31m\x07\x08",
    "\r\nX-Injected: 1",
    "\u202e\ufeff\u2028",
    "☃" * 50,
    "../../../etc/passwd",
    "'; DROP TABLE checks; --",
    "${GONOGO_TOKENS}",
    "x" * 5000,
    "true",
    "null",
]
HOSTILE_JSON: list[Any] = [
    None,
    True,
    10**30,
    -(10**30),
    1.5,
    "",
    "\x00",
    "a\x00b",
    "x" * 20000,
    [],
    {},
    [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]],
    {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": 1}}}}}}}}}},
    {"\x00": "\x00"},
]


def _nested_json(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _yaml_bombs() -> dict[str, bytes]:
    laughs = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 12):
        previous = f"*a{level - 1}"
        laughs.append(f"a{level}: &a{level} [{', '.join([previous] * 9)}]")
    merges = ["m0: &m0 {k0: v}"]
    for level in range(1, 25):
        merges.append(f"m{level}: &m{level} {{<<: [*m{level - 1}, *m{level - 1}], k{level}: v}}")
    huge = "probes:\n  c: {type: constant, value: 1}\ncriteria:\n"
    huge += "".join(f"  - {{name: c{i}, probe: c, go: '> 0.5'}}\n" for i in range(60000))
    return {
        "billion laughs": "\n".join(laughs).encode(),
        "merge chain": "\n".join(merges).encode(),
        "deep flow sequence": b"[" * 20000 + b"]" * 20000,
        "deep block mapping": "".join(f"{' ' * i}k{i}:\n" for i in range(3000)).encode() + b"x",
        "deep json": _nested_json(20000),
        "huge interval": (
            b"interval: 99999999999999999999d\nprobes:\n  c: {type: constant, value: 1}\n"
            b"criteria:\n  - {name: c, probe: c, go: '> 0.5'}\n"
        ),
        "huge window": (
            b"probes:\n  c: {type: constant, value: 1}\ncriteria:\n"
            b"  - {name: c, probe: c, go: '> 0.5', window: 99999999999999999999d}\n"
        ),
        "overflow condition": (
            b"probes:\n  c: {type: constant, value: 1}\ncriteria:\n"
            b"  - {name: c, probe: c, go: '> 1e999'}\n"
        ),
        "infinite probe setting": (
            b"probes:\n  c: {type: constant, value: 1e999}\n"
            b"criteria:\n  - {name: c, probe: c, go: '> 0.5'}\n"
        ),
        "nan in json": (
            b'{"probes": {"c": {"type": "constant", "value": "NaN"}},'
            b' "criteria": [{"name": "c", "probe": "c", "go": "> 0.5"}]}'
        ),
        "lone surrogate": b'{"description": "\\ud800", "probes": {}, "criteria": []}',
        "boolean timeout": (
            b"timeout: true\nsteady_for: true\nprobes:\n  c: {type: constant, value: 1}\n"
            b"criteria:\n  - {name: c, probe: c, go: '> 0.5'}\n"
        ),
        "nul": b"description: a\x00b\nprobes: {}\ncriteria: []\n",
        "control": b"description: \x1b\x07\nprobes: {}\ncriteria: []\n",
        "invalid utf-8": b"description: \xff\xfe\xc3\x28\n",
        "utf-16 bom": "description: x\n".encode("utf-16"),
        "tabs": b"probes:\n\tc: 1\n",
        "not yaml": b"{[}]:::",
        "huge (over 1 MiB)": huge.encode()[: 1024 * 1024 + 10],
        "just under 1 MiB": huge.encode()[: 1024 * 1024 - 100].rsplit(b"\n", 1)[0] + b"\n",
        # the largest definition read in full: the parse runs while /healthz is watched
        "just under 256 KiB": huge.encode()[: 256 * 1024 - 100].rsplit(b"\n", 1)[0] + b"\n",
    }


@dataclass
class Tally:
    """Every answer the attack got, and what was wrong with any of them."""

    sent: int = 0
    fivexx: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, what: str, response: httpx.Response) -> httpx.Response:
        with self.lock:
            self.sent += 1
            self.statuses[response.status_code] += 1
            self.texts.append(response.text)
            self.texts.append(json.dumps(dict(response.headers)))
            if response.status_code >= 500:
                self.fivexx.append(f"{what} -> {response.status_code}: {response.text[:200]}")
            if "Traceback" in response.text:
                self.problems.append(f"{what}: traceback in the answer")
        return response

    def raw(self, what: str, answer: bytes) -> None:
        with self.lock:
            self.sent += 1
            text = answer.decode("utf-8", errors="replace")
            self.texts.append(text)
            status = text.split(" ", 2)[1] if text.startswith("HTTP/") else ""
            if status.startswith("5"):
                self.fivexx.append(f"{what} -> {text[:200]}")


class HealthWatch:
    """Asks ``/healthz`` every 50 ms from its own thread and keeps the slowest answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz-watch", daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.wait(0.05):
                started = time.perf_counter()
                try:
                    status = client.get(f"{self.url}/healthz").status_code
                except httpx.HTTPError as error:
                    self.failures.append(f"/healthz: {error!r}")
                    continue
                self.latencies.append(time.perf_counter() - started)
                if status != 200:
                    self.failures.append(f"/healthz answered {status}")


class EchoSources:
    """The secret-echo fakes, each served from its own thread, plus a receiver that
    records every credential a gate managed to send it."""

    def __init__(self) -> None:
        self.cases = _echo_cases()
        self.catcher = JsonApiFake({"data": {"rate": 0.5}})
        self._servers: list[ThreadedServer] = []

    def _serve(self, fake: ScriptedFake) -> None:
        app = web.Application(client_max_size=1024**2)
        fake.add_routes(app)
        threaded = ThreadedServer(app)
        threaded.__enter__()
        fake.server = threaded.server
        self._servers.append(threaded)

    def __enter__(self) -> EchoSources:
        for case in self.cases:
            self._serve(case.fake)
            # Echo after echo, each twice (the continuous decision and the check).
            for echo in case.echoes:
                case.fake.script(echo, echo, case.healthy)
        self._serve(self.catcher)
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.stop()

    def gate_files(self, directory: Path) -> None:
        for case in self.cases:
            (directory / f"{case.gate}.yaml").write_text(
                "interval: 1s\nsteady_for: 1\ntimeout: 1h\n"
                f"probes:\n  p: {case.probe.replace('{url}', case.fake.url)}\n"
                f"criteria:\n  - {case.criterion}\n"
                f"notify:\n  - {{url: '{self.catcher.url}/hook', format: json}}\n"
            )


class Serve:
    """A ``gonogo serve`` subprocess; stderr (its JSON log) goes to a file."""

    def __init__(self, gates_dir: Path, database_url: str, log: Path) -> None:
        self.gates_dir = gates_dir
        self.database_url = database_url
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            **ECHO_SECRETS,
            "GONOGO_TOKENS": TOKENS_SETTING,
            "GONOGO_LOG_FORMAT": "json",
            "GONOGO_DATABASE_URL": self.database_url,
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [GONOGO, "serve", "--port", str(self.port), "--gates-dir", str(self.gates_dir)],
                env=env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"gonogo serve exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"gonogo serve not ready within {STARTUP_SECONDS}s")
            time.sleep(0.1)  # polling interval; the deadline bounds the loop

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _auth(role: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}


def _fill(path: str, value: str) -> str:
    out = path
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        out = out[:start] + quote(value, safe="") + out[end + 1 :]
    return out


@dataclass
class Attack:
    serve: Serve
    tally: Tally
    client: httpx.Client
    deadline: float
    check_id: str = ""
    victim_id: str = ""

    def real(self, method: str, path: str) -> str:
        """The path with real names: reads hit the stored gate and check; writes hit a
        sacrificial pair, so a legitimate admin action (a delete) is no "loss"."""
        write = method not in {"GET", "HEAD"}
        out = path.replace("{check_id}", self.victim_id if write else self.check_id)
        out = out.replace("{gate}", "victim" if write else "kept")
        return out.replace("{name}", "app.css")

    def time_left(self) -> bool:
        return time.monotonic() < self.deadline

    def send(self, what: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
        if not self.time_left():
            return None
        try:
            response = self.client.request(method, f"{self.serve.url}{path}", **kw)
        except httpx.TimeoutException:
            self.tally.problems.append(f"{what}: no answer within the client timeout")
            return None
        except httpx.HTTPError as error:
            # httpx itself refuses some hostile inputs (control characters in a URL)
            if isinstance(error, httpx.InvalidURL | httpx.LocalProtocolError):
                return None
            self.tally.problems.append(f"{what}: {error!r}")
            return None
        return self.tally.record(what, response)

    def raw(self, what: str, data: bytes, *, read: bool = True) -> None:
        if not self.time_left():
            return
        with socket.create_connection(("127.0.0.1", self.serve.port), timeout=5) as sock:
            sock.sendall(data)
            if not read:
                return
            chunks = []
            with contextlib.suppress(TimeoutError, ConnectionError):
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                    if len(b"".join(chunks)) > 1_000_000:
                        break
            self.tally.raw(what, b"".join(chunks))


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method in {"get", "put", "post", "delete", "patch"}:
                found.append((method.upper(), path, operation))
    return found


def _body_fields(schema: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    content = operation.get("requestBody", {}).get("content", {})
    body = content.get("application/json", {}).get("schema", {})
    ref = body.get("$ref", "")
    if ref:
        body = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return list(body.get("properties", {}))


def openapi_attack(attack: Attack, schema: dict[str, Any]) -> None:
    """Every operation, with every hostile value in every path and query parameter and
    every body field, and every kind of broken body."""
    admin = _auth("admin")
    for method, path, operation in _operations(schema):
        params = [p for p in operation.get("parameters", []) if p.get("in") in {"path", "query"}]
        real = attack.real(method, path)
        for value in HOSTILE_SCALARS:
            attack.send(
                f"{method} {path} path={value!r}", method, _fill(path, value), headers=admin
            )
            for param in params:
                if param["in"] == "query":
                    attack.send(
                        f"{method} {path} ?{param['name']}={value!r}",
                        method,
                        real,
                        params={
                            param["name"]: value,
                            **({"wait": "0"} if param["name"] != "wait" else {}),
                        },
                        headers=admin,
                    )
        if method in {"PUT", "POST"} and "requestBody" in operation:
            for body in (
                b"{",
                b"null",
                b"[]",
                b'"x"',
                b"\x00\x01\x02",
                b"\xff\xfe",
                _nested_json(5000),
                b'{"version": "1", "version": "2"}',
                b"[" * 5000,
            ):
                attack.send(
                    f"{method} {path} body={body[:20]!r}",
                    method,
                    real,
                    content=body,
                    headers={**admin, "Content-Type": "application/json"},
                )
            for name in _body_fields(schema, operation):
                for value in HOSTILE_JSON:
                    attack.send(
                        f"{method} {path} {name}={str(value)[:30]!r}",
                        method,
                        real,
                        json={"version": "1", name: value},
                        headers=admin,
                    )
            attack.send(
                f"{method} {path} oversized body",
                method,
                real,
                content=b'{"metadata": "' + b"x" * (2 * 1024 * 1024) + b'"}',
                headers={**admin, "Content-Type": "application/json"},
            )


def auth_matrix(attack: Attack, schema: dict[str, Any]) -> None:
    """No token, a wrong one, odd schemes and every role, on every operation; a caller
    without a valid token learns nothing about the body (401 even for broken JSON)."""
    callers: dict[str, dict[str, str]] = {
        "none": {},
        "wrong": {"Authorization": f"Bearer {TOKENS['admin']}x"},
        "empty": {"Authorization": "Bearer "},
        "basic": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "lower": {"Authorization": f"bearer{TOKENS['admin']}"},
        "nul": {"Authorization": "Bearer a\x00b"},
        **{role: _auth(role) for role in TOKENS},
    }
    for method, path, _operation in _operations(schema):
        real = attack.real(method, path)
        for who, headers in callers.items():
            response = attack.send(
                f"{who} {method} {path}",
                method,
                real,
                headers={**headers, "Content-Type": "application/json"},
                content=b"{broken",
                params={"wait": "0"},
            )
            if response is None or not path.startswith("/api/v1"):
                continue
            anonymous = who in {"none", "wrong", "empty", "basic", "lower", "nul"}
            admin_only = method in {"PUT", "DELETE"} or path.endswith("/reload")
            expected = 401 if anonymous else 403 if admin_only and who != "admin" else None
            if expected is not None and response.status_code != expected:
                attack.tally.problems.append(
                    f"{who} {method} {path}: {response.status_code}, not {expected}"
                )


def gate_file_attack(attack: Attack, catcher_url: str) -> None:
    """YAML bombs, deep nesting, huge durations; ``*_env`` naming the server's own
    variables; credentials in URLs. Each is refused with a 4xx, never stored."""
    admin = {**_auth("admin"), "Content-Type": "application/yaml"}
    for name, body in _yaml_bombs().items():
        response = attack.send(
            f"PUT bomb {name}", "PUT", "/api/v1/gates/bomb", content=body, headers=admin
        )
        if response is not None and response.status_code < 400 and "just under" not in name:
            attack.tally.problems.append(f"bomb {name!r} accepted: {response.status_code}")
    for variable in SERVER_SECRETS_ENV:
        for probe in (
            f"{{type: prometheus, url: '{catcher_url}', token_env: {variable}}}",
            f"{{type: json, url: '{catcher_url}/x', token_env: {variable}}}",
            f"{{type: prometheus, url: '{catcher_url}', username: u, password_env: {variable}}}",
            f"{{type: datadog, url: '{catcher_url}', api_key_env: {variable},"
            f" app_key_env: {variable}}}",
        ):
            text = f"probes:\n  p: {probe}\ncriteria:\n  - {CRITERION}\n"
            response = attack.send(
                f"PUT env {variable}",
                "PUT",
                "/api/v1/gates/envy",
                content=text.encode(),
                headers=admin,
            )
            if response is not None and response.status_code != 422:
                attack.tally.problems.append(
                    f"*_env {variable} not refused: {response.status_code}"
                )
        text = (
            f"probes:\n  p: {{type: constant, value: 1}}\ncriteria:\n"
            f"  - {{name: c, probe: p, go: '> 0'}}\n"
            f"notify:\n  - {{url: '{catcher_url}/n', secret_env: {variable}}}\n"
        )
        response = attack.send(
            f"PUT notify env {variable}",
            "PUT",
            "/api/v1/gates/envy",
            content=text.encode(),
            headers=admin,
        )
        if response is not None and response.status_code != 422:
            attack.tally.problems.append(f"notify {variable} not refused: {response.status_code}")
    for url in ("http://[::1", "http://127.0.0.1:99999/", "http://127.0.0.1:1/a\\0b"):
        text = f'probes:\n  p: {{type: prometheus, url: "{url}"}}\ncriteria:\n  - {CRITERION}\n'
        response = attack.send(
            "PUT bad url", "PUT", "/api/v1/gates/badurl", content=text.encode(), headers=admin
        )
        if response is not None and response.status_code != 422:
            attack.tally.problems.append(f"url {url} not refused: {response.status_code}")
    for url in (
        "http://admin:hunter2-userinfo@127.0.0.1:1",
        "http://hunter2-userinfo@127.0.0.1:1/",
        "http://a%3Ab:hunter2-userinfo@127.0.0.1:1/",
    ):
        text = f"probes:\n  p: {{type: prometheus, url: '{url}'}}\ncriteria:\n  - {CRITERION}\n"
        response = attack.send(
            "PUT userinfo", "PUT", "/api/v1/gates/userinfo", content=text.encode(), headers=admin
        )
        if response is not None and response.status_code != 422:
            attack.tally.problems.append(f"userinfo {url} not refused: {response.status_code}")


def check_attack(attack: Attack) -> None:
    """Checks with NUL, control characters, deep and huge metadata and vars, and
    huge integers in every paging parameter."""
    pipeline = _auth("pipeline")
    deep: Any = 1
    for _ in range(300):
        deep = {"a": deep}
    for field_name, value in (
        ("version", "1\x00"),
        ("version", "1\x1b[0m"),
        ("version", "x" * 200),
        ("metadata", deep),
        ("metadata", {"k": "x" * 40000}),
        ("metadata", {"k": "a\x00b"}),
        ("metadata", {"a\x00": 1}),
        ("vars", {"team": "a\x00b"}),
        ("vars", deep),
        ("vars", {"team": 10**30}),
        ("stage", "\x00"),
        ("environment", "prod\r\nx"),
        ("idempotency_key", "\x00"),
        ("timeout", "99999999999999999999d"),
        ("timeout", 10**30),
    ):
        body: dict[str, Any] = {"version": "1", field_name: value}
        response = attack.send(
            f"POST check {field_name}",
            "POST",
            "/api/v1/gates/signed/checks",
            json=body,
            headers=pipeline,
        )
        if response is not None and response.status_code < 400:
            attack.tally.problems.append(f"check with bad {field_name} accepted")
    for path in (
        "/api/v1/checks",
        "/api/v1/gates/kept/samples",
        f"/api/v1/checks/{attack.check_id}/events",
    ):
        for name in ("cursor", "after", "limit", "since", "wait", "before", "until"):
            for value in ("9" * 40, "-" + "9" * 40, "1e308", "NaN", "0", "-1", "\x00"):
                attack.send(
                    f"GET {path}?{name}={value!r}",
                    "GET",
                    path,
                    params={name: value},
                    headers=_auth("viewer"),
                )
    attack.send(
        "GET check wait",
        "GET",
        f"/api/v1/checks/{attack.check_id}",
        params={"wait": "9" * 40},
        headers=_auth("viewer"),
    )


def raw_attack(attack: Attack) -> None:
    """Malformed HTTP (uvicorn answers a plain 400, never a 5xx)."""
    host = f"Host: 127.0.0.1:{attack.serve.port}\r\n".encode()
    pipeline = f"Authorization: Bearer {TOKENS['pipeline']}\r\n".encode()
    for data in (
        b"GET /healthz HTTP/1.1\r\n" + host + b"X-Bad: a\x00b\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET /api/v1/gates HTTP/1.1\r\n" + host + b"Authorization: Bearer \xff\xfe\r\n"
        b"Connection: close\r\n\r\n",
        b"POST /api/v1/gates/x/checks HTTP/1.1\r\n" + host + b"Content-Length: -1\r\n\r\n",
        b"POST /api/v1/gates/x/checks HTTP/1.1\r\n"
        + host
        + b"Content-Length: 99999999999999999999999\r\n\r\n",
        b"POST /api/v1/gates/x/checks HTTP/1.1\r\n"
        + host
        + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nzz\r\n",
        b"GET /api/v1/gates HTTP/1.1\r\n" + host + b"X: " + b"y" * 70000 + b"\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n" + host + b"\r\n",
        *(
            b"POST /api/v1/gates/signed/checks HTTP/1.1\r\n"
            + host
            + pipeline
            + b"Idempotency-Key: "
            + key
            + b"\r\nContent-Type: application/json\r\n"
            b'Content-Length: 16\r\nConnection: close\r\n\r\n{"version": "7"}'
            for key in (b"\xff\xfe\xc3\x28", "\u2603".encode(), b"k" * 8000, b"\x01", b"")
        ),
    ):
        with contextlib.suppress(OSError):
            attack.raw(f"raw {data[:40]!r}", data)


@contextlib.contextmanager
def slow_bodies(serve: Serve) -> Iterator[list[socket.socket]]:
    """Connections that promise a body and send only part of it (well within uvicorn's
    limits), held open while the rest of the attack runs."""
    sockets = []
    for index in range(SLOW_BODIES):
        sock = socket.create_connection(("127.0.0.1", serve.port), timeout=5)
        token = TOKENS["admin"] if index % 2 else "wrong"
        path = "/api/v1/gates/slow" if index % 3 else "/api/v1/gates/signed/checks"
        method = "PUT" if index % 3 else "POST"
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode()
            + b'{"version": "1", "metadata": {"a": "'
        )
        sockets.append(sock)
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _stored_state(client: httpx.Client, serve: Serve, check_id: str) -> dict[str, Any]:
    viewer = _auth("admin")
    kept = client.get(f"{serve.url}/api/v1/gates/kept", headers=viewer).json()
    assert "text" in kept, f"the stored gate is gone: {kept}"
    check = client.get(f"{serve.url}/api/v1/checks/{check_id}", headers=viewer).json()
    events = client.get(
        f"{serve.url}/api/v1/checks/{check_id}/events", params={"limit": 1000}, headers=viewer
    ).json()["items"]
    return {
        "kept": (kept["text"], kept.get("version")),
        "check": {
            k: check[k] for k in ("id", "state", "version", "metadata", "deadline", "signoffs")
        },
        "signoff events": [e for e in events if e["kind"] == "signoff"],
    }


def _database(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'attack.db'}"
    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        if in_ci():
            pytest.fail(f"{POSTGRES_ENV} is not set; CI=true, so PostgreSQL must be tested")
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}")
    asyncio.run(reset_postgres(url))
    return url


MIN_SECRET_LENGTH = 12


def _database_secrets(url: str) -> list[str]:
    """The database URL, and its password when it is long enough to be a real secret: it
    must never be read back either. A short test password (CI's is ``gonogo``, the
    product's own name) would be found in every answer, so only the URL is checked then."""
    if "@" not in url or "://" not in url:
        return []
    userinfo = url.split("://", 1)[1].rsplit("@", 1)[0]
    password = userinfo.split(":", 1)[1] if ":" in userinfo else ""
    return [url] if len(password) < MIN_SECRET_LENGTH else [url, password]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_attack_on_a_real_server_finds_no_5xx_no_leak_and_no_freeze(
    kind: str, tmp_path: Path
) -> None:
    database_url = _database(kind, tmp_path)
    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "signed.yaml").write_text(SIGNED_GATE)
    log = tmp_path / "serve.log"
    with EchoSources() as sources:
        sources.gate_files(gates)
        serve = Serve(gates, database_url, log)
        serve.start()
        try:
            started = time.monotonic()
            tally = Tally()
            with httpx.Client(timeout=10) as client:
                created = client.post(
                    f"{serve.url}/api/v1/gates/signed/checks",
                    json={"version": "1.0.0", "metadata": {"pipeline": "attack"}},
                    headers=_auth("pipeline"),
                )
                assert created.status_code == 201, created.text
                check_id = created.json()["id"]
                signed = client.post(
                    f"{serve.url}/api/v1/checks/{check_id}/signoffs",
                    json={"signoff": "uat"},
                    headers=_auth("approver"),
                )
                assert signed.status_code == 201, signed.text
                for name in ("kept", "victim"):
                    put = client.put(
                        f"{serve.url}/api/v1/gates/{name}",
                        content=KEPT_GATE,
                        headers=_auth("admin"),
                    )
                    assert put.status_code in (200, 201), put.text
                victim = client.post(
                    f"{serve.url}/api/v1/gates/signed/checks",
                    json={"version": "2.0.0"},
                    headers=_auth("pipeline"),
                )
                assert victim.status_code == 201, victim.text
                before = _stored_state(client, serve, check_id)
                schema = client.get(f"{serve.url}/openapi.json").json()
                attack = Attack(
                    serve,
                    tally,
                    client,
                    time.monotonic() + ATTACK_BUDGET_SECONDS,
                    check_id,
                    victim.json()["id"],
                )
                with HealthWatch(serve.url) as watch, slow_bodies(serve):
                    check_attack(attack)
                    gate_file_attack(attack, sources.catcher.url)
                    auth_matrix(attack, schema)
                    raw_attack(attack)
                    openapi_attack(attack, schema)
                after = _stored_state(client, serve, check_id)
                # Every view, read after the attack (the echoes have been sampled by now).
                reads = [
                    "/",
                    "/status.json",
                    "/metrics",
                    "/api/v1/gates",
                    "/api/v1/checks?limit=100",
                ]
                for case in sources.cases:
                    reads += [
                        f"/api/v1/gates/{case.gate}",
                        f"/api/v1/gates/{case.gate}/decision",
                        f"/api/v1/gates/{case.gate}/samples?limit=1000",
                    ]
                for path in reads:
                    for role in ("viewer", "admin"):
                        tally.record(
                            f"read {path}",
                            client.get(f"{serve.url}{path}", headers=_auth(role)),
                        )
                for case in sources.cases:
                    tally.record(
                        "flagger",
                        client.post(
                            f"{serve.url}/api/v1/integrations/flagger/{case.gate}",
                            json={
                                "name": "n",
                                "namespace": "s",
                                "checksum": "r1",
                                "metadata": {"version": "1.0"},
                            },
                            headers=_auth("pipeline"),
                        ),
                    )
                samples = "".join(
                    client.get(
                        f"{serve.url}/api/v1/gates/{case.gate}/samples?limit=1000",
                        headers=_auth("viewer"),
                    ).text
                    for case in sources.cases
                )
            elapsed = time.monotonic() - started
        finally:
            serve.stop()
        # Everything any gate sent to the catcher: headers (any credential header),
        # path, query and body (notifications included).
        caught = [
            json.dumps(dict(seen.headers))
            + seen.path
            + repr(seen.query)
            + seen.body.decode("utf-8", errors="replace")
            for seen in sources.catcher.requests
        ]
    logs = log.read_text(errors="replace")
    banned = [*_banned(ECHO_SECRETS), *TOKENS.values(), *_database_secrets(database_url)]
    places = {"log": logs, "sent to a gate's URL": "\n".join(caught)}
    places.update({f"answer {i}": text for i, text in enumerate(tally.texts)})
    leaks = [
        f"{secret[:6]}... in {where}"
        for secret in banned
        for where, text in places.items()
        if secret in text
    ]
    slowest = max(watch.latencies, default=float("inf"))
    print(
        f"\nattack on gonogo serve ({kind}): {tally.sent} requests in {elapsed:.1f}s,"
        f" {len(tally.fivexx)} answered 5xx, {len(leaks)} leaks,"
        f" /healthz asked {len(watch.latencies)} times, slowest {slowest * 1000:.0f} ms;"
        f" statuses {dict(sorted(tally.statuses.items()))}"
    )
    (tmp_path / "tally.txt").write_text("\n".join(tally.texts))
    assert tally.sent >= 500
    assert tally.fivexx == []
    assert leaks == []
    assert "Traceback" not in logs, logs[logs.index("Traceback") - 500 :][:3000]
    assert tally.problems == []
    assert after == before, "something stored was changed by the attack"
    assert watch.failures == []
    assert len(watch.latencies) >= 10
    assert slowest < HEALTHZ_BOUND_SECONDS, f"/healthz took {slowest * 1000:.0f} ms"
    assert MARK in samples and "***" in samples, "the echoes were never sampled"
