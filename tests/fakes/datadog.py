"""A local Datadog ``GET /api/v1/query`` (query timeseries points).

Speaks the documented wire format: the success envelope of
``examples/datadog_query.json`` with ``from_date``/``to_date`` in ms, one series per
group, ``pointlist`` of ``[ms, value|null]``; 403 ``{"errors":["Forbidden"]}`` when either
key header is missing or wrong; 400 ``{"errors":[...]}`` for missing parameters; 429 with
the ``X-RateLimit-*`` headers Datadog sends (no ``Retry-After``).

Tests set what a query returns with ``set_points`` / ``set_series`` (unknown queries get
``series: []``, as Datadog answers a query that matches nothing), or script faults. A
series whose points all lie before the requested window is moved into it (see
``_within``), so a test's series describes "now" whatever instant the test samples.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from tests.fakes import Reply, ScriptedFake, example

API_KEY = "dd-api-key-0123456789abcdef"
APP_KEY = "dd-app-key-fedcba9876543210"
POINT_INTERVAL_S = 60


def rate_limit_headers(
    *, limit: int = 1600, period: int = 3600, remaining: int = 0, reset: int = 3
) -> dict[str, str]:
    """Datadog's rate-limit headers (lower-case, as the captured cassette shows them)."""
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-period": str(period),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(reset),
        "x-ratelimit-name": "query_timeseries",
    }


def series(
    values: Sequence[float | None],
    *,
    scope: str = "*",
    metric: str = "system.cpu.idle",
    end_ms: float = 1623847200000.0,
    interval_s: int = POINT_INTERVAL_S,
) -> dict[str, Any]:
    """One series shaped like the captured one, with ``values`` as its points (oldest first)."""
    template: dict[str, Any] = copy.deepcopy(example("datadog_query.json")["series"][0])
    start_ms = end_ms - interval_s * 1000 * (len(values) - 1)
    pointlist = [[start_ms + i * interval_s * 1000, v] for i, v in enumerate(values)]
    template.update(
        {
            "metric": metric,
            "display_name": metric,
            "scope": scope,
            "expression": f"{metric}{{{scope}}}",
            "tag_set": [] if scope == "*" else scope.split(","),
            "interval": interval_s,
            "length": len(values),
            "start": int(start_ms),
            "end": int(end_ms) + interval_s * 1000 - 1,
            "pointlist": pointlist,
        }
    )
    return template


class DatadogFake(ScriptedFake):
    def __init__(self, *, api_key: str = API_KEY, app_key: str = APP_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.app_key = app_key
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.envelope_overrides: dict[str, Any] = {}

    # -- what tests call ---------------------------------------------------------

    def set_points(self, query: str, values: Sequence[float | None]) -> None:
        """``query`` returns one series with these points."""
        self.results[query] = [series(values)]

    def set_series(self, query: str, items: Sequence[dict[str, Any]]) -> None:
        self.results[query] = list(items)

    def forbidden(self) -> Reply:
        return Reply(status=403, json=example("datadog_error.json"))

    def rate_limited(self, *, reset: int = 3) -> Reply:
        return Reply(
            status=429,
            json=example("datadog_error_429.json"),
            headers=rate_limit_headers(reset=reset),
        )

    # -- serving -------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        async def query(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, self._answer)

        app.router.add_get("/api/v1/query", query)

    def _answer(self, request: web.Request) -> Reply:
        if (
            request.headers.get("DD-API-KEY") != self.api_key
            or request.headers.get("DD-APPLICATION-KEY") != self.app_key
        ):
            return self.forbidden()
        params = request.query
        missing = [name for name in ("from", "to", "query") if not params.get(name)]
        if missing or not params["from"].isdigit() or not params["to"].isdigit():
            return Reply(status=400, json=example("datadog_error_400.json"))
        query = params["query"]
        body = copy.deepcopy(example("datadog_query_empty.json"))
        body.update(
            {
                "query": query,
                "from_date": int(params["from"]) * 1000,
                "to_date": int(params["to"]) * 1000,
                "series": copy.deepcopy(self.results.get(query, [])),
            }
        )
        for item in body["series"]:
            _within(item, from_ms=body["from_date"], to_ms=body["to_date"])
        body.update(self.envelope_overrides)
        return Reply(json=body, headers=rate_limit_headers(remaining=1599))


def _within(item: dict[str, Any], *, from_ms: int, to_ms: int) -> None:
    """Move a series whose points all lie before the requested window into it, as
    Datadog only ever answers points between ``from`` and ``to``: whole intervals later,
    its last point starting the last complete interval before ``to``."""
    points = item.get("pointlist")
    if not isinstance(points, list) or not points or not isinstance(points[-1], list):
        return
    last = points[-1][0]
    step = int(item.get("interval") or POINT_INTERVAL_S) * 1000
    if not isinstance(last, int | float) or last >= from_ms:
        return
    shift = ((to_ms - step - last) // step) * step
    for point in points:
        point[0] += shift
    for key in ("start", "end"):
        if isinstance(item.get(key), int | float):
            item[key] += shift
