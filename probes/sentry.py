"""The ``sentry`` probe: new issues, error events and crash-free rate from Sentry's web API.

Bearer-token reads of the documented ``/api/0/`` endpoints, SaaS or self-hosted:

- ``metric: new_issues``: issues first seen since the check began (or within ``window``,
  default 1h, without a check) matching ``params.query``, from the project's issue list,
  following ``Link`` pagination up to ``MAX_PAGES`` pages;
- ``metric: events``: accepted error events in ``window`` (default 1h), from the
  organization's ``stats_v2``;
- ``metric: crash_free_rate``: the crash-free session rate (0..1) of ``params.release``
  or the check's ``version`` over ``window`` (default 24h), from ``sessions``, with the
  session count as volume.

The organization endpoints take numeric project ids; a project given by slug is resolved
once through the project details endpoint. Sentry rounds stats windows to whole hours.

``measure_range`` (replays) reads the same metrics over a past range with the same
endpoints bounded by ``start``/``end``: the issue list with a ``firstSeen`` range (newest
first, paginated), ``stats_v2`` and ``sessions`` (grouped by ``session.status``) at their
documented minimum ``interval`` of one hour. It gives a point at every asked step: the
metric's ``window`` ending at that step, counted from issues' ``firstSeen`` instants, or
from the whole hours that end at or before the step (an hour still open at the step would
hold events from after it), so no point ever sees data from after its instant.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import Field

from probes.answers import kind_of, shorten
from probes.base import (
    Measurement,
    ProbeConfig,
    ProbeContext,
    ProbeQuery,
    QuoteContext,
    QuoteRefused,
    Series,
)
from probes.client import JsonResponse, ProbeFailure, secret_from_env, source_client
from probes.quoting import quote_sentry, sentry_search_value
from probes.timefmt import format_duration, iso

TYPE_NAME = "sentry"
DEFAULT_URL = "https://sentry.io"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
MAX_PAGES = 10
# Pages of issues one range read may follow (newest first): 2,000 issues.
RANGE_MAX_PAGES = 20
PAGE_SIZE = 100
# stats_v2 and sessions document one hour as their finest interval.
HOUR = timedelta(hours=1)
# Hourly buckets asked in one stats read: 30 days, under the sessions endpoint's limit on
# the number of points ("Your interval and date range would create too many results").
MAX_BUCKETS_PER_READ = 720
METRICS = ("new_issues", "events", "crash_free_rate")
DEFAULT_WINDOWS = {
    "new_issues": timedelta(hours=1),
    "events": timedelta(hours=1),
    "crash_free_rate": timedelta(hours=24),
}
PARAMS_BY_METRIC: Mapping[str, tuple[str, ...]] = {
    "new_issues": ("query",),
    "events": (),
    "crash_free_rate": ("release",),
}
CRASH_FREE = "crash_free_rate(session)"
SESSIONS = "sum(session)"
QUANTITY = "sum(quantity)"
_LINK = re.compile(r'<([^>]*)>((?:\s*;\s*[A-Za-z]+\s*=\s*"[^"]*")*)')
_LINK_PARAM = re.compile(r'([A-Za-z]+)\s*=\s*"([^"]*)"')
_UNUSED_KEYS = ("query", "matchers", "path", "field", "reduce")


class SentryConfig(ProbeConfig):
    org: str = Field(pattern=SLUG, description="organization slug")
    project: str = Field(pattern=SLUG, description="project slug or numeric id")
    token_env: str = Field(pattern=ENV_NAME, description="variable holding an auth token")
    environment: str | None = Field(default=None, min_length=1, description="e.g. production")

    def base_url(self) -> str:
        return self.url or DEFAULT_URL


class SentryProbe:
    type_name: ClassVar[str] = TYPE_NAME
    config_model: ClassVar[type[ProbeConfig]] = SentryConfig
    # Range reads are hourly counts, zero where nothing happened: a canary that stopped
    # sending anything looks like a healthy one, so compare: may not test them.
    series_comparable: ClassVar[bool] = False

    def __init__(self, config: SentryConfig, *, name: str) -> None:
        self.config = config
        self.name = name
        token = secret_from_env(config.token_env, field="token_env") or ""
        self._client = source_client(
            config,
            base_url=config.base_url(),
            headers={"Authorization": f"Bearer {token}"},
            secrets=[token],
        )
        self._project_id: str | None = config.project if config.project.isdigit() else None

    def __repr__(self) -> str:
        return f"SentryProbe(name={self.name!r}, url={self.config.base_url()!r})"

    @staticmethod
    def check_query(query: ProbeQuery) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if query.metric not in METRICS:
            got = f"{query.metric!r} is not one" if query.metric else "it is missing"
            problems.append(("metric", f"metric: must be one of {', '.join(METRICS)}; {got}"))
        else:
            allowed = PARAMS_BY_METRIC[query.metric]
            for key in query.params:
                if key not in allowed:
                    known = ", ".join(allowed) or "none"
                    problems.append(
                        ("params", f"params.{key} is not used by {query.metric} (known: {known})")
                    )
        for key in _UNUSED_KEYS:
            if getattr(query, key):
                hint = " (write params: {query: ...})" if key == "query" else ""
                problems.append((key, f"{key}: is not used by the {TYPE_NAME} probe type{hint}"))
        if query.window is not None and query.window <= timedelta(0):
            problems.append(("window", "window must be longer than 0s"))
        return problems

    @staticmethod
    def quote(value: str, context: QuoteContext) -> str:
        """A check-supplied value in Sentry search (docs/probes.md#sentry)."""
        return quote_sentry(value, context)

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        metric = query.metric
        window = query.window or DEFAULT_WINDOWS.get(metric or "", timedelta(hours=1))
        try:
            if metric == "new_issues":
                return await self._new_issues(query, ctx, window)
            if metric == "events":
                return await self._events(ctx, window)
            if metric == "crash_free_rate":
                return await self._crash_free_rate(query, ctx, window)
        except ProbeFailure as failure:
            return self._failed(failure, ctx.now)
        except _Unexpected as bad:
            return Measurement.error(f"{TYPE_NAME}: unexpected response: {bad}", ctx.now)
        return Measurement.error(
            f"{TYPE_NAME}: metric must be one of {', '.join(METRICS)}, not {metric!r}", ctx.now
        )

    async def measure_range(
        self,
        query: ProbeQuery,
        ctx: ProbeContext,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> Series | Measurement:
        """The metric at every ``step`` from ``start`` to ``end``, each point its
        ``window`` ending there (module docstring); failures as ``measure`` gives them."""
        metric = query.metric
        window = query.window or DEFAULT_WINDOWS.get(metric or "", HOUR)
        instants = _instants(start, end, step)
        if not instants:
            return Measurement.error(f"{TYPE_NAME}: the range has no step in it", ctx.now)
        try:
            if metric == "new_issues":
                found = await self._new_issues_range(query, window, instants)
            elif metric == "events":
                found = await self._events_range(window, instants)
            elif metric == "crash_free_rate":
                found = await self._crash_free_range(query, ctx, window, instants)
            else:
                return Measurement.error(
                    f"{TYPE_NAME}: metric must be one of {', '.join(METRICS)}, not {metric!r}",
                    ctx.now,
                )
        except ProbeFailure as failure:
            return self._failed(failure, ctx.now)
        except _Unexpected as bad:
            return Measurement.error(f"{TYPE_NAME}: unexpected response: {bad}", ctx.now)
        except QuoteRefused as refused:
            return Measurement.error(f"{TYPE_NAME}: {refused}", ctx.now)
        if isinstance(found, Measurement):
            return dataclasses.replace(found, observed_at=ctx.now)
        points, detail = found
        if not points:
            return Measurement.no_data(
                f"{TYPE_NAME}: no {metric} from {iso(instants[0])} to {iso(instants[-1])}",
                ctx.now,
            )
        return Series.of(points, ctx.now, source=TYPE_NAME, detail=detail)

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- range reads ---------------------------------------------------------------------

    async def _new_issues_range(
        self, query: ProbeQuery, window: timedelta, instants: list[datetime]
    ) -> tuple[list[tuple[datetime, float]], str] | Measurement:
        """Issues first seen in the range, newest first; each step counts those first seen
        in ``[t - window, t]``. When the pages run out before the range's start, steps
        whose window reaches past the oldest issue read are left without a point."""
        since = (instants[0] - window).replace(microsecond=0)
        until = instants[-1]
        search = query.params.get("query", "").strip()
        params: dict[str, str] = {
            "query": f"{search} firstSeen:>={iso(since)} firstSeen:<={iso(until)}".strip(),
            "statsPeriod": "",
            "sort": "new",
            "limit": str(PAGE_SIZE),
        }
        if self.config.environment:
            params["environment"] = self.config.environment
        path = f"/api/0/projects/{_seg(self.config.org)}/{_seg(self.config.project)}/issues/"
        seen: list[datetime] = []
        unreadable = 0
        cursor: str | None = None
        complete = True
        for page in range(1, RANGE_MAX_PAGES + 1):
            response = await self._client.get_json(
                path, params={**params, "cursor": cursor} if cursor else params
            )
            for first_seen in _first_seen_times(response.json):
                if first_seen is None:
                    unreadable += 1
                else:
                    seen.append(first_seen)
            cursor = next_cursor(response.headers.get("link", ""))
            if cursor is None:
                break
            if page == RANGE_MAX_PAGES:
                complete = False
        seen.sort()
        points = []
        for at in instants:
            low = at - window
            # Past the pages read, older issues are unknown: no count rather than too few.
            if not complete and (not seen or low <= seen[0]):
                continue
            # An issue without a readable firstSeen counts everywhere, as in ``measure``.
            count = bisect.bisect_right(seen, at) - bisect.bisect_left(seen, low) + unreadable
            points.append((at, float(count)))
        if not points and not complete:
            return Measurement.error(
                f"{TYPE_NAME}: more than {RANGE_MAX_PAGES * PAGE_SIZE} new issues in the range;"
                " replay a shorter range",
                instants[-1],
            )
        matching = f" matching {search!r}" if search else ""
        return points, f"{TYPE_NAME}: new issues in {format_duration(window)}{matching}"

    async def _events_range(
        self, window: timedelta, instants: list[datetime]
    ) -> tuple[list[tuple[datetime, float]], str]:
        project_id = await self._project()
        params = {
            "field": QUANTITY,
            "groupBy": "outcome",
            "category": "error",
            "outcome": "accepted",
            "interval": "1h",
            "project": project_id,
        }
        buckets: dict[datetime, float] = {}
        for low, high in _hour_reads(window, instants):
            response = await self._client.get_json(
                f"/api/0/organizations/{_seg(self.config.org)}/stats_v2/",
                params={**params, "start": iso(low), "end": iso(high)},
            )
            for at, by_group in _hourly(response.json, QUANTITY).items():
                buckets[at] = sum(by_group.values())
        points = []
        for at in instants:
            hours = _window_hours(buckets, window, at)
            if hours is not None:
                points.append((at, math.fsum(buckets[h] for h in hours)))
        return points, (
            f"{TYPE_NAME}: accepted error events in the {stats_period(_whole_hours(window))}"
            " of whole hours before each step"
        )

    async def _crash_free_range(
        self, query: ProbeQuery, ctx: ProbeContext, window: timedelta, instants: list[datetime]
    ) -> tuple[list[tuple[datetime, float]], str] | Measurement:
        release = query.params.get("release") or ctx.variables.get("version")
        if not release:
            return Measurement.error(
                f"{TYPE_NAME}: crash_free_rate needs a release:"
                " set params.release or give a version",
                ctx.now,
            )
        search = f"release:{_search_value(release)}"
        project_id = await self._project()
        params: list[tuple[str, str]] = [
            ("field", SESSIONS),
            ("groupBy", "session.status"),
            ("project", project_id),
            ("query", search),
            ("interval", "1h"),
            ("includeTotals", "0"),
        ]
        if self.config.environment:
            params.append(("environment", self.config.environment))
        crashed: dict[datetime, float] = {}
        total: dict[datetime, float] = {}
        for low, high in _hour_reads(window, instants):
            response = await self._client.get_json(
                f"/api/0/organizations/{_seg(self.config.org)}/sessions/",
                params=[*params, ("start", iso(low)), ("end", iso(high))],
            )
            for at, by_status in _hourly(
                response.json, SESSIONS, group_key="session.status"
            ).items():
                total[at] = sum(by_status.values())
                crashed[at] = by_status.get("crashed", 0.0)
        points = []
        for at in instants:
            hours = _window_hours(total, window, at)
            if hours is None:
                continue
            sessions = math.fsum(total[h] for h in hours)
            if sessions > 0:  # no sessions: no rate, as ``measure`` says
                points.append((at, 1.0 - math.fsum(crashed[h] for h in hours) / sessions))
        return points, (
            f"{TYPE_NAME}: release {release}, crash-free sessions in the"
            f" {stats_period(_whole_hours(window))} of whole hours before each step"
        )

    # -- metrics -----------------------------------------------------------------------

    async def _new_issues(
        self, query: ProbeQuery, ctx: ProbeContext, window: timedelta
    ) -> Measurement:
        since = ctx.check_started_at or ctx.now - window
        since_text = iso(since.replace(microsecond=0))
        search = query.params.get("query", "").strip()
        params: dict[str, str] = {
            "query": f"{search} firstSeen:>={since_text}".strip(),
            # "" turns off the per-issue stats buckets, which are not needed here.
            "statsPeriod": "",
            "limit": str(PAGE_SIZE),
        }
        if self.config.environment:
            params["environment"] = self.config.environment
        path = f"/api/0/projects/{_seg(self.config.org)}/{_seg(self.config.project)}/issues/"
        count = 0
        cursor: str | None = None
        pages = 0
        while True:
            response = await self._client.get_json(
                path, params={**params, "cursor": cursor} if cursor else params
            )
            pages += 1
            count += _count_new_issues(response.json, since)
            cursor = next_cursor(response.headers.get("link", ""))
            if cursor is None:
                break
            if pages >= MAX_PAGES:
                return Measurement.ok(
                    float(count),
                    ctx.now,
                    detail=f"{TYPE_NAME}: at least {count} new issues since {since_text}"
                    f" (stopped after {MAX_PAGES} pages)",
                )
        matching = f" matching {search!r}" if search else ""
        return Measurement.ok(
            float(count),
            ctx.now,
            detail=f"{TYPE_NAME}: {count} new issues since {since_text}{matching}",
        )

    async def _events(self, ctx: ProbeContext, window: timedelta) -> Measurement:
        project_id = await self._project()
        params = {
            "field": QUANTITY,
            "groupBy": "outcome",
            "category": "error",
            "outcome": "accepted",
            "statsPeriod": stats_period(window),
            "interval": _interval(window),
            "project": project_id,
        }
        response = await self._client.get_json(
            f"/api/0/organizations/{_seg(self.config.org)}/stats_v2/", params=params
        )
        groups = _groups(response.json)
        total = 0.0
        for index, group in enumerate(groups):
            total += _total(group, QUANTITY, index, allow_null=False) or 0.0
        return Measurement.ok(
            total,
            ctx.now,
            detail=f"{TYPE_NAME}: {total:g} accepted error events in {stats_period(window)}",
        )

    async def _crash_free_rate(
        self, query: ProbeQuery, ctx: ProbeContext, window: timedelta
    ) -> Measurement:
        release = query.params.get("release") or ctx.variables.get("version")
        if not release:
            return Measurement.error(
                f"{TYPE_NAME}: crash_free_rate needs a release:"
                " set params.release or start a check with a version",
                ctx.now,
            )
        try:
            search = f"release:{_search_value(release)}"
        except QuoteRefused as refused:
            return Measurement.error(f"{TYPE_NAME}: {refused}", ctx.now)
        project_id = await self._project()
        params: list[tuple[str, str]] = [
            ("field", CRASH_FREE),
            ("field", SESSIONS),
            ("project", project_id),
            ("query", search),
            ("statsPeriod", stats_period(window)),
            ("interval", _interval(window)),
            ("includeSeries", "0"),
        ]
        if self.config.environment:
            params.append(("environment", self.config.environment))
        response = await self._client.get_json(
            f"/api/0/organizations/{_seg(self.config.org)}/sessions/", params=params
        )
        groups = _groups(response.json)
        if not groups:
            return Measurement.no_data(
                f"{TYPE_NAME}: no sessions for release {release} in {stats_period(window)}",
                ctx.now,
            )
        rate = _total(groups[0], CRASH_FREE, 0, allow_null=True)
        sessions = _total(groups[0], SESSIONS, 0, allow_null=True, required=False)
        if rate is None:
            return Measurement.no_data(
                f"{TYPE_NAME}: no crash-free rate for release {release} (no sessions)", ctx.now
            )
        if not math.isfinite(rate):
            return Measurement.error(f"{TYPE_NAME}: {CRASH_FREE} is {rate!r}", ctx.now)
        sessions_text = f" over {sessions:g} sessions" if sessions is not None else ""
        return Measurement.ok(
            rate,
            ctx.now,
            volume=sessions,
            detail=f"{TYPE_NAME}: release {release}{sessions_text}",
        )

    async def _project(self) -> str:
        """The numeric project id the organization endpoints want."""
        if self._project_id is None:
            response: JsonResponse = await self._client.get_json(
                f"/api/0/projects/{_seg(self.config.org)}/{_seg(self.config.project)}/"
            )
            body = response.json
            found = body.get("id") if isinstance(body, dict) else None
            if not (isinstance(found, str | int) and str(found).isdigit()):
                raise _Unexpected(f"project details for {self.config.project!r} have no id")
            self._project_id = str(found)
        return self._project_id

    def _failed(self, failure: ProbeFailure, now: datetime) -> Measurement:
        detail = failure.detail
        body = failure.body
        if isinstance(body, dict) and isinstance(body.get("detail"), str):
            detail += f": {shorten(body['detail'])}"
        if failure.http_status in (401, 403):
            detail += f" — check token_env {self.config.token_env}"
        reset = _reset_time(failure.headers.get("x-sentry-rate-limit-reset"))
        if failure.http_status == 429 and reset is not None:
            detail += f"; limit resets at {iso(reset.replace(microsecond=0))}"
        return Measurement(failure.status, now, detail=f"{TYPE_NAME}: {detail}")


class _Unexpected(ValueError):
    """A 200 body that is not the documented shape."""


def next_cursor(link_header: str) -> str | None:
    """The cursor of ``rel="next"`` in Sentry's ``Link`` header when that page has results."""
    for match in _LINK.finditer(link_header):
        attributes = dict(_LINK_PARAM.findall(match.group(2)))
        if attributes.get("rel") == "next":
            cursor: str = attributes.get("cursor", "")
            return cursor if attributes.get("results") == "true" and cursor else None
    return None


def stats_period(window: timedelta) -> str:
    """``window`` in Sentry's ``statsPeriod`` form (``90m``, ``24h``, ``7d``)."""
    seconds = max(1, math.ceil(window.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _interval(window: timedelta) -> str:
    # Both stats endpoints accept 1h..1d intervals that divide a day; keep buckets few.
    return "1h" if window <= timedelta(days=14) else "1d"


def _instants(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """``start``, ``start + step``, ... up to ``end``: the steps a range read answers at."""
    if step <= timedelta(0) or end < start:
        return []
    return [start + step * index for index in range(int((end - start) / step) + 1)]


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _whole_hours(window: timedelta) -> timedelta:
    """``window`` rounded up to whole hours (at least one), as Sentry's stats count it."""
    return HOUR * max(1, math.ceil(window / HOUR))


def _window_hours(
    buckets: Mapping[datetime, float], window: timedelta, at: datetime
) -> list[datetime] | None:
    """The hourly buckets of ``window`` that end at or before ``at`` (the last one
    ending at the hour ``at`` is in), or None when one of them is not in ``buckets``."""
    last = _floor_hour(at)
    count = int(_whole_hours(window) / HOUR)
    hours = [last - HOUR * (count - index) for index in range(count)]
    return hours if all(hour in buckets for hour in hours) else None


def _hour_reads(window: timedelta, instants: list[datetime]) -> list[tuple[datetime, datetime]]:
    """``(start, end)`` of each hourly stats read covering every step's window: whole
    hours, at most ``MAX_BUCKETS_PER_READ`` a read."""
    first = _floor_hour(instants[0]) - _whole_hours(window)
    last = _floor_hour(instants[-1])
    reads = []
    while first < last:
        high = min(last, first + HOUR * MAX_BUCKETS_PER_READ)
        reads.append((first, high))
        first = high
    return reads


def _hourly(
    body: Any, field: str, *, group_key: str | None = None
) -> dict[datetime, dict[str, float]]:
    """Each hourly bucket of a stats answer (``intervals`` and each group's ``series``),
    by group (its ``by[group_key]``); a bucket whose value is null is left out. Partial
    buckets (one not starting on the hour) are left out too."""
    if not isinstance(body, dict):
        raise _Unexpected(f"a JSON object was expected, got {kind_of(body)}")
    intervals = body.get("intervals")
    if not isinstance(intervals, list):
        raise _Unexpected(f"intervals is {kind_of(intervals)}, not a list")
    starts: list[datetime | None] = []
    for index, text in enumerate(intervals):
        at = _parse_time(text)
        if at is None:
            raise _Unexpected(f"intervals[{index}] is not an ISO 8601 instant")
        starts.append(at if at == _floor_hour(at) else None)
    found: dict[datetime, dict[str, float]] = {at: {} for at in starts if at is not None}
    for index, group in enumerate(_groups(body)):
        series = group.get("series") if isinstance(group, dict) else None
        values = series.get(field) if isinstance(series, dict) else None
        if not isinstance(values, list) or len(values) != len(starts):
            raise _Unexpected(
                f"groups[{index}].series[{field!r}] is not a list of {len(starts)} values"
            )
        by = group.get("by") if isinstance(group, dict) else None
        name = str(by.get(group_key)) if group_key and isinstance(by, dict) else str(index)
        for at, value in zip(starts, values, strict=True):
            if at is None:
                continue
            if value is None:
                found.pop(at, None)
                continue
            if not (isinstance(value, int | float) and not isinstance(value, bool)):
                raise _Unexpected(
                    f"groups[{index}].series[{field!r}] holds {kind_of(value)}, not a number"
                )
            if not math.isfinite(value):
                raise _Unexpected(f"groups[{index}].series[{field!r}] holds {value!r}")
            if at in found:
                found[at][name] = found[at].get(name, 0.0) + float(value)
    return found


def _first_seen_times(body: Any) -> list[datetime | None]:
    if not isinstance(body, list):
        raise _Unexpected(f"the issue list is {kind_of(body)}, not a list")
    times = []
    for index, issue in enumerate(body):
        if not isinstance(issue, dict):
            raise _Unexpected(f"issue [{index}] is {kind_of(issue)}, not an object")
        times.append(_parse_time(issue.get("firstSeen")))
    return times


def _count_new_issues(body: Any, since: datetime) -> int:
    if not isinstance(body, list):
        raise _Unexpected(f"the issue list is {kind_of(body)}, not a list")
    count = 0
    for index, issue in enumerate(body):
        if not isinstance(issue, dict):
            raise _Unexpected(f"issue [{index}] is {kind_of(issue)}, not an object")
        first_seen = _parse_time(issue.get("firstSeen"))
        # An issue without a readable firstSeen counts: miscounting it as old would fail open.
        if first_seen is None or first_seen >= since:
            count += 1
    return count


def _groups(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        raise _Unexpected(f"a JSON object was expected, got {kind_of(body)}")
    groups = body.get("groups")
    if groups is None:
        return []
    if not isinstance(groups, list):
        raise _Unexpected(f"groups is {kind_of(groups)}, not a list")
    return groups


def _total(
    group: Any, field: str, index: int, *, allow_null: bool, required: bool = True
) -> float | None:
    totals = group.get("totals") if isinstance(group, dict) else None
    if not isinstance(totals, dict):
        raise _Unexpected(f"groups[{index}] has no totals object")
    if field not in totals:
        if required:
            raise _Unexpected(f"groups[{index}].totals has no {field!r}")
        return None
    value = totals[field]
    if value is None and allow_null:
        return None
    if not (isinstance(value, int | float) and not isinstance(value, bool)):
        raise _Unexpected(f"groups[{index}].totals[{field!r}] is {kind_of(value)}, not a number")
    return float(value)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _reset_time(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC) if value else None
    except (ValueError, OverflowError, OSError):
        return None


def _search_value(value: str) -> str:
    """A value for Sentry's search syntax (docs/probes.md#sentry)."""
    return sentry_search_value(value)


def _seg(value: str) -> str:
    return quote(value, safe="")
