"""``prometheus``: one PromQL instant query (``GET /api/v1/query``) → one number.

A scalar, or a vector with exactly one series, gives the value. Several series are
inconclusive unless the criterion says how to combine them (``reduce``): silently taking
the first would judge an arbitrary one. An empty vector is "no data". NaN and ±Inf
(e.g. 0/0 in an error-rate ratio with no traffic) are errors, not numbers.

A sample is exactly what the API documents: ``[<unix time as a JSON number>, "<value>"]``
where the value is a JSON string holding a decimal (with an optional exponent), ``NaN``,
``+Inf`` or ``-Inf``. Any other shape (a bare number, a boolean, ``"1_000"``, ``"0x10"``,
``" 1"``, ``"infinity"``) is an error naming what was found: a proxy or an impostor
answered, and guessing what it meant could turn garbage into a ``go``.

``warnings`` on a success answer mean the answer may be partial (a remote-read or a
shard failed), so the answer is inconclusive, quoting them, unless the probe config
says ``accept_warnings: true``; then the warnings travel in the measurement's detail.
``infos`` are notes about the query, not about missing data: they are quoted in the
detail and change nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field, model_validator

from probes.answers import is_number, kind_of, shorten
from probes.base import (
    Measurement,
    MeasurementStatus,
    ProbeConfig,
    ProbeContext,
    ProbeQuery,
    QuoteContext,
    Series,
    combine_series,
)
from probes.client import (
    ENV_VAR_PATTERN,
    HTTP_URL_PATTERN,
    ProbeFailure,
    bearer_source,
    failure_measurement,
    secret_from_env,
)
from probes.quoting import quote_promql

QUERY_PATH = "/api/v1/query"
RANGE_PATH = "/api/v1/query_range"
REDUCERS = ("min", "max", "sum", "avg")
# A sample value as Prometheus writes it (Go's float formatting), and nothing else.
_SAMPLE_VALUE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf")


class PrometheusConfig(ProbeConfig):
    url: str = Field(pattern=HTTP_URL_PATTERN, description="Prometheus base URL")
    token_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN)
    username: str | None = None
    password_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN)
    headers: dict[str, str] = Field(default_factory=dict)
    accept_warnings: bool = Field(
        default=False,
        strict=True,
        description="judge answers that carry warnings (possibly partial) instead of"
        " treating them as inconclusive",
    )

    @model_validator(mode="after")
    def _one_kind_of_auth(self) -> PrometheusConfig:
        if self.token_env and (self.username or self.password_env):
            raise ValueError("use either token_env or username + password_env, not both")
        if bool(self.username) != bool(self.password_env):
            raise ValueError("basic auth needs both username and password_env")
        return self


class _BadAnswer(Exception):
    """The query answered, but not with one usable number."""

    def __init__(self, measurement: Measurement) -> None:
        self.measurement = measurement


def sample_value(value: Any) -> float:
    """The number a sample's value holds; ``ValueError`` naming the shape otherwise."""
    if not isinstance(value, str):
        raise ValueError(
            f"sample value is {kind_of(value)} ({shorten(repr(value), 40)}),"
            " not a string holding a number"
        )
    if _SAMPLE_VALUE.fullmatch(value) is None:
        raise ValueError(
            f"sample value {shorten(repr(value), 40)} is not a number as Prometheus writes"
            " one (a decimal, NaN, +Inf or -Inf)"
        )
    return float(value)


