"""The ``newrelic`` probe: one number from an NRQL query, through NerdGraph.

Sends ``POST /graphql`` with the ``API-Key`` header. The NRQL travels as a GraphQL
variable, never spliced into the document, so quotes in it cannot break the request.
The value is the first numeric field of the single result row, or ``field``; NRQL names
like ``percentile.duration`` hold objects such as ``{"95": 1.2}``, whose single number is
taken (``field: percentile.duration.95`` picks one of several).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

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
)
from probes.client import ProbeFailure, secret_from_env, source_client
from probes.quoting import quote_nrql

TYPE_NAME = "newrelic"
GRAPHQL_PATH = "/graphql"
REGION_URLS = {"us": "https://api.newrelic.com", "eu": "https://api.eu.newrelic.com"}
NRQL_DOCUMENT = (
    "query($accountId: Int!, $nrql: Nrql!) "
    "{ actor { account(id: $accountId) { nrql(query: $nrql) { results } } } }"
)
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Row keys that describe a TIMESERIES bucket rather than measure anything.
_TIME_KEYS = frozenset({"beginTimeSeconds", "endTimeSeconds", "timestamp"})
_UNUSED_KEYS = ("metric", "matchers", "params", "path")
# Clauses a range read writes itself; a query that has one already cannot be read as a range.
_RANGE_CLAUSES = re.compile(r"\b(SINCE|UNTIL|TIMESERIES|COMPARE\s+WITH)\b", re.IGNORECASE)


class NewRelicConfig(ProbeConfig):
    region: Literal["us", "eu"] = Field(default="us", description="NerdGraph region")
    account_id: int = Field(gt=0, description="the account the NRQL runs in")
    api_key_env: str = Field(pattern=ENV_NAME, description="variable holding a user API key")

    def base_url(self) -> str:
        return self.url or REGION_URLS[self.region]


class NewRelicProbe:
    type_name: ClassVar[str] = TYPE_NAME
    config_model: ClassVar[type[ProbeConfig]] = NewRelicConfig

    def __init__(self, config: NewRelicConfig, *, name: str) -> None:
        self.config = config
        self.name = name
        api_key = secret_from_env(config.api_key_env, field="api_key_env") or ""
        self._client = source_client(
            config, base_url=config.base_url(), headers={"API-Key": api_key}, secrets=[api_key]
        )

    def __repr__(self) -> str:
        return f"NewRelicProbe(name={self.name!r}, url={self.config.base_url()!r})"

    @staticmethod
    def check_query(query: ProbeQuery) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if not query.query or not query.query.strip():
            problems.append(
                (
                    "query",
                    "a newrelic criterion needs query: (NRQL, e.g."
                    " SELECT percentage(count(*), WHERE error IS true) FROM Transaction"
                    " SINCE 5 minutes ago)",
                )
            )
        for key in _UNUSED_KEYS:
            if getattr(query, key):
                problems.append((key, f"{key}: is not used by the {TYPE_NAME} probe type"))
        if query.window is not None:
            problems.append(("window", "window: is not used by newrelic; say SINCE in the NRQL"))
        return problems

    @staticmethod
    def quote(value: str, context: QuoteContext) -> str:
        """A check-supplied value in NRQL (docs/probes.md#newrelic)."""
        return quote_nrql(value, context)

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        if not query.query:
            return Measurement.error(f"{TYPE_NAME}: the criterion has no query", ctx.now)
        request = {
            "query": NRQL_DOCUMENT,
            "variables": {"accountId": self.config.account_id, "nrql": query.query},
        }
        try:
            # A query (not a mutation) is a read: safe to retry.
            response = await self._client.post_json(GRAPHQL_PATH, json=request, idempotent=True)
        except ProbeFailure as failure:
            return self._failed(failure, ctx.now)
        return read_nrql_response(
            response.json, field=query.field, reduce=query.reduce, now=ctx.now
        )

    async def measure_range(
        self,
        query: ProbeQuery,
        ctx: ProbeContext,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> Series | Measurement:
        """The query's points from ``start`` to ``end``: the NRQL with ``SINCE <start>
        UNTIL <end> TIMESERIES <step>`` added (epoch milliseconds, whole seconds of step),
        one point per bucket at the bucket's start."""
        if not query.query:
            return Measurement.error(f"{TYPE_NAME}: the criterion has no query", ctx.now)
        # Outside string literals only: a quoted value may say anything.
        bare = re.sub(r"'(?:[^'\\]|\\.)*'", "''", query.query)
        clause = _RANGE_CLAUSES.search(bare)
        if clause is not None:
            return Measurement.error(
                f"{TYPE_NAME}: the query has its own {clause.group(1).upper()} clause;"
                " a range read writes SINCE, UNTIL and TIMESERIES itself, so leave them out",
                ctx.now,
            )
        seconds = max(1, round(step.total_seconds()))
        nrql = (
            f"{query.query} SINCE {int(start.timestamp() * 1000)}"
            f" UNTIL {int(end.timestamp() * 1000)} TIMESERIES {seconds} SECONDS"
        )
        request = {
            "query": NRQL_DOCUMENT,
            "variables": {"accountId": self.config.account_id, "nrql": nrql},
        }
        try:
            response = await self._client.post_json(GRAPHQL_PATH, json=request, idempotent=True)
        except ProbeFailure as failure:
            return self._failed(failure, ctx.now)
        return read_nrql_series(response.json, field=query.field, now=ctx.now)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _failed(self, failure: ProbeFailure, now: datetime) -> Measurement:
        detail = failure.detail
        messages = graphql_errors(failure.body)
        if messages:
            detail += f": {messages}"
        if failure.http_status in (401, 403):
            detail += f" — check api_key_env {self.config.api_key_env}"
        return Measurement(failure.status, now, detail=f"{TYPE_NAME}: {detail}")


def graphql_errors(body: Any) -> str:
    """``message (CLASS)`` for each entry of a GraphQL ``errors`` array, or ""."""
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return ""
    texts = []
    for error in body["errors"]:
        if not isinstance(error, dict):
            continue
        message = str(error.get("message") or "unknown error")
        extensions = error.get("extensions")
        kind = None
        if isinstance(extensions, dict):
            kind = extensions.get("errorClass") or extensions.get("error_code")
            kind = kind or extensions.get("code")
        texts.append(f"{message} ({kind})" if kind else message)
    return shorten("; ".join(texts))


def read_nrql_response(
    body: Any, *, field: str | None, reduce: Reduce | None, now: datetime
) -> Measurement:
    """The measurement a NerdGraph 200 body gives."""

    def error(detail: str) -> Measurement:
        return Measurement.error(f"{TYPE_NAME}: {detail}", now)

    if not isinstance(body, dict):
        return error(f"unexpected response: a JSON object was expected, got {kind_of(body)}")
    results = _dig(body, ("data", "actor", "account", "nrql", "results"))
    if results is None:
        messages = graphql_errors(body)
        if messages:
            return error(f"NerdGraph error: {messages}")
        return error("unexpected response: no data.actor.account.nrql.results")
    if not isinstance(results, list):
        return error(f"unexpected response: results is {kind_of(results)}, not a list")
    if not results:
        return Measurement.no_data(f"{TYPE_NAME}: the NRQL query returned no rows", now)
    if len(results) > 1 and reduce is None:
        return error(
            f"{len(results)} result rows where one was expected (FACET or TIMESERIES?);"
            " set reduce: min|max|sum|avg|last or make the query return one row"
        )
    values: list[float] = []
    name = ""
    for index, row in enumerate(results):
        try:
            name, value = _row_value(row, field)
        except ValueError as bad:
            return error(f"result row {index}: {bad}")
        if value is not None:
            values.append(value)
    if not values:
        return Measurement.no_data(f"{TYPE_NAME}: {name} is null", now)
    if len(results) == 1:
        value, label = values[0], name
    else:
        assert reduce is not None
        value, label = _reduce(values, reduce), f"{reduce} of {name} over {len(values)} rows"
    if not math.isfinite(value):
        return error(f"{label} is {value!r}, not a finite number")
    return Measurement.ok(value, now, detail=f"{TYPE_NAME}: {label}")


def read_nrql_series(body: Any, *, field: str | None, now: datetime) -> Series | Measurement:
    """The series a NerdGraph 200 body for a ``TIMESERIES`` query gives: one point per
    row, at its ``beginTimeSeconds``; null buckets are left out."""

    def error(detail: str) -> Measurement:
        return Measurement.error(f"{TYPE_NAME}: {detail}", now)

    if not isinstance(body, dict):
        return error(f"unexpected response: a JSON object was expected, got {kind_of(body)}")
    results = _dig(body, ("data", "actor", "account", "nrql", "results"))
    if results is None:
        messages = graphql_errors(body)
        if messages:
            return error(f"NerdGraph error: {messages}")
        return error("unexpected response: no data.actor.account.nrql.results")
    if not isinstance(results, list):
        return error(f"unexpected response: results is {kind_of(results)}, not a list")
    points: list[tuple[datetime, float]] = []
    seen: set[float] = set()
    for index, row in enumerate(results):
        begin: Any = row.get("beginTimeSeconds") if isinstance(row, dict) else None
        if not is_number(begin):
            return error(f"result row {index} has no beginTimeSeconds (not a TIMESERIES row)")
        if "facet" in row or float(begin) in seen:
            # FACET rows are several series in one list: pooled, a bad facet's points
            # would be diluted by the healthy ones'.
            return error(
                f"result row {index}: several series (FACET) in a range read; the query"
                " must give one series"
            )
        seen.add(float(begin))
        try:
            _, value = _row_value(row, field)
        except ValueError as bad:
            return error(f"result row {index}: {bad}")
        if value is not None:
            points.append((datetime.fromtimestamp(float(begin), UTC), value))
    return Series.of(points, now, source=TYPE_NAME)


def _row_value(row: Any, field: str | None) -> tuple[str, float | None]:
    """(field name, number or None for null) of one result row."""
    if not isinstance(row, dict):
        raise ValueError(f"is {kind_of(row)}, not an object")
    if field is not None:
        if field in row:
            return field, _number(field, row[field])
        outer, _, inner = field.rpartition(".")
        nested = row.get(outer) if outer else None
        if isinstance(nested, dict) and inner in nested:
            return field, _number(field, nested[inner])
        raise ValueError(f"no field {field!r} (fields: {', '.join(map(str, row)) or 'none'})")
    for key, raw in row.items():
        if key in _TIME_KEYS:
            continue
        if raw is None or is_number(raw) or isinstance(raw, dict):
            return key, _number(key, raw)
    raise ValueError(f"no numeric field (fields: {', '.join(map(str, row)) or 'none'})")


def _number(name: str, raw: Any) -> float | None:
    if raw is None:
        return None
    if is_number(raw):
        return float(raw)
    if isinstance(raw, dict):
        if len(raw) == 1:
            return _number(name, next(iter(raw.values())))
        keys = ", ".join(map(str, raw))
        raise ValueError(f"{name} holds several values ({keys}); set field: {name}.<one of them>")
    raise ValueError(f"{name} is {kind_of(raw)}, not a number")


def _reduce(values: Sequence[float], reduce: Reduce) -> float:
    if reduce == "min":
        return min(values)
    if reduce == "max":
        return max(values)
    if reduce == "sum":
        return math.fsum(values)
    if reduce == "avg":
        return math.fsum(values) / len(values)
    # TIMESERIES rows come oldest first.
    return values[-1]


def _dig(body: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body
