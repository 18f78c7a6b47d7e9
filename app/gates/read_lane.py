"""``GET /api/v1/gates/{gate}/decision`` answered ahead of FastAPI's routing.

Pipelines, Argo Rollouts analyses and Flagger webhooks poll this one URL far more than any
other. The answer is the bytes of the scheduler's current view of the gate's decision
(``GateScheduler.latest_body``, which like every read answers the stale ``no_go`` once
the decision has expired; there is no accessor for the stored bytes without that check),
so the cost of a read is all framework: route matching over every route and dependency
resolution cost more than the answer (``bench/decision_api.py``). This lane serves only
the plain case, an authorised caller asking for a gate that has been evaluated, from the
same bytes and through the same ``TokenAuthenticator``. Every other case (no or bad token,
unknown gate, no evaluation yet, state not ready) goes on to the FastAPI route, the one
place that shapes those answers.
"""

from __future__ import annotations

from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.problems import Problem

PREFIX = "/api/v1/gates/"
SUFFIX = "/decision"
READ_ROLE = "viewer"


class DecisionReadLane:
    def __init__(self, app: ASGIApp, *, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self._plain_answer(scope) if scope["type"] == "http" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _plain_answer(self, scope: Scope) -> bytes | None:
        path: str = scope["path"]
        if scope["method"] != "GET" or not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
            return None
        gate = path[len(PREFIX) : -len(SUFFIX)]
        catalog = getattr(self.state, "catalog", None)
        scheduler = getattr(self.state, "scheduler", None)
        if catalog is None or scheduler is None or catalog.get(gate) is None:
            return None
        if not self._may_read(scope):
            return None
        body: bytes | None = scheduler.latest_body(gate)
        return body

    def _may_read(self, scope: Scope) -> bool:
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            principal = self.state.authenticator.authenticate(authorization)
        except Problem:
            return False
        return bool(principal.has(READ_ROLE))