class PrometheusProbe:
    type_name: ClassVar[str] = "prometheus"
    config_model: ClassVar[type[ProbeConfig]] = PrometheusConfig

    def __init__(self, config: PrometheusConfig, *, name: str) -> None:
        self.config = config
        self.name = name
        password = secret_from_env(config.password_env, field="password_env")
        auth = (config.username, password) if config.username and password else None
        self._credential = (
            f"token_env {config.token_env}"
            if config.token_env
            else f"username and password_env {config.password_env}"
            if config.password_env
            else None
        )
        self.client, _ = bearer_source(config, secrets=(password,), auth=auth)

    @staticmethod
    def check_query(query: ProbeQuery) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if not query.query or not query.query.strip():
            problems.append(("query", "a prometheus criterion needs query: (a PromQL expression)"))
        if query.reduce is not None and query.reduce not in REDUCERS:
            problems.append(("reduce", f"prometheus reduce is one of {', '.join(REDUCERS)}"))
        for key, value in (("metric", query.metric), ("path", query.path)):
            if value is not None:
                problems.append((key, f"{key}: is not used by prometheus; put PromQL in query:"))
        if query.matchers:
            problems.append(("matchers", "matchers: is not used by prometheus"))
        return problems

    @staticmethod
    def quote(value: str, context: QuoteContext) -> str:
        """A check-supplied value in PromQL (docs/probes.md#prometheus)."""
        return quote_promql(value, context)

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        params = {"query": query.query or "", "time": f"{ctx.now.timestamp():.3f}"}
        try:
            answer = await self.client.get_json(QUERY_PATH, params=params)
        except ProbeFailure as failure:
            return failure_measurement(
                failure,
                ctx.now,
                source=self.type_name,
                credential=self._credential,
                detail=_error_detail(failure),
            )
        try:
            measurement = self._value(answer.json, query, ctx)
        except _BadAnswer as bad:
            measurement = bad.measurement
        return self._with_notes(answer.json, measurement, ctx)

    async def measure_range(
        self,
        query: ProbeQuery,
        ctx: ProbeContext,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> Series | Measurement:
        """The query's points from ``start`` to ``end`` every ``step``
        (``GET /api/v1/query_range``): a matrix with one series, or several with
        ``reduce``, combined at each step."""
        params = {
            "query": query.query or "",
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
            "step": f"{step.total_seconds():g}",
        }
        try:
            answer = await self.client.get_json(RANGE_PATH, params=params)
        except ProbeFailure as failure:
            return failure_measurement(
                failure,
                ctx.now,
                source=self.type_name,
                credential=self._credential,
                detail=_error_detail(failure),
            )
        body = answer.json
        try:
            series = self._series(body, query, ctx)
        except _BadAnswer as bad:
            return self._with_notes(body, bad.measurement, ctx)
        if isinstance(series, Measurement):
            return self._with_notes(body, series, ctx)
        warnings = _notes(body.get("warnings")) if isinstance(body, dict) else ""
        if warnings and not self.config.accept_warnings:
            return Measurement.error(
                f"prometheus: partial answer (warnings: {warnings});"
                " set accept_warnings: true on the probe to judge such answers",
                ctx.now,
            )
        return series

    def _series(self, body: Any, query: ProbeQuery, ctx: ProbeContext) -> Series | Measurement:
        def error(text: str) -> _BadAnswer:
            return _BadAnswer(Measurement.error(f"prometheus: {text}", ctx.now))

        if not isinstance(body, dict):
            raise error("answer is not a Prometheus API envelope")
        if body.get("status") == "error":
            raise error(_envelope_error(body))
        data = body.get("data")
        if body.get("status") != "success" or not isinstance(data, dict):
            raise error("answer has no status: success and data")
        if data.get("resultType") != "matrix":
            raise error(f"range query returned resultType {data.get('resultType')!r}, not matrix")
        result = data.get("result")
        if not isinstance(result, list):
            raise error("matrix result is not a list")
        if not result:
            return Measurement.no_data("prometheus: range query returned no series", ctx.now)
        every: list[list[tuple[datetime, float]]] = []
        for item in result:
            pairs = item.get("values") if isinstance(item, dict) else None
            if not isinstance(pairs, list):
                raise error("a matrix series has no values list")
            points = []
            for pair in pairs:
                if not (isinstance(pair, list) and len(pair) == 2 and is_number(pair[0])):
                    raise error("a point is not a [time, value] pair")
                try:
                    value = sample_value(pair[1])
                except ValueError as bad:
                    raise error(str(bad)) from None
                points.append((datetime.fromtimestamp(float(pair[0]), UTC), value))
            every.append(points)
        combined = combine_series(every, query.reduce)
        if isinstance(combined, str):
            raise error(combined)
        detail = f"{query.reduce} of {len(every)} series" if len(every) > 1 else ""
        return Series.of(combined, ctx.now, source=self.type_name, detail=detail)

    def _with_notes(self, body: Any, measurement: Measurement, ctx: ProbeContext) -> Measurement:
        """``measurement`` with the answer's ``warnings`` and ``infos`` said (and a warned
        value made inconclusive unless the config accepts warnings)."""
        if not isinstance(body, dict):
            return measurement
        warnings, infos = _notes(body.get("warnings")), _notes(body.get("infos"))
        if not warnings and not infos:
            return measurement
        said = "; ".join(
            part
            for part in (
                f"warnings: {warnings}" if warnings else "",
                f"infos: {infos}" if infos else "",
            )
            if part
        )
        if measurement.status is MeasurementStatus.OK:
            if warnings and not self.config.accept_warnings:
                value = measurement.value
                return Measurement.error(
                    f"prometheus: partial answer ({value:g}, {said});"
                    " set accept_warnings: true on the probe to judge such answers",
                    ctx.now,
                )
            detail = (
                f"{measurement.detail}; {said}" if measurement.detail else f"prometheus: {said}"
            )
            return Measurement.ok(
                measurement.value or 0.0,
                ctx.now,
                volume=measurement.volume,
                detail=detail,
                extra=measurement.extra,
            )
        return Measurement(measurement.status, ctx.now, detail=f"{measurement.detail} ({said})")

    def _value(self, body: Any, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        def error(text: str) -> _BadAnswer:
            return _BadAnswer(Measurement.error(f"prometheus: {text}", ctx.now))

        if not isinstance(body, dict):
            raise error("answer is not a Prometheus API envelope")
        if body.get("status") == "error":
            raise error(_envelope_error(body))
        data = body.get("data")
        if body.get("status") != "success" or not isinstance(data, dict):
            raise error("answer has no status: success and data")
        kind = data.get("resultType")
        result = data.get("result")
        if kind == "scalar":
            values = [self._sample(result, ctx)]
        elif kind == "vector":
            if not isinstance(result, list):
                raise error("vector result is not a list")
            if not result:
                return Measurement.no_data("prometheus: query returned no series", ctx.now)
            values = [
                self._sample(series.get("value") if isinstance(series, dict) else None, ctx)
                for series in result
            ]
        elif kind in ("matrix", "string"):
            what = "a range vector (matrix)" if kind == "matrix" else "a string"
            raise error(f"query returned {what}; an instant number is needed")
        else:
            raise error(f"unknown resultType {kind!r}")
        return self._combine(values, query, ctx)

    def _sample(self, pair: Any, ctx: ProbeContext) -> float:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise _BadAnswer(
                Measurement.error("prometheus: sample is not a [time, value] pair", ctx.now)
            )
        if not is_number(pair[0]):
            raise _BadAnswer(
                Measurement.error(
                    f"prometheus: sample time is {kind_of(pair[0])}, not a number", ctx.now
                )
            )
        try:
            value = sample_value(pair[1])
        except ValueError as bad:
            raise _BadAnswer(Measurement.error(f"prometheus: {bad}", ctx.now)) from None
        if not math.isfinite(value):
            raise _BadAnswer(
                Measurement.error(f"prometheus: query returned {pair[1]}, not a number", ctx.now)
            )
        return value

    def _combine(
        self, values: Sequence[float], query: ProbeQuery, ctx: ProbeContext
    ) -> Measurement:
        if len(values) == 1:
            return Measurement.ok(values[0], ctx.now)
        if query.reduce is None or query.reduce not in REDUCERS:
            return Measurement.error(
                f"prometheus: {len(values)} series returned; set reduce: min|max|sum|avg",
                ctx.now,
            )
        if query.reduce == "min":
            value = min(values)
        elif query.reduce == "max":
            value = max(values)
        else:
            value = math.fsum(values)
            if query.reduce == "avg":
                value /= len(values)
        return Measurement.ok(value, ctx.now, detail=f"{query.reduce} of {len(values)} series")

    async def aclose(self) -> None:
        await self.client.aclose()


def _notes(raw: Any) -> str:
    """The text of a ``warnings`` or ``infos`` list ("" when there is none)."""
    if raw is None:
        return ""
    items = raw if isinstance(raw, list) else [raw]
    return shorten("; ".join(str(item) for item in items if item not in (None, "")))


def _envelope_error(body: dict[str, Any]) -> str:
    kind = body.get("errorType") or "error"
    message = body.get("error") or "no message"
    return f"{kind}: {message}"


def _error_detail(failure: ProbeFailure) -> str:
    """Prometheus explains its errors in the envelope; say what it said."""
    body = failure.body
    if isinstance(body, dict) and body.get("status") == "error":
        return f"{_envelope_error(body)} ({failure.detail})"
    return failure.detail
