"""A fake Prometheus instant-query API.

``GET|POST /api/v1/query`` (under an optional path prefix) answers in the documented
envelope: values are JSON strings, timestamps Unix seconds (the fraction written only when
the milliseconds are not zero), errors ``{"status":"error","errorType","error"}`` with the
documented HTTP status, and 401 ``Unauthorized\\n`` as plain text when auth is required.
Answers come from ``results`` (by exact query text), else ``default``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import Reply, ScriptedFake

ERROR_STATUS = {
    "bad_data": 400,
    "execution": 422,
    "timeout": 503,
    "canceled": 499,
    "internal": 500,
    "unavailable": 500,
    "not_found": 404,
}


def prom_number(value: float) -> str:
    """A sample value as Prometheus writes it (a string; NaN and ±Inf spelled its way)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(float(value))
    return text.removesuffix(".0")


def prom_time(seconds: float) -> float | int:
    millis = round(seconds * 1000)
    return millis // 1000 if millis % 1000 == 0 else millis / 1000


@dataclass(frozen=True)
class Series:
    value: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """What a query evaluates to: a vector of series, a scalar, another type, or an error."""

    kind: str = "vector"  # vector | scalar | matrix | string | error
    series: tuple[Series, ...] = ()
    scalar: float = 0.0
    error_type: str = "bad_data"
    error: str = ""


def vector(*values: float, **labels: str) -> Result:
    """A vector with one series per value (labels numbered so series differ)."""
    return Result(
        series=tuple(
            Series(v, {**labels, "instance": f"10.0.0.{i}:9100"}) for i, v in enumerate(values)
        )
    )


def scalar(value: float) -> Result:
    return Result(kind="scalar", scalar=value)


def failed(error_type: str, message: str) -> Result:
    return Result(kind="error", error_type=error_type, error=message)


class PrometheusFake(ScriptedFake):
    def __init__(self, *, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix.rstrip("/")
        self.default: Result = vector(1.0)
        self.results: dict[str, Result] = {}

    def add_routes(self, app: web.Application) -> None:
        async def query(request: web.Request) -> web.StreamResponse:
            form: dict[str, Any] = {}
            if request.method == "POST":
                form = dict(await request.post())
            return await self.handle(request, lambda r: self._answer(r, form))

        app.router.add_route("GET", f"{self.prefix}/api/v1/query", query)
        app.router.add_route("POST", f"{self.prefix}/api/v1/query", query)

    def queries(self) -> list[str]:
        return [r.param("query") or "" for r in self.requests]

    def _answer(self, request: web.Request, form: dict[str, Any]) -> Reply:
        params = {**request.query, **form}
        text = str(params.get("query", ""))
        if not text.strip():
            return self._error(
                "bad_data",
                'invalid parameter "query": unknown position: parse error: '
                "no expression found in input",
            )
        at = float(params["time"]) if "time" in params else 1767436620.0
        result = self.results.get(text, self.default)
        if result.kind == "error":
            return self._error(result.error_type, result.error)
        data: dict[str, Any]
        if result.kind == "scalar":
            data = {"resultType": "scalar", "result": [prom_time(at), prom_number(result.scalar)]}
        elif result.kind == "string":
            data = {"resultType": "string", "result": [prom_time(at), "hello"]}
        elif result.kind == "matrix":
            data = {
                "resultType": "matrix",
                "result": [
                    {
                        "metric": s.labels,
                        "values": [
                            [prom_time(at - 15), prom_number(s.value)],
                            [prom_time(at), prom_number(s.value)],
                        ],
                    }
                    for s in result.series
                ],
            }
        else:
            data = {
                "resultType": "vector",
                "result": [
                    {"metric": s.labels, "value": [prom_time(at), prom_number(s.value)]}
                    for s in result.series
                ],
            }
        return Reply(json={"status": "success", "data": data})

    def _error(self, error_type: str, message: str) -> Reply:
        return Reply(
            status=ERROR_STATUS.get(error_type, 500),
            json={"status": "error", "errorType": error_type, "error": message},
        )
