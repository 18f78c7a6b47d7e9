"""Following a check rides out a server that is away for a while (a replica restarting,
a database outage answered 503, a gateway's 502), and gives up with the cause once that
lasts too long; any other refusal is an error at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from app.cli.client import ClientError, GonogoClient
from tests.fakes.server import ThreadedServer, refused_port

RUNNING = {"id": "c1", "state": "running", "decision": "no_go"}
FINAL = {"id": "c1", "state": "final", "decision": "go"}


class Script:
    """Answers ``GET /api/v1/checks/c1`` with the statuses given, then the final check."""

    def __init__(self, *statuses: int, retry_after: str | None = None) -> None:
        self.statuses = list(statuses)
        self.retry_after = retry_after
        self.asked = 0

    async def check(self, _: web.Request) -> web.Response:
        self.asked += 1
        if self.statuses:
            status = self.statuses.pop(0)
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.json_response(
                {"title": "unavailable", "status": status, "detail": "the database is away"},
                status=status,
                headers=headers,
                content_type="application/problem+json",
            )
        return web.json_response(FINAL)


@pytest.fixture
def served() -> Iterator[tuple[Script, str]]:
    script = Script()
    app = web.Application()
    app.router.add_get("/api/v1/checks/c1", script.check)
    with ThreadedServer(app) as server:
        yield script, server.url


def test_503s_and_502s_are_asked_again_with_the_retry_after_heard(
    served: tuple[Script, str],
) -> None:
    script, url = served
    script.statuses = [503, 502, 429, 504]
    script.retry_after = "3"
    pauses: list[float] = []
    notices: list[str] = []
    with GonogoClient(url, None) as client:
        body = client.poll("c1", wait=0, notice=notices.append, sleep=pauses.append)
    assert body == FINAL
    assert script.asked == 5
    assert pauses == [3.0, 3.0, 3.0, 4.0]  # Retry-After, until the backoff outgrows it
    assert "HTTP 503" in notices[0] and "asking again in 3.0s" in notices[0]


def test_an_unreachable_server_is_asked_again_until_the_ride_out_ends() -> None:
    pauses: list[float] = []
    with (
        GonogoClient(f"http://127.0.0.1:{refused_port()}", None) as client,
        pytest.raises(ClientError, match=r"cannot reach the server.*asked again for 0\.05s"),
    ):
        client.poll("c1", wait=0, ride_out=0.05, sleep=pauses.append)
    assert pauses and all(p <= 0.05 for p in pauses)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500])
def test_any_other_refusal_is_an_error_at_once(served: tuple[Script, str], status: int) -> None:
    script, url = served
    script.statuses = [status]
    pauses: list[Any] = []
    with GonogoClient(url, None) as client, pytest.raises(ClientError, match=str(status)):
        client.poll("c1", wait=0, sleep=pauses.append)
    assert script.asked == 1 and pauses == []
