"""A fake Alertmanager API v2 ``GET /api/v2/alerts``.

It keeps a list of alerts in the real ``gettableAlert`` shape and applies the request's
``active``/``silenced``/``inhibited`` flags and repeated ``filter`` matchers as the real
handler does: a bad matcher is HTTP 400 with a bare JSON string, a non-boolean flag HTTP
422 ``{"code": 601, "message": ...}``; alerts come sorted by fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from aiohttp import web

from tests.fakes import Reply, ScriptedFake

_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


def alert(
    name: str,
    *,
    state: str = "active",
    silenced_by: tuple[str, ...] = (),
    inhibited_by: tuple[str, ...] = (),
    **labels: str,
) -> dict[str, Any]:
    """An alert as Alertmanager serialises it (keys in the server's order)."""
    all_labels = {"alertname": name, **labels}
    fingerprint = hashlib.sha256(repr(sorted(all_labels.items())).encode()).hexdigest()[:16]
    return {
        "annotations": {"summary": f"{name} is firing"},
        "endsAt": "2026-11-24T10:05:00.000Z",
        "fingerprint": fingerprint,
        "receivers": [{"name": "oncall"}],
        "startsAt": "2026-11-24T09:55:00.000Z",
        "status": {
            "inhibitedBy": list(inhibited_by),
            "mutedBy": [],
            "silencedBy": list(silenced_by),
            "state": state,
        },
        "updatedAt": "2026-11-24T10:00:00.000Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "labels": all_labels,
    }


def _matches(matcher: tuple[str, str, str], labels: dict[str, str]) -> bool:
    name, op, value = matcher
    actual = labels.get(name, "")
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    found = re.fullmatch(value, actual) is not None
    return found if op == "=~" else not found


class AlertmanagerFake(ScriptedFake):
    def __init__(self) -> None:
        super().__init__()
        self.alerts: list[dict[str, Any]] = []

    def add_routes(self, app: web.Application) -> None:
        async def alerts(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, self._answer)

        app.router.add_get("/api/v2/alerts", alerts)

    def _answer(self, request: web.Request) -> Reply:
        flags: dict[str, bool] = {}
        for flag in ("active", "silenced", "inhibited", "unprocessed"):
            raw = request.query.get(flag, "true")
            if raw not in ("true", "false"):
                message = f'{flag} in query must be of type bool: "{raw}"'
                return Reply(status=422, json={"code": 601, "message": message})
            flags[flag] = raw == "true"
        matchers = []
        for text in request.query.getall("filter", []):
            if text.startswith("{") or text.endswith("}"):
                return Reply(status=400, json=f"unexpected open or close brace: {text}")
            found = _MATCHER.match(text)
            if found is None:
                return Reply(status=400, json=f"bad matcher format: {text}")
            matchers.append((found.group(1), found.group(2), found.group(3)))
        chosen = []
        for item in self.alerts:
            status = item["status"]
            if status["silencedBy"] and not flags["silenced"]:
                continue
            if status["inhibitedBy"] and not flags["inhibited"]:
                continue
            if status["state"] == "active" and not flags["active"]:
                continue
            if all(_matches(m, item["labels"]) for m in matchers):
                chosen.append(item)
        return Reply(json=sorted(chosen, key=lambda a: a["fingerprint"]))
