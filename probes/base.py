"""The probe contract: what a probe is, what it returns, and how it is configured.

A probe is a configured connection to one source (a health URL, a Prometheus, a Datadog
account, ...). The gate engine asks it one question at a time through ``measure`` and
gets one number back, or an explanation of why there is none.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from probes.errors import GonogoError

Reduce = Literal["min", "max", "sum", "avg", "last"]


class MeasurementStatus(enum.StrEnum):
    """Why a measurement has (or lacks) a value; also the ``result`` label of probe metrics."""

    OK = "ok"
    NO_DATA = "no_data"  # the source answered, with nothing to measure (empty result)
    ERROR = "error"  # the source failed or answered something unusable
    TIMEOUT = "timeout"  # the source did not answer in time


@dataclass(frozen=True, slots=True)
class Measurement:
    """One answer from a probe.

    ``value`` is set only when ``status`` is OK, and is then a finite float. Ratios are
    fractions in 0..1, durations are seconds. ``volume`` is the traffic behind the value
    when the probe knows it (for ``min_volume``). ``detail`` is a short human-readable
    cause or description, safe to show (never a secret). ``extra`` carries probe-specific
    numbers that a later measurement may read back from ``ProbeContext.history`` (the
    http probe records ``up`` there to compute availability).
    """

    status: MeasurementStatus
    observed_at: datetime
    value: float | None = None
    volume: float | None = None
    detail: str = ""
    extra: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def ok(
        cls,
        value: float,
        observed_at: datetime,
        *,
        volume: float | None = None,
        detail: str = "",
        extra: Mapping[str, float] | None = None,
    ) -> Measurement:
        if not math.isfinite(value):
            return cls.error(f"value is {value!r}, not a finite number", observed_at)
        return cls(MeasurementStatus.OK, observed_at, value, volume, detail, extra or {})

    @classmethod
    def no_data(cls, detail: str, observed_at: datetime) -> Measurement:
        return cls(MeasurementStatus.NO_DATA, observed_at, detail=detail)

    @classmethod
    def error(cls, detail: str, observed_at: datetime) -> Measurement:
        return cls(MeasurementStatus.ERROR, observed_at, detail=detail)

    @classmethod
    def timeout(cls, detail: str, observed_at: datetime) -> Measurement:
        return cls(MeasurementStatus.TIMEOUT, observed_at, detail=detail)


class ProbeQuery(BaseModel):
    """The probe-specific part of a criterion, with every ``${placeholder}`` filled.

    Which fields a probe type reads is its own business (see ``Probe.check_query``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: str | None = None
    metric: str | None = None
    window: timedelta | None = None
    matchers: tuple[str, ...] = ()
    params: Mapping[str, str] = Field(default_factory=dict)
    path: str | None = None
    field: str | None = None
    reduce: Reduce | None = None


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """What a probe may know about the moment it measures.

    ``now`` is the sample's instant (probes never read the clock for decisions).
    ``check_started_at`` is set for a check's samples (Sentry ``new_issues`` counts from
    it). ``history`` holds this criterion's earlier measurements, oldest first.
    ``interval`` is the gate's time between samples and ``max_gap`` the longest gap
    between two samples that does not break a run (docs/decisions.md, "Time and trust"):
    a probe that aggregates ``history`` over a window uses them to tell whether the
    window is covered. ``None`` when the caller samples outside a gate.
    """

    now: datetime
    variables: Mapping[str, str] = field(default_factory=dict)
    check_started_at: datetime | None = None
    history: Sequence[Measurement] = ()
    interval: timedelta | None = None
    max_gap: timedelta | None = None


@dataclass(frozen=True, slots=True)
class QuoteContext:
    """Where a check-supplied value is about to be inserted.

    ``name`` is the placeholder, ``field`` the criterion key it is in (``query``,
    ``min_volume.query``, ``matchers``, ``params.<key>``, ``path``, ``metric``, ``field``),
    ``before`` that key's text before the placeholder with earlier placeholders already
    filled (so a probe can tell a string literal or a regex matcher from bare syntax), and
    ``after`` the rest of the text, not yet filled.
    """

    name: str
    field: str
    before: str
    after: str = ""


class QuoteRefused(GonogoError):
    """A value cannot be placed at that spot of the query without changing what it asks."""


class ProbeConfig(BaseModel):
    """Base of every probe type's configuration model (one entry under ``probes:``).

    Subclasses add their own fields. Secrets are never stored here: fields ending in
    ``_env`` name an environment variable, read when the probe is built.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Metrics this type computes itself from ``ProbeContext.history`` over the criterion's
    # ``window`` (the http probe's availability); gonogo checks such a window is covered.
    history_metrics: ClassVar[frozenset[str]] = frozenset()

    type: str
    url: str | None = None
    # Strict: a boolean is never meant as 1 second or 1 retry.
    timeout: float = Field(
        default=5.0, gt=0, le=120, strict=True, description="seconds per request"
    )
    retries: int = Field(
        default=2, ge=0, le=10, strict=True, description="extra tries for idempotent reads"
    )

    @field_validator("url", check_fields=False)
    @classmethod
    def _no_credentials_in_url(cls, url: Any) -> Any:
        # Every type's url (subclasses redefine the field): a definition is shown to
        # every viewer, so user:password@ never belongs in it.
        authority = re.match(r"[^/?#]*", url.partition("://")[2]) if isinstance(url, str) else None
        if authority is not None and "@" in authority.group():
            raise ValueError(
                "credentials in the URL (user:password@host) would be shown to every viewer;"
                " remove them and set username + password_env, or token_env"
            )
        if isinstance(url, str):
            _check_url_is_usable(url)
        return url


_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


def _check_url_is_usable(url: str) -> None:
    """A URL no request could be sent to is a mistake in the gate, said where it is
    written, not a probe failure on every sample."""
    if _CONTROL_OR_SPACE.search(url):
        raise ValueError("the URL holds a space or a control character; percent-encode it")
    try:
        parts = urlsplit(url)
        port = parts.port  # a port out of range raises
    except ValueError as bad:
        raise ValueError(f"the URL cannot be parsed: {bad}") from None
    if parts.scheme and "://" in url and not parts.hostname:
        raise ValueError("the URL names no host")
    if port == 0:
        raise ValueError("the URL's port 0 is not a port a request can be sent to")


@runtime_checkable
class Probe(Protocol):
    """A source of numbers for criteria.

    Contract:
    - ``measure`` never raises for anything the remote side does (refused, timeout, HTTP
      error, rate limit, malformed or oversized body, NaN): it returns
      ``Measurement.error``/``timeout``/``no_data`` with a cause a human can act on.
      Raising is reserved for programming errors, and the engine still turns those
      into an inconclusive outcome.
    - ``measure`` does not retry forever: its total time is bounded by the config's
      ``timeout`` times its tries, plus backoff.
    - A probe never puts a secret into ``detail``.
    - ``check_query`` validates a criterion's query statically (at gate load), returning
      a list of ``(field, message)`` problems; it does no I/O.
    - ``aclose`` releases pooled connections.
    - Optional ``secrets() -> Sequence[str]``: the credentials the probe sends. The
      sampler scrubs them, in every encoded form, from every text of every measurement
      (``declared_secrets``), so a source echoing one in a successful answer leaks
      nothing. An attribute with its own ``secrets()`` (a ``SourceClient``) counts too.
    - Optionally, ``quote(value, context)`` (see ``QuotingProbe``): a probe type without it
      cannot take values a check supplies, and gates that would give it some are refused
      at load.
    - Optionally, ``measure_range(query, ctx, start, end, step)`` (see ``RangeProbe``): a
      series of points instead of one number. A probe type without it cannot serve
      criteria that judge a window of points (``compare:``); such gates are refused at load.
    """

    type_name: ClassVar[str]
    config_model: ClassVar[type[ProbeConfig]]

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class QuotingProbe(Protocol):
    """A probe type that can take check-supplied values in its queries.

    ``quote(value, context)`` returns ``value`` written for the probe's query language at
    the spot ``context`` describes, so that it selects exactly what its text names: it can
    never close a string, widen a regex or a wildcard, or add a term. Where that is not
    possible it raises ``QuoteRefused`` with the reason (the criterion is then
    inconclusive). It does no I/O and reads no state, so the loader may call it on the
    class (a ``staticmethod``) to check a gate. Values the gate's own ``vars`` give are not
    passed through it: those are written by the gate's author.
    """

    def quote(self, value: str, context: QuoteContext) -> str: ...


@dataclass(frozen=True, slots=True)
class Series:
    """Points a source gave for one query over a time range, oldest first.

    Every value is a finite float (ratios as fractions, durations in seconds), every
    ``at`` an aware UTC instant inside the asked range; there is at least one point.
    Build it with ``Series.of``, which turns an unusable answer into a measurement.
    """

    points: tuple[tuple[datetime, float], ...]
    observed_at: datetime
    detail: str = ""

    @classmethod
    def of(
        cls,
        points: Sequence[tuple[datetime, float]],
        observed_at: datetime,
        *,
        source: str,
        detail: str = "",
    ) -> Series | Measurement:
        """The series of ``points`` (sorted by time), or the inconclusive measurement
        that says why there is none: no point at all, or a point that is not finite."""
        if not points:
            return Measurement.no_data(f"{source}: no points in the range", observed_at)
        for at, value in points:
            if not math.isfinite(value):
                return Measurement.error(
                    f"{source}: the point at {at.isoformat().replace('+00:00', 'Z')}"
                    f" is {value!r}, not a finite number",
                    observed_at,
                )
        ordered = tuple(sorted(points, key=lambda point: point[0]))
        return cls(ordered, observed_at, detail)

    @property
    def values(self) -> tuple[float, ...]:
        return tuple(value for _, value in self.points)


def combine_series(
    series: Sequence[Sequence[tuple[datetime, float]]], reduce: Reduce | None
) -> list[tuple[datetime, float]] | str:
    """One list of points from the series of one answer: the only one, or, with
    ``reduce``, every instant's points combined (``min``, ``max``, ``sum``, ``avg`` of the
    series that have a point then; ``last`` is not a way to combine series). A string
    says why they cannot be combined."""
    if len(series) == 1:
        return list(series[0])
    if reduce is None or reduce == "last":
        return f"{len(series)} series returned where one was expected; set reduce: min|max|sum|avg"
    by_instant: dict[datetime, list[float]] = {}
    for points in series:
        for at, value in points:
            by_instant.setdefault(at, []).append(value)
    combined = []
    for at in sorted(by_instant):
        values = by_instant[at]
        if reduce == "min":
            value = min(values)
        elif reduce == "max":
            value = max(values)
        else:
            value = math.fsum(values)
            if reduce == "avg":
                value /= len(values)
        combined.append((at, value))
    return combined


@runtime_checkable
class RangeProbe(Protocol):
    """A probe type that can read a query as a series of points over a time range.

    ``measure_range(query, ctx, start, end, step)`` asks the source for the query's points
    from ``start`` to ``end`` (aware UTC instants, ``start < end``), about one every
    ``step``, and returns them as a ``Series``; a source that picks its own resolution may
    return points at other instants inside the range. Everything ``measure`` promises
    holds here too: it never raises for a remote failure, and returns an inconclusive
    ``Measurement`` with the cause instead (``no_data`` for an empty range, ``error`` for a
    non-finite point or an unusable answer); it goes through the same client (timeouts,
    retries, size limit, scrubbing) and takes the same filled, quoted query. ``ctx.now``
    is the sample's instant, normally ``end``.
    """

    async def measure_range(
        self,
        query: ProbeQuery,
        ctx: ProbeContext,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> Series | Measurement: ...


RangeReader = Callable[
    [ProbeQuery, ProbeContext, datetime, datetime, timedelta], Awaitable[Series | Measurement]
]


def range_reader_of(probe: object) -> RangeReader | None:
    """The ``measure_range`` of a probe (or probe type), or None when it has none."""
    read = getattr(probe, "measure_range", None)
    return read if callable(read) else None


def series_comparable(probe: object) -> bool:
    """Whether a probe (or probe type) reads series that ``compare:`` may test: it has
    ``measure_range``, and does not declare ``series_comparable = False`` (a type whose
    range points are counts filled with zeros where nothing happened, so a stopped
    canary would look like a healthy one)."""
    return range_reader_of(probe) is not None and getattr(probe, "series_comparable", True)


def quoter_of(probe: object) -> Callable[[str, QuoteContext], str] | None:
    """The ``quote`` of a probe (or probe type), or None when it has none."""
    quote = getattr(probe, "quote", None)
    return quote if callable(quote) else None


class ProbeFactory(Protocol):
    """What the ``gonogo.probes`` entry point loads: a class (or callable) like this."""

    type_name: ClassVar[str]
    config_model: ClassVar[type[ProbeConfig]]

    def __call__(self, config: Any, *, name: str) -> Probe: ...

    @staticmethod
    def check_query(query: ProbeQuery) -> list[tuple[str, str]]: ...


def declared_secrets(probe: object) -> tuple[str, ...]:
    """The secrets a probe declares: its own optional ``secrets()`` and that of each of
    its attributes that has one (the pooled client of every built-in type)."""
    found: list[str] = []
    holders = [probe, *getattr(probe, "__dict__", {}).values()]
    for holder in holders:
        method = None if isinstance(holder, type) else getattr(holder, "secrets", None)
        if callable(method):
            found.extend(s for s in method() if isinstance(s, str) and s)
    return tuple(dict.fromkeys(found))
