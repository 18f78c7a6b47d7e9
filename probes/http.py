"""``http``: is a health URL healthy (``up``), how fast (``latency``), how often (``availability``).

Healthy means all of: the status code is expected (default any 2xx), a Spring Actuator or
IETF health+json ``status`` in the body is not ``DOWN``/``OUT_OF_SERVICE``/``fail``
(``warn`` counts as up), and the configured ``json_path`` + ``expect_value`` and
``contains`` checks hold.

A failure to get an answer at all (refused, unknown host, timeout, oversized body) is
the service being down, not an unknown: the health URL exists to be reachable, and this
is how uptime checkers such as Prometheus's blackbox exporter count it. So ``up`` is
then 0 with the cause in ``detail``, and availability counts it as down. ``latency``
has no meaning without a healthy answer (a fast 503 is not a fast service), so it is
inconclusive then.

Every measurement records ``extra["up"]``; ``availability`` is the fraction of those over
``window`` in the criterion's history, plus the current one, with the number of
observations as volume. gonogo aggregates that window itself, so it counts only once its
observations cover it (docs/decisions.md, "Window coverage"): the oldest one used is at
most one interval after the window's start, and no two consecutive ones (the current
one included) are more than the gap bound apart. Until then the measurement is an error
naming what is missing, and still records ``up`` so that coverage builds up.
"""

from __future__ import annotations

import itertools
import json
import re
from datetime import datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from probes.base import (
    Measurement,
    MeasurementStatus,
    ProbeConfig,
    ProbeContext,
    ProbeQuery,
    QuoteContext,
)
from probes.client import (
    ENV_VAR_PATTERN,
    HTTP_URL_PATTERN,
    ProbeFailure,
    RawResponse,
    bearer_source,
)
from probes.quoting import quote_http
from probes.timefmt import format_duration, iso

METRICS = ("up", "availability", "latency")
_DOWN = {"down", "out_of_service", "fail", "error"}
_UP = {"up", "pass", "ok", "warn"}


