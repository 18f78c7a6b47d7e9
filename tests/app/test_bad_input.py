"""The bad-input corpus: hostile and malformed requests, one class at a time (depth, size,
overflow, encodings, YAML bombs, content types, headers, unauthenticated bodies).

The rule every case checks: no 5xx, no traceback in the body or in the logs, and nothing
already stored is lost or changed. Many cases also pin the answer (422 naming the field,
413, 401). The corpus size and the count of 5xx answers are printed (run with ``-s``).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog

from app.core.logging import configure_logging
from tests.app.conftest import TOKENS, Service

API_GATE = """\
description: stored before the corpus runs
interval: 10s
probes:
  p: {type: constant, value: 1}
criteria:
  - {name: availability, probe: p, go: "> 99%"}
"""


@dataclass(frozen=True)
class Case:
    """One request of the corpus; ``expect`` pins the status when given."""

    name: str
    method: str
    path: str
    role: str | None = "admin"
    content: bytes | str | None = None
    json_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] | None = None
    expect: int | None = None
    says: str | None = None  # a text the body must contain


def nested_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def nested_metadata(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def merge_chain(levels: int) -> str:
    lines = ["a0: &a0 {x: 1, y: 2}"]
    lines += [f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], k{i}: 1}}" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n" + API_GATE


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 "lol"']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def many_merges(count: int) -> str:
    return "vars: {" + ", ".join(f"v{i}: {{<<: {{a: 1}}}}" for i in range(count)) + "}\n"


def many_aliases(count: int) -> str:
    return "x: &x 1\nvars: {" + ", ".join(f"v{i}: *x" for i in range(count)) + "}\n"


CHECKS = "/api/v1/gates/portal/checks"
PUT = "/api/v1/gates/edge"
STORED = "/api/v1/gates/stored"
BIG = 2**64
BODY_ROUTES = [
    ("POST", CHECKS),
    ("PUT", PUT),
    ("POST", "/api/v1/checks/{id}/signoffs"),
    ("POST", "/api/v1/checks/{id}/decision"),
    ("POST", "/api/v1/checks/{id}/cancel"),
    ("POST", "/api/v1/integrations/flagger/portal"),
    ("POST", "/api/v1/integrations/flagger/portal/rollback"),
]


def corpus() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    # -- depth ------------------------------------------------------------------------------
    add(
        Case(
            "metadata 255 deep",
            "POST",
            CHECKS,
            "pipeline",
            json_body={"version": "1", "metadata": nested_metadata(255)},
            expect=422,
            says="nested deeper than 8",
        )
    )
    add(
        Case(
            "metadata 9 deep",
            "POST",
            CHECKS,
            "pipeline",
            json_body={"version": "1", "metadata": nested_metadata(9)},
            expect=422,
        )
    )
    add(
        Case(
            "metadata list 50 deep",
            "POST",
            CHECKS,
            "pipeline",
            content='{"version": "1", "metadata": {"a": ' + nested_list(50) + "}}",
            headers={"Content-Type": "application/json"},
            expect=422,
        )
    )
    add(
        Case(
            "JSON body 100000 deep",
            "POST",
            CHECKS,
            "pipeline",
            content=nested_list(100_000),
            headers={"Content-Type": "application/json"},
        )
    )
    for depth in (65, 5_000, 100_000):
        add(
            Case(
                f"gate YAML {depth} deep",
                "PUT",
                PUT,
                content=nested_list(depth),
                expect=422,
                says="nested too deeply",
            )
        )
    add(
        Case(
            "gate JSON 5000 deep",
            "PUT",
            PUT,
            content=nested_object(5_000),
            headers={"Content-Type": "application/json"},
            expect=422,
            says="nested too deeply",
        )
    )
    add(
        Case(
            "gate block YAML 200 deep",
            "PUT",
            PUT,
            content="".join(" " * i + "a:\n" for i in range(200)),
            expect=422,
            says="nested too deeply",
        )
    )
    add(
        Case(
            "stored gate replaced by a deep one",
            "PUT",
            STORED,
            content=nested_list(5_000),
            expect=422,
        )
    )
    add(
        Case(
            "flagger body 100000 deep",
            "POST",
            "/api/v1/integrations/flagger/portal",
            "pipeline",
            content=nested_list(100_000),
            headers={"Content-Type": "application/json"},
            expect=422,
        )
    )
    # -- size -------------------------------------------------------------------------------
    add(
        Case(
            "gate 300 KiB",
            "PUT",
            PUT,
            content="# " + "x" * 300 * 1024 + "\n" + API_GATE,
            expect=413,
            says="larger than",
        )
    )
    add(
        Case(
            "body 2 MiB",
            "POST",
            CHECKS,
            "pipeline",
            content=b"{" + b" " * (2 << 20) + b"}",
            headers={"Content-Type": "application/json"},
            expect=413,
        )
    )
    add(
        Case(
            "metadata 20 KiB",
            "POST",
            CHECKS,
            "pipeline",
            json_body={"version": "1", "metadata": {"a": "x" * 20_000}},
            expect=422,
        )
    )
    add(
        Case(
            "metadata 5000 keys",
            "POST",
            CHECKS,
            "pipeline",
            json_body={"version": "1", "metadata": {f"k{i}": i for i in range(5000)}},
            expect=422,
        )
    )
    add(
        Case(
            "vars 5000 keys",
            "POST",
            CHECKS,
            "pipeline",
            json_body={"version": "1", "vars": {f"k{i}": "v" for i in range(5000)}},
        )
    )
    add(
        Case(
            "gate 25000 values",
            "PUT",
            PUT,
            content="vars: {" + ", ".join(f"v{i}: {i}" for i in range(12_000)) + "}\n",
            expect=422,
            says="too many values",
        )
    )
    add(
        Case(
            "Idempotency-Key 8 KB",
            "POST",
            CHECKS,
            "pipeline",
            json_body={"version": "1"},
            headers={"Idempotency-Key": "k" * 8000},
            expect=422,
        )
    )
    add(
        Case(
            "Authorization 8 KB",
            "GET",
            "/api/v1/gates",
            None,
            headers={"Authorization": "Bearer " + "t" * 8000},
            expect=401,
        )
    )
    add(
        Case(
            "60 headers of 100 bytes",
            "GET",
            "/api/v1/gates",
            "viewer",
            headers={f"X-Filler-{i}": "f" * 100 for i in range(60)},
            expect=200,
        )
    )
    # -- overflow ---------------------------------------------------------------------------
    for value in (str(BIG), "9999999999999999999", "1" * 30, "²", "-1", "1e3"):
        add(
            Case(
                f"cursor {value[:12]}",
                "GET",
                "/api/v1/gates/portal/samples",
                "viewer",
                params={"cursor": value},
                expect=422,
                says="cursor",
            )
        )
    for value in (str(BIG), "-1", "1e400"):
        add(
            Case(
                f"after {value[:12]}",
                "GET",
                "/api/v1/checks/{id}/events",
                "viewer",
                params={"after": value},
                expect=422,
                says="after",
            )
        )
    for path in ("/api/v1/gates/portal/samples", "/api/v1/checks", "/api/v1/checks/{id}/events"):
        add(
            Case(
                f"limit 2**64 on {path}",
                "GET",
                path,
                "viewer",
                params={"limit": str(BIG)},
                expect=422,
                says="limit",
            )
        )
    for value in ("nan", "inf", "1e400", str(BIG)):
        add(
            Case(
                f"wait {value}",
                "GET",
                "/api/v1/checks/{id}",
                "viewer",
                params={"wait": value},
                expect=422,
                says="wait",
            )
        )
    for value in (
        "99999999999999999999",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2026-11-24T10:00:00",
        "nan",
    ):
        add(
            Case(
                f"since {value}",
                "GET",
                "/api/v1/gates/portal/samples",
                "viewer",
                params={"since": value},
                expect=422,
                says="since",
            )
        )
    for value in (1e308, BIG, -1, "99999999999999999999d"):
        add(
            Case(
                f"check timeout {value!s:.12}",
                "POST",
                CHECKS,
                "pipeline",
                json_body={"version": "1", "timeout": value},
                expect=422,
                says="timeout",
            )
        )
    add(
        Case(
            "check timeout 1e400",
            "POST",
            CHECKS,
            "pipeline",
            content='{"version": "1", "timeout": 1e400}',
            headers={"Content-Type": "application/json"},
            expect=422,
        )
    )
    add(
        Case(
            "metadata NaN",
            "POST",
            CHECKS,
            "pipeline",
            content='{"version": "1", "metadata": {"a": NaN}}',
            headers={"Content-Type": "application/json"},
            expect=422,
            says="finite",
        )
    )
    add(
        Case(
            "metadata 5000-digit integer",
            "POST",
            CHECKS,
            "pipeline",
            content='{"version": "1", "metadata": {"a": ' + "9" * 5000 + "}}",
            headers={"Content-Type": "application/json"},
        )
    )
    # -- encodings --------------------------------------------------------------------------
    add(
        Case(
            "check body invalid UTF-8",
            "POST",
            CHECKS,
            "pipeline",
            content=b'{"version": "\xff\xfe"}',
            headers={"Content-Type": "application/json"},
        )
    )
    add(
        Case(
            "check body overlong UTF-8",
            "POST",
            CHECKS,
            "pipeline",
            content=b'{"version": "\xc0\xaf"}',
            headers={"Content-Type": "application/json"},
        )
    )
    add(
        Case(
            "check body UTF-16 with BOM",
            "POST",
            CHECKS,
            "pipeline",
            content='{"version": "1"}'.encode("utf-16"),
            headers={"Content-Type": "application/json"},
        )
    )
    add(
        Case(
            "NUL in a metadata value",
            "POST",
            CHECKS,
            "pipeline",
            json_body={"version": "1", "metadata": {"a": "x\u0000y"}},
            expect=422,
            says="U+0000",
        )
    )
    add(
        Case(
            "NUL in a metadata key",
            "POST",
            CHECKS,
            "pipeline",
            json_body={"version": "1", "metadata": {"a\u0000": "y"}},
            expect=422,
        )
    )
    add(
        Case(
            "escape in a metadata value",
            "POST",
            CHECKS,
            "pipeline",
            json_body={"version": "1", "metadata": {"a": "\u001b[31m"}},
            expect=422,
        )
    )
    add(
        Case(
            "lone surrogate in metadata",
            "POST",
            CHECKS,
            "pipeline",
            content='{"version": "1", "metadata": {"a": "\\ud800"}}',
            headers={"Content-Type": "application/json"},
            expect=422,
        )
    )
    add(
        Case(
            "NUL in a manual decision reason",
            "POST",
            "/api/v1/checks/{id}/decision",
            "approver",
            json_body={"decision": "no_go", "reason": "a\u0000b"},
            expect=422,
        )
    )
    add(
        Case(
            "NUL in a sign-off comment",
            "POST",
            "/api/v1/checks/{id}/signoffs",
            "approver",
            json_body={"signoff": "uat", "comment": "\u0000"},
            expect=422,
        )
    )
    add(
        Case(
            "NUL in a cancel reason",
            "POST",
            "/api/v1/checks/{id}/cancel",
            "pipeline",
            json_body={"reason": "\u0000"},
            expect=422,
        )
    )
    add(Case("NUL in version", "POST", CHECKS, "pipeline", json_body={"version": "1\u0000"}))
    add(
        Case(
            "gate invalid UTF-8",
            "PUT",
            PUT,
            content=b"description: \xff\n",
            expect=422,
            says="UTF-8",
        )
    )
    add(Case("gate overlong UTF-8", "PUT", PUT, content=b"description: \xc0\xaf\n", expect=422))
    add(Case("gate UTF-16 with BOM", "PUT", PUT, content=API_GATE.encode("utf-16"), expect=422))
    add(Case("gate raw NUL", "PUT", PUT, content="description: a\u0000b\n" + API_GATE, expect=422))
    for name in ("%00", "%ED%A0%80", "%C0%AF", "a" * 80):
        add(Case(f"check id {name[:10]}", "GET", f"/api/v1/checks/{name}", "viewer", expect=404))
        add(Case(f"gate name {name[:10]}", "GET", f"/api/v1/gates/{name}", "viewer", expect=404))
    add(
        Case(
            "gate filter with NUL",
            "GET",
            "/api/v1/checks",
            "viewer",
            params={"gate": "\u0000"},
            expect=422,
        )
    )
    # -- YAML bombs -------------------------------------------------------------------------
    add(
        Case(
            "billion laughs",
            "PUT",
            PUT,
            content=billion_laughs(),
            expect=422,
            says="too many values",
        )
    )
    add(Case("merge chain of 24", "PUT", PUT, content=merge_chain(24), expect=422))
    add(
        Case(
            "70 merge keys",
            "PUT",
            PUT,
            content=many_merges(70),
            expect=422,
            says="too many merge keys",
        )
    )
    add(
        Case(
            "150 aliases",
            "PUT",
            PUT,
            content=many_aliases(150),
            expect=422,
            says="too many aliases",
        )
    )
    add(Case("recursive alias", "PUT", PUT, content="&a [*a]\n", expect=422))
    add(Case("stored gate replaced by a bomb", "PUT", STORED, content=billion_laughs(), expect=422))
    add(
        Case("python tag", "PUT", PUT, content="!!python/object/apply:os.system [id]\n", expect=422)
    )
    # -- content types ----------------------------------------------------------------------
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
    ):
        add(
            Case(
                f"check body as {content_type}",
                "POST",
                CHECKS,
                "pipeline",
                content='{"version": "1"}',
                headers={"Content-Type": content_type},
            )
        )
    add(
        Case(
            "gate as octet-stream garbage",
            "PUT",
            PUT,
            content=bytes(range(256)),
            headers={"Content-Type": "application/octet-stream"},
            expect=422,
        )
    )
    add(
        Case(
            "gate as form",
            "PUT",
            PUT,
            content="a=1&b=2",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            expect=422,
        )
    )
    add(Case("check body is a JSON list", "POST", CHECKS, "pipeline", json_body=[1, 2], expect=422))
    add(
        Case(
            "check body is empty",
            "POST",
            CHECKS,
            "pipeline",
            content=b"",
            headers={"Content-Type": "application/json"},
            expect=422,
        )
    )
    # -- authentication before the body -----------------------------------------------------
    for method, path in BODY_ROUTES:
        add(
            Case(
                f"malformed JSON, no token: {method} {path}",
                method,
                path,
                None,
                content="{not json",
                headers={"Content-Type": "application/json"},
                expect=401,
            )
        )
        add(
            Case(
                f"malformed JSON, bad token: {method} {path}",
                method,
                path,
                None,
                content="{not json",
                headers={"Content-Type": "application/json", "Authorization": "Bearer nope"},
                expect=401,
            )
        )
    for method, path in BODY_ROUTES[:5]:
        add(
            Case(
                f"malformed JSON, viewer: {method} {path}",
                method,
                path,
                "viewer",
                content="{not json",
                headers={"Content-Type": "application/json"},
                expect=403,
            )
        )
    return cases


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


async def snapshot(service: Service, check_id: str) -> dict[str, Any]:
    """Everything the corpus must leave as it found it."""
    gates = (await service.get("/api/v1/gates")).json()
    texts = {g["name"]: (await service.get(f"/api/v1/gates/{g['name']}")).json() for g in gates}
    checks = (await service.get("/api/v1/checks")).json()
    events = (await service.get(f"/api/v1/checks/{check_id}/events")).json()
    return {
        "gates": {n: (b["version"], b["text"], b["source"]) for n, b in texts.items()},
        "checks": {c["id"]: (c["state"], c["decision"]) for c in checks["items"]},
        "check": (await service.get(f"/api/v1/checks/{check_id}")).json(),
        "events": [(e["id"], e["kind"]) for e in events["items"]],
    }


async def send(service: Service, case: Case, check_id: str) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {TOKENS[case.role]}"} if case.role else {}
    headers.update(case.headers)
    kwargs: dict[str, Any] = {"headers": headers, "params": case.params}
    if case.json_body is not None:
        kwargs["json"] = case.json_body
    elif case.content is not None:
        kwargs["content"] = case.content
    path = case.path.replace("{id}", check_id)
    try:
        response = await service.client.request(case.method, path, **kwargs)
    except Exception as fault:  # the app raised past its error handlers: a 500 in service
        return 500, f"{type(fault).__name__}: {fault}"
    return response.status_code, response.text


def _is_problem(text: str, status: int) -> bool:
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("status") == status and "detail" in body


async def test_the_bad_input_corpus_gets_no_5xx_and_changes_nothing(
    service: Service, captured_logs: io.StringIO
) -> None:
    stored = await service.client.put(STORED, content=API_GATE, headers=service.headers("admin"))
    assert stored.status_code == 201, stored.text
    check = await service.start_check(metadata={"ticket": "CHG-1"})
    # Its first sample is taken at once; then nothing moves until the clock does.
    await service.samples_reach(check["id"], 1)
    await service.quiet()
    before = await snapshot(service, check["id"])

    cases = corpus()
    server_errors: list[str] = []
    wrong: list[str] = []
    for case in cases:
        status, text = await send(service, case, check["id"])
        if status >= 500:
            server_errors.append(f"{case.name}: {status} {text[:200]}")
        if "Traceback" in text:
            wrong.append(f"{case.name}: traceback in the body")
        if case.expect is not None and status != case.expect:
            wrong.append(f"{case.name}: {status} (expected {case.expect}) {text[:200]}")
        if case.says is not None and case.says not in text:
            wrong.append(f"{case.name}: body does not say {case.says!r}: {text[:200]}")
        if status >= 400 and not _is_problem(text, status):
            wrong.append(f"{case.name}: {status} is not a problem+json body: {text[:200]}")

    print(f"\nbad-input corpus: {len(cases)} cases, {len(server_errors)} answered 5xx")
    assert server_errors == [], "\n".join(server_errors)
    assert wrong == [], "\n".join(wrong)
    logs = captured_logs.getvalue()
    assert "Traceback" not in logs
    assert "unhandled error" not in logs
    after = await snapshot(service, check["id"])
    # Cases the rules allow (a UTF-16 body is JSON too) may add checks; none may change one.
    assert {i: after["checks"].get(i) for i in before["checks"]} == before["checks"]
    assert {**after, "checks": None} == {**before, "checks": None}


def test_the_corpus_covers_every_class() -> None:
    names = " ".join(case.name for case in corpus())
    for word in (
        "deep",
        "KiB",
        "cursor",
        "limit",
        "since",
        "UTF-8",
        "UTF-16",
        "NUL",
        "laughs",
        "merge",
        "alias",
        "text/plain",
        "no token",
        "Authorization",
    ):
        assert word in names, word
    assert len(corpus()) >= 100
