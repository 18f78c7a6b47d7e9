"""The ``datadog`` probe: one number from a Datadog metrics query.

Reads ``GET /api/v1/query?from&to&query`` (query timeseries points) with the
``DD-API-KEY`` and ``DD-APPLICATION-KEY`` headers, over the criterion's ``window``
(default 5m) ending at the sample's instant. The value is the last non-null point of the
single series; several series need ``reduce`` (over each series' last point).

A last point too old to describe the present is no value: a series whose reporting
stopped keeps its last point for as long as the window reaches back. A point is stale
when it is older than ``max(2 × the series' interval, 1 minute)`` before the window's
end (a Datadog point stamps the start of its rollup bucket, so the latest complete
bucket of a live series starts one to two intervals back); then the measurement is
inconclusive, ``last point is N s old``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field

from probes.answers import is_number, kind_of, shorten
from probes.base import (
    Measurement,
    ProbeConfig,
    ProbeContext,
    ProbeQuery,
    QuoteContext,
    Reduce,
    Series,
    combine_series,
)
from probes.client import ProbeFailure, secret_from_env, source_client
from probes.quoting import quote_datadog

TYPE_NAME = "datadog"
DEFAULT_SITE = "datadoghq.com"
DEFAULT_WINDOW = timedelta(minutes=5)
QUERY_PATH = "/api/v1/query"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_UNUSED_KEYS = ("metric", "matchers", "params", "path", "field")
# The least age a last point may have before it counts as stale, whatever the interval.
MIN_STALE_AFTER = timedelta(minutes=1)


class DatadogConfig(ProbeConfig):
    site: str = Field(
        default=DEFAULT_SITE,
        pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$",
        description="Datadog site, e.g. datadoghq.com, datadoghq.eu, us3.datadoghq.com",
    )
    api_key_env: str = Field(pattern=ENV_NAME, description="variable holding the API key")
    app_key_env: str = Field(pattern=ENV_NAME, description="variable holding the application key")

    def base_url(self) -> str:
        return self.url or f"https://api.{self.site}"


@dataclass(frozen=True, slots=True)
class _LastPoint:
    label: str
    timestamp_ms: float
    value: float
    interval_s: float | None


class DatadogProbe:
    type_name: ClassVar[str] = TYPE_NAME
    config_model: ClassVar[type[ProbeConfig]] = DatadogConfig

    def __init__(self, config: DatadogConfig, *, name: str) -> None:
        self.config = config
        self.name = name
        api_key = secret_from_env(config.api_key_env, field="api_key_env")
        app_key = secret_from_env(config.app_key_env, field="app_key_env")
        self._client = source_client(
            config,
            base_url=config.base_url(),
            headers={"DD-API-KEY": api_key or "", "DD-APPLICATION-KEY": app_key or ""},
            secrets=[api_key, app_key],
        )

    def __repr__(self) -> str:
        return f"DatadogProbe(name={self.name!r}, url={self.config.base_url()!r})"

    @staticmethod
    def check_query(query: ProbeQuery) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if not query.query or not query.query.strip():
            problems.append(
                ("query", "a datadog criterion needs query: (e.g. avg:trace.http.errors{*})")
            )
        problems.extend(_unused_keys(query, _UNUSED_KEYS))
        if query.window is not None and query.window <= timedelta(0):
            problems.append(("window", "window must be longer than 0s"))
        return problems

    @staticmethod
    def quote(value: str, context: QuoteContext) -> str:
        """A check-supplied value in Datadog metric queries (docs/probes.md#datadog)."""
        return quote_datadog(value, context)

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        if not query.query:
            return Measurement.error(f"{TYPE_NAME}: the criterion has no query", ctx.now)
        window = query.window or DEFAULT_WINDOW
        params = {
            "from": str(int((ctx.now - window).timestamp())),
            "to": str(int(ctx.now.timestamp())),
            "query": query.query,
        }
        try:
            response = await self._client.get_json(QUERY_PATH, params=params)
        except ProbeFailure as failure:
            return self._failed(failure, ctx.now)
        return read_query_response(response.json, reduce=query.reduce, now=ctx.now)

    async def measure_range(
        self,
        query: ProbeQuery,
        ctx: ProbeContext,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> Series | Measurement:
        """The query's points from ``start`` to ``end`` (the same ``/api/v1/query`` with
        ``from`` and ``to``). Datadog picks the rollup interval for the range itself, so
        ``step`` is not sent; null points are left out."""
        if not query.query:
            return Measurement.error(f"{TYPE_NAME}: the criterion has no query", ctx.now)
        params = {
            "from": str(int(start.timestamp())),
            "to": str(int(end.timestamp())),
            "query": query.query,
        }
        try:
            response = await self._client.get_json(QUERY_PATH, params=params)
        except ProbeFailure as failure:
            return self._failed(failure, ctx.now)
        return read_series_response(response.json, reduce=query.reduce, now=ctx.now)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _failed(self, failure: ProbeFailure, now: datetime) -> Measurement:
        detail = failure.detail
        if failure.http_status in (401, 403):
            detail += (
                f": check api_key_env {self.config.api_key_env}"
                f" and app_key_env {self.config.app_key_env}"
            )
        messages = error_messages(failure.body)
        if messages:
            detail += f" ({messages})"
        return Measurement(failure.status, now, detail=f"{TYPE_NAME}: {detail}")


def error_messages(body: Any) -> str:
    """The text of Datadog's ``{"errors": [...]}`` error body, or "" for anything else."""
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        texts = [str(e) for e in body["errors"] if isinstance(e, str | int | float)]
        return shorten("; ".join(texts))
    return ""


def _envelope_problem(body: Any, now: datetime) -> Measurement | None:
    """The measurement for a ``/api/v1/query`` 200 body that is no usable answer, or None."""

    def error(detail: str) -> Measurement:
        return Measurement.error(f"{TYPE_NAME}: {detail}", now)

    if not isinstance(body, dict):
        return error(f"unexpected response: a JSON object was expected, got {kind_of(body)}")
    status = body.get("status")
    if status is None and "series" not in body:
        keys = ", ".join(sorted(map(str, body))[:5]) or "none"
        return error(f"unexpected response: no status or series (keys: {keys})")
    if status != "ok":
        cause = body.get("error") or body.get("message") or f"status {status!r}"
        return error(f"query failed: {shorten(str(cause))}")
    series = body.get("series")
    if not isinstance(series, list):
        return error(f"unexpected response: series is {kind_of(series)}, not a list")
    if not series:
        return Measurement.no_data(f"{TYPE_NAME}: no series matched the query", now)
    return None


def read_series_response(
    body: Any, *, reduce: Reduce | None, now: datetime
) -> Series | Measurement:
    """The series a ``/api/v1/query`` 200 body gives: every non-null point of its one
    series, or of several combined with ``reduce``."""
    problem = _envelope_problem(body, now)
    if problem is not None:
        return problem
    every: list[list[tuple[datetime, float]]] = []
    for index, item in enumerate(body["series"]):
        pointlist = item.get("pointlist") if isinstance(item, dict) else None
        if not isinstance(pointlist, list):
            return Measurement.error(
                f"{TYPE_NAME}: unexpected response: series[{index}] has no pointlist", now
            )
        points = []
        for point in pointlist:
            if not (isinstance(point, list) and len(point) >= 2 and is_number(point[0])):
                return Measurement.error(
                    f"{TYPE_NAME}: unexpected response: series[{index}] has a point that is"
                    " not [timestamp, value]",
                    now,
                )
            if point[1] is None:
                continue
            if not is_number(point[1]):
                return Measurement.error(
                    f"{TYPE_NAME}: unexpected response: series[{index}] has a non-numeric"
                    f" point {shorten(repr(point))}",
                    now,
                )
            points.append((datetime.fromtimestamp(float(point[0]) / 1000, UTC), float(point[1])))
        every.append(points)
    combined = combine_series(every, reduce)
    if isinstance(combined, str):
        return Measurement.error(f"{TYPE_NAME}: {combined}", now)
    detail = f"{TYPE_NAME}: {reduce} of {len(every)} series" if len(every) > 1 else ""
    return Series.of(combined, now, source=TYPE_NAME, detail=detail)


def read_query_response(body: Any, *, reduce: Reduce | None, now: datetime) -> Measurement:
    """The measurement a ``/api/v1/query`` 200 body gives."""

    def error(detail: str) -> Measurement:
        return Measurement.error(f"{TYPE_NAME}: {detail}", now)

    problem = _envelope_problem(body, now)
    if problem is not None:
        return problem
    series = body["series"]
    points: list[_LastPoint] = []
    for index, item in enumerate(series):
        try:
            point = _last_point(item, index)
        except ValueError as bad:
            return error(f"unexpected response: {bad}")
        if point is not None:
            points.append(point)
    if len(series) > 1 and reduce is None:
        labels = ", ".join(_series_label(s, i) for i, s in enumerate(series[:3]))
        more = ", ..." if len(series) > 3 else ""
        return error(
            f"{len(series)} series ({labels}{more}) where one was expected;"
            " set reduce: min|max|sum|avg or narrow the query"
        )
    if not points:
        return Measurement.no_data(f"{TYPE_NAME}: every point in the window is null", now)
    if len(series) == 1:
        chosen = points[0]
        value, label = chosen.value, chosen.label
    else:
        assert reduce is not None
        value = _reduce(points, reduce)
        label = f"{reduce} of {len(points)} series"
    if not math.isfinite(value):
        return error(f"{label}: value is {value!r}, not a finite number")
    stale = _stale(points, now)
    if stale is not None:
        return error(stale)
    return Measurement.ok(value, now, detail=f"{TYPE_NAME}: {label}")


def _last_point(item: Any, index: int) -> _LastPoint | None:
    if not isinstance(item, dict):
        raise ValueError(f"series[{index}] is {kind_of(item)}, not an object")
    pointlist = item.get("pointlist")
    if not isinstance(pointlist, list):
        raise ValueError(f"series[{index}].pointlist is {kind_of(pointlist)}, not a list")
    for point in reversed(pointlist):
        if not (isinstance(point, list) and len(point) >= 2):
            raise ValueError(f"series[{index}] has a point that is not [timestamp, value]")
        timestamp, value = point[0], point[1]
        if value is None:
            continue
        if not is_number(value) or not is_number(timestamp):
            raise ValueError(f"series[{index}] has a non-numeric point {shorten(repr(point))}")
        stamp = datetime.fromtimestamp(float(timestamp) / 1000, UTC)
        label = f"{_series_label(item, index)} at {stamp.isoformat().replace('+00:00', 'Z')}"
        interval: Any = item.get("interval")
        interval_s = float(interval) if is_number(interval) and float(interval) > 0 else None
        return _LastPoint(label, float(timestamp), float(value), interval_s)
    return None


def stale_after(interval_s: float | None) -> timedelta:
    """How old a series' last point may be, before the window's end, and still count."""
    if interval_s is None:
        return MIN_STALE_AFTER
    return max(2 * timedelta(seconds=interval_s), MIN_STALE_AFTER)


def _stale(points: Sequence[_LastPoint], end: datetime) -> str | None:
    """Why the answer is too old to judge, or None when every last point is recent."""
    for point in points:
        age = end - datetime.fromtimestamp(point.timestamp_ms / 1000, UTC)
        if age > stale_after(point.interval_s):
            return (
                f"last point is {age.total_seconds():.0f} s old ({point.label});"
                f" a point older than {stale_after(point.interval_s).total_seconds():g} s"
                " before the window's end is stale"
            )
    return None


def _reduce(points: Sequence[_LastPoint], reduce: Reduce) -> float:
    values = [p.value for p in points]
    if reduce == "min":
        return min(values)
    if reduce == "max":
        return max(values)
    if reduce == "sum":
        return math.fsum(values)
    if reduce == "avg":
        return math.fsum(values) / len(values)
    return max(points, key=lambda p: p.timestamp_ms).value


def _series_label(item: Any, index: int) -> str:
    if isinstance(item, dict):
        for key in ("scope", "expression", "display_name", "metric"):
            if isinstance(item.get(key), str) and item[key]:
                return shorten(str(item[key]), 80)
    return f"series[{index}]"


def _unused_keys(query: ProbeQuery, keys: Sequence[str]) -> list[tuple[str, str]]:
    found = []
    for key in keys:
        value = getattr(query, key)
        if value:
            found.append((key, f"{key}: is not used by the {TYPE_NAME} probe type"))
    return found
