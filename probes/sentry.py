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
"""

from __future__ import annotations

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
)
from probes.client import JsonResponse, ProbeFailure, secret_from_env, source_client
from probes.quoting import quote_sentry, sentry_search_value
from probes.timefmt import iso

TYPE_NAME = "sentry"
DEFAULT_URL = "https://sentry.io"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
MAX_PAGES = 10
PAGE_SIZE = 100
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

    async def aclose(self) -> None:
        await self._client.aclose()

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
