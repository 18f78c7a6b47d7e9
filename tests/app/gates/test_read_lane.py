"""The decision read lane: the plain read is answered from the scheduler's bytes; every
other case reaches the FastAPI route and gets its usual answer."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from app.core.auth import TokenAuthenticator
from app.core.settings import load_settings
from app.gates.read_lane import DecisionReadLane
from tests.app.conftest import TOKENS, TOKENS_SETTING, Service
from tests.app.test_api import API_GATE, assert_problem

BODY = b'{"gate":"portal","decision":"go"}'


class Scheduler:
    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies

    def latest_body(self, gate: str) -> bytes | None:
        return self.bodies.get(gate)


class Catalog:
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def get(self, name: str) -> object | None:
        return object() if name in self.names else None


class Downstream:
    """The rest of the app: records that a request reached it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"route"})


def lane(*, tokens: str = TOKENS_SETTING, ready: bool = True) -> tuple[DecisionReadLane, Any]:
    state = SimpleNamespace(authenticator=TokenAuthenticator(load_settings(tokens=tokens).tokens))
    if ready:
        state.catalog = Catalog({"portal", "fresh"})
        # "gone" was evaluated, then removed from the catalog: its bytes must not be served.
        state.scheduler = Scheduler({"portal": BODY, "gone": BODY})
    downstream = Downstream()
    return DecisionReadLane(downstream, state=state), downstream


async def ask(
    app: DecisionReadLane, path: str, *, method: str = "GET", token: str | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    if token is None:
        headers = []
    elif " " in token:  # a whole header value
        headers = [(b"authorization", token.encode())]
    else:
        headers = [(b"authorization", f"Bearer {token}".encode())]
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start, body = messages
    return start["status"], dict(start["headers"]), body["body"]


async def test_an_authorised_read_of_an_evaluated_gate_is_served_from_the_bytes() -> None:
    app, downstream = lane()
    status, headers, body = await ask(app, "/api/v1/gates/portal/decision", token=TOKENS["viewer"])
    assert (status, body) == (200, BODY)
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == str(len(BODY)).encode()
    assert headers[b"cache-control"] == b"no-store"
    assert downstream.paths == []


async def test_open_access_needs_no_token() -> None:
    app, downstream = lane(tokens="")
    status, _, body = await ask(app, "/api/v1/gates/portal/decision")
    assert (status, body) == (200, BODY)
    assert downstream.paths == []


@pytest.mark.parametrize(
    ("path", "method", "token", "why"),
    [
        ("/api/v1/gates/portal/decision", "GET", None, "no token"),
        ("/api/v1/gates/portal/decision", "GET", "not-a-token", "bad token"),
        ("/api/v1/gates/portal/decision", "GET", f"Basic {TOKENS['viewer']}", "other scheme"),
        ("/api/v1/gates/nope/decision", "GET", TOKENS["viewer"], "unknown gate"),
        ("/api/v1/gates/gone/decision", "GET", TOKENS["viewer"], "removed gate, bytes left"),
        ("/api/v1/gates/fresh/decision", "GET", TOKENS["viewer"], "not evaluated yet"),
        ("/api/v1/gates/portal/decision", "HEAD", TOKENS["viewer"], "another method"),
        ("/api/v1/gates/portal", "GET", TOKENS["viewer"], "another path"),
        ("/api/v1/gates/a/b/decision", "GET", TOKENS["viewer"], "nested path"),
    ],
)
async def test_every_other_request_goes_on_to_the_route(
    path: str, method: str, token: str | None, why: str
) -> None:
    app, downstream = lane()
    status, _, body = await ask(app, path, method=method, token=token)
    assert (status, body) == (418, b"route"), why
    assert downstream.paths == [path]


async def test_before_start_up_the_route_answers() -> None:
    app, downstream = lane(ready=False)
    status, _, _ = await ask(app, "/api/v1/gates/portal/decision", token=TOKENS["viewer"])
    assert status == 418
    assert downstream.paths == ["/api/v1/gates/portal/decision"]


async def test_through_the_app_the_lane_and_the_route_agree(service: Service) -> None:
    state = service.app.state
    await service.advance(10)
    await service.until(lambda: _evaluated(state, "portal"))

    served = await service.get("/api/v1/gates/portal/decision")
    assert served.status_code == 200
    assert served.content == state.scheduler.latest_body("portal")
    assert served.headers["cache-control"] == "no-store"

    client = service.client
    no_token = await client.get("/api/v1/gates/portal/decision")
    assert_problem(no_token, 401)
    assert "www-authenticate" in no_token.headers
    bad = await client.get(
        "/api/v1/gates/portal/decision", headers={"Authorization": "Bearer wrong"}
    )
    assert_problem(bad, 401)
    assert_problem(await service.get("/api/v1/gates/nope/decision"), 404)


async def test_a_deleted_gate_is_not_served_from_stale_bytes(service: Service) -> None:
    admin = service.headers("admin")
    created = await service.client.put("/api/v1/gates/doomed", content=API_GATE, headers=admin)
    assert created.status_code == 201
    state = service.app.state
    await service.until(lambda: _evaluated(state, "doomed"))
    assert (await service.get("/api/v1/gates/doomed/decision")).status_code == 200

    deleted = await service.client.delete("/api/v1/gates/doomed", headers=admin)
    assert deleted.status_code == 204
    assert_problem(await service.get("/api/v1/gates/doomed/decision"), 404)


async def _evaluated(state: Any, gate: str) -> bool:
    return state.scheduler.latest_body(gate) is not None