# RFC 9110: a header name is a token; a value has no CR, LF, NUL or other control byte.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class HttpConfig(ProbeConfig):
    history_metrics: ClassVar[frozenset[str]] = frozenset({"availability"})

    url: str = Field(pattern=HTTP_URL_PATTERN, description="the health URL")
    expect_status: list[int] | None = Field(
        default=None, min_length=1, description="status codes that mean healthy (default 2xx)"
    )
    json_path: str | None = Field(default=None, min_length=1)
    expect_value: str | int | float | bool | None = None
    contains: str | None = Field(default=None, min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    token_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN)

    @field_validator("headers")
    @classmethod
    def _headers_can_be_sent(cls, headers: dict[str, str]) -> dict[str, str]:
        # A header no HTTP client may send would fail every sample; say so at load.
        # Whitespace around a value is not part of it in HTTP (a YAML block scalar's
        # final newline, say), so it is dropped rather than refused.
        sendable = {}
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            value = value.strip(" \t\r\n")
            if _HEADER_VALUE_FORBIDDEN.search(value):
                raise ValueError(f"header {name}: the value holds a line break or a control byte")
            sendable[name] = value
        return sendable

    @model_validator(mode="after")
    def _value_needs_path(self) -> HttpConfig:
        if self.expect_value is not None and self.json_path is None:
            raise ValueError("expect_value needs json_path (where in the body to look)")
        for code in self.expect_status or ():
            if not 100 <= code <= 599:
                raise ValueError(f"expect_status {code} is not an HTTP status code")
        return self


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted ``path`` (``data.items.0.value``); raises KeyError naming the
    missing step."""
    current = document
    walked: list[str] = []
    for step in path.split("."):
        if isinstance(current, dict) and step in current:
            current = current[step]
        elif isinstance(current, list) and step.isdigit() and int(step) < len(current):
            current = current[int(step)]
        else:
            where = ".".join(walked) or "the top level"
            raise KeyError(f"{path} not found: no {step!r} in {where}")
        walked.append(step)
    return current


def _same(actual: Any, expected: str | int | float | bool) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected or str(actual).lower() == str(expected).lower()
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return float(actual) == float(expected)
    return str(actual) == str(expected)


class HttpProbe:
    type_name: ClassVar[str] = "http"
    config_model: ClassVar[type[ProbeConfig]] = HttpConfig

    def __init__(self, config: HttpConfig, *, name: str) -> None:
        self.config = config
        self.name = name
        self.client, _ = bearer_source(config, defaults={"Accept": "application/json, */*;q=0.5"})

    @staticmethod
    def check_query(query: ProbeQuery) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if query.metric not in METRICS:
            problems.append(
                ("metric", "an http criterion needs metric: up, availability or latency")
            )
        if query.metric == "availability" and query.window is None:
            problems.append(("window", "metric: availability needs window: (e.g. 5m)"))
        if query.window is not None and query.window <= timedelta(0):
            problems.append(("window", "window must be longer than 0s"))
        for key, value in (("query", query.query), ("path", query.path)):
            if value is not None:
                problems.append(
                    (key, f"{key}: is not used by http; the probe config says what to check")
                )
        return problems

    @staticmethod
    def quote(value: str, context: QuoteContext) -> str:
        """A check-supplied value in no query language (docs/probes.md#http)."""
        return quote_http(value, context)

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        try:
            answer = await self.client.get(self.config.url)
        except ProbeFailure as failure:
            up, reason, elapsed = 0.0, failure.detail, None
            if failure.http_status in (401, 403) and self.config.token_env:
                reason += f"; check token_env {self.config.token_env}"
        else:
            up, reason = self._judge(answer)
            elapsed = answer.elapsed
        extra = {"up": up}
        if query.metric == "latency":
            if elapsed is None or not up:
                return Measurement(
                    MeasurementStatus.ERROR,
                    ctx.now,
                    detail=f"http: no latency, the check failed ({reason})",
                    extra=extra,
                )
            return Measurement.ok(elapsed, ctx.now, detail=reason, extra=extra)
        if query.metric == "availability":
            return self._availability(up, reason, query, ctx)
        return Measurement.ok(
            up, ctx.now, detail=f"{'up' if up else 'down'}: {reason}", extra=extra
        )

    def _availability(
        self, up: float, reason: str, query: ProbeQuery, ctx: ProbeContext
    ) -> Measurement:
        window = query.window or timedelta(0)
        since = ctx.now - window
        used = sorted(
            (m.observed_at, m.extra["up"])
            for m in ctx.history
            if "up" in m.extra and since < m.observed_at < ctx.now
        )
        used.append((ctx.now, up))
        uncovered = _coverage_problem([at for at, _ in used], window, ctx)
        if uncovered is not None:
            return Measurement(
                MeasurementStatus.ERROR,
                ctx.now,
                detail=f"availability over {format_duration(window)} {uncovered}",
                extra={"up": up},
            )
        seen = [observed for _, observed in used]
        value = sum(seen) / len(seen)
        downs = len(seen) - int(sum(seen))
        detail = f"{downs} of {len(seen)} checks down; now {'up' if up else 'down'}: {reason}"
        return Measurement.ok(
            value, ctx.now, volume=float(len(seen)), detail=detail, extra={"up": up}
        )

    def _judge(self, answer: RawResponse) -> tuple[float, str]:
        """(1.0 or 0.0, why) for one health answer."""
        problems: list[str] = []
        notes = [f"HTTP {answer.status_code}"]
        expected = self.config.expect_status
        code = answer.status_code
        got = "rate limited (HTTP 429)" if code == 429 else f"HTTP {code}"
        if expected is not None and code not in expected:
            problems.append(f"{got}, expected {', '.join(map(str, expected))}")
        elif expected is None and not 200 <= code < 300:
            problems.append(f"{got}, expected 2xx")
        if answer.status_code in (401, 403) and self.config.token_env:
            problems.append(f"check token_env {self.config.token_env}")
        document = _parse(answer.body)
        health = document.get("status") if isinstance(document, dict) else None
        if isinstance(health, str):
            # IETF health+json explains a warn or fail in "output".
            output = document.get("output") if isinstance(document, dict) else None
            said = f"status {health}" + (
                f" ({output})" if isinstance(output, str) and output else ""
            )
            if health.lower() in _DOWN:
                problems.append(f"health {said}")
            elif health.lower() in _UP:
                notes.append(said)
        if self.config.json_path is not None:
            try:
                actual = lookup(document, self.config.json_path)
            except KeyError as missing:
                problems.append(str(missing.args[0]))
            else:
                wanted = self.config.expect_value
                if wanted is not None and not _same(actual, wanted):
                    problems.append(
                        f"{self.config.json_path} is {json.dumps(actual)[:80]}, expected {wanted!r}"
                    )
        if self.config.contains is not None and self.config.contains not in answer.text:
            problems.append(f"body does not contain {self.config.contains!r}")
        if problems:
            return 0.0, "; ".join(problems)
        return 1.0, ", ".join(notes)

    async def aclose(self) -> None:
        await self.client.aclose()


def _parse(body: bytes) -> Any:
    if not body.lstrip().startswith((b"{", b"[")):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _coverage_problem(instants: list[datetime], window: timedelta, ctx: ProbeContext) -> str | None:
    """Why observations at ``instants`` (oldest first, the current one last) do not cover
    ``window`` ending at ``ctx.now``, or ``None`` when they do.

    Covered means: the oldest is at or before ``now - window + interval`` (one interval
    of slack, since the tick at the window's very start is outside it), and no two
    consecutive instants are more than ``ctx.max_gap`` apart. So a window of 5m at a 30s
    interval needs at least 10 observations when every tick is taken.
    """
    slack = ctx.interval or timedelta(0)
    needed_since = ctx.now - window + slack
    oldest = instants[0]
    if oldest > needed_since:
        return f"needs history since {iso(needed_since)}, have {format_duration(ctx.now - oldest)}"
    if ctx.max_gap is not None:
        for before, after in itertools.pairwise(instants):
            if after - before > ctx.max_gap:
                return (
                    f"has a hole of {format_duration(after - before)} between {iso(before)} and"
                    f" {iso(after)} (more than {format_duration(ctx.max_gap)})"
                )
    return None
