"""A local Sentry web API: project details, a project's issues, stats_v2 and sessions.

Speaks the documented wire format:
- bearer auth: a wrong token gets 401 ``{"detail":"Invalid token"}`` with
  ``WWW-Authenticate: xBasic realm="api"``; no token gets DRF's default text;
- the issue list is a JSON array of issues shaped like ``examples/sentry_issues.json``,
  paginated by ``limit`` and ``cursor`` (``<id>:<offset>:<is_prev>``) with a ``Link``
  header that always carries both cursors and ``results="true|false"``;
- ``stats_v2`` and ``sessions`` want numeric ``project`` ids (400 ``Invalid project
  parameter. Values must be numbers.``), a valid ``field``, and answer
  ``{start, end, intervals, groups, query}`` envelopes, ``groups: []`` when nothing matched;
- ``stats_v2`` and ``sessions`` also take ``start``/``end`` (ISO 8601, instead of
  ``statsPeriod``) with ``interval=1h``: the answer's ``intervals`` are the hours from
  the hour of ``start`` through the hour of the inclusive ``end``, each group's ``series``
  one value per interval, from the hourly history tests set (``hourly_events``,
  ``session_history``); ``groupBy=session.status`` gives one group per status;
- the issue list takes ``sort=new`` (first seen, newest first) and ``firstSeen:<=``;
- every response carries the ``X-Sentry-Rate-Limit-*`` headers; ``rate_limited()`` is the
  429 Sentry sends (no ``Retry-After``, reset as UTC epoch seconds).

Search is a small subset of Sentry's: ``level:<x>``, ``is:unresolved|resolved``,
``firstSeen:>=<iso>`` / ``>`` and ``release:<v>``; other ``key:value`` terms are ignored.
"""

from __future__ import annotations

import copy
import re
import shlex
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fakes import Reply, ScriptedFake, example

TOKEN = "sntrys_fake_0123456789abcdefghijklmnopqrstuv"
ORG = "the-interstellar-jurisdiction"
PROJECT = "pump-station"
PROJECT_ID = 2
RESET_AT = 1_795_000_000  # UTC epoch seconds, as X-Sentry-Rate-Limit-Reset carries it
STATS_PERIODS = ("", "24h", "14d")
SESSION_FIELDS = ("crash_free_rate(session)", "crash_free_rate(user)", "sum(session)")
_PERIOD = re.compile(r"^\d+[smhdw]$")


def rate_limit_headers(*, remaining: int, reset: int = RESET_AT) -> dict[str, str]:
    return {
        "X-Sentry-Rate-Limit-Limit": "40",
        "X-Sentry-Rate-Limit-Remaining": str(remaining),
        "X-Sentry-Rate-Limit-Reset": str(reset),
        "X-Sentry-Rate-Limit-ConcurrentLimit": "25",
        "X-Sentry-Rate-Limit-ConcurrentRemaining": "24",
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _bad(detail: str) -> Reply:
    return Reply(status=400, json={"detail": detail})


class SentryFake(ScriptedFake):
    def __init__(
        self,
        *,
        token: str = TOKEN,
        org: str = ORG,
        project: str = PROJECT,
        project_id: int = PROJECT_ID,
    ) -> None:
        super().__init__()
        self.token = token
        self.org = org
        self.project = project
        self.project_id = project_id
        self.issues: list[dict[str, Any]] = []
        self.error_events: int | None = None
        self.releases: dict[str, tuple[float | None, int]] = {}
        # Hour (UTC, on the hour) -> accepted error events in that hour.
        self.hourly_events: dict[datetime, int] = {}
        # Release -> hour -> session.status -> sessions that ended so in that hour.
        self.session_history: dict[str, dict[datetime, dict[str, int]]] = {}

    # -- what tests call ---------------------------------------------------------

    def add_issue(
        self, first_seen: datetime, *, level: str = "error", status: str = "unresolved"
    ) -> dict[str, Any]:
        issue: dict[str, Any] = copy.deepcopy(example("sentry_issues.json")[0])
        number = len(self.issues) + 1
        issue.update(
            {
                "id": str(number),
                "shortId": f"PUMP-STATION-{number}",
                "firstSeen": _iso(first_seen),
                "lastSeen": _iso(first_seen),
                "level": level,
                "status": status,
            }
        )
        self.issues.append(issue)
        return issue

    def set_release(self, release: str, crash_free_rate: float | None, sessions: int) -> None:
        self.releases[release] = (crash_free_rate, sessions)

    def rate_limited(self) -> Reply:
        return Reply(
            status=429,
            json=example("sentry_error_429.json"),
            content_type="text/html; charset=utf-8",
            headers=rate_limit_headers(remaining=0),
        )

    # -- serving -------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        def route(answer: Any) -> Any:
            async def handler(request: web.Request) -> web.StreamResponse:
                return await self.handle(request, lambda r: self._authorized(r, answer))

            return handler

        app.router.add_get("/api/0/projects/{org}/{project}/", route(self._project_details))
        app.router.add_get("/api/0/projects/{org}/{project}/issues/", route(self._issues))
        app.router.add_get("/api/0/organizations/{org}/stats_v2/", route(self._stats_v2))
        app.router.add_get("/api/0/organizations/{org}/sessions/", route(self._sessions))

    def _authorized(self, request: web.Request, answer: Any) -> Reply:
        header = request.headers.get("Authorization")
        if header is None:
            reply = Reply(
                status=401, json={"detail": "Authentication credentials were not provided."}
            )
        elif header != f"Bearer {self.token}":
            reply = Reply(
                status=401,
                json=example("sentry_error_401.json"),
                headers={"WWW-Authenticate": 'xBasic realm="api"'},
            )
        else:
            reply = answer(request)
        headers = {**rate_limit_headers(remaining=39), **reply.headers}
        return Reply(
            status=reply.status,
            json=reply.json,
            body=reply.body,
            headers=headers,
            content_type=reply.content_type,
        )

    def _known_project(self, request: web.Request) -> bool:
        org = request.match_info["org"]
        project = request.match_info["project"]
        return org == self.org and project in (self.project, str(self.project_id))

    def _project_details(self, request: web.Request) -> Reply:
        if not self._known_project(request):
            return Reply(status=404, json=example("sentry_error_404.json"))
        return Reply(json={"id": str(self.project_id), "slug": self.project, "name": "Pump"})

    def _issues(self, request: web.Request) -> Reply:
        if not self._known_project(request):
            return Reply(status=404, json=example("sentry_error_404.json"))
        params = request.query
        if params.get("statsPeriod") not in (None, *STATS_PERIODS):
            return _bad("Invalid stats_period. Valid choices are '', '24h', and '14d'")
        try:
            limit = int(params.get("limit", "100"))
            offset = int(params.get("cursor", "0:0:0").split(":")[1])
        except (ValueError, IndexError):
            return _bad("Invalid cursor parameter.")
        limit = max(1, min(limit, 100))
        matching = self._search(params.get("query", "is:unresolved"))
        if matching is None:
            return _bad("Invalid search filter: firstSeen")
        if params.get("sort") == "new":
            matching.sort(key=lambda issue: issue["firstSeen"], reverse=True)
        page = matching[offset : offset + limit]
        base = f"{self.url}{request.path}?&cursor="
        previous_offset = max(0, offset - limit)
        link = (
            f'<{base}0:{previous_offset}:1>; rel="previous"; results="{str(offset > 0).lower()}";'
            f' cursor="0:{previous_offset}:1", '
            f'<{base}0:{offset + limit}:0>; rel="next";'
            f' results="{str(offset + limit < len(matching)).lower()}";'
            f' cursor="0:{offset + limit}:0"'
        )
        return Reply(json=page, headers={"Link": link})

    def _search(self, query: str) -> list[dict[str, Any]] | None:
        found = list(self.issues)
        for term in shlex.split(query):
            key, _, value = term.partition(":")
            if key == "level":
                found = [i for i in found if i["level"] == value]
            elif key == "is":
                found = [i for i in found if i["status"] == value]
            elif key == "firstSeen":
                match = re.match(r"^(>=|>|<=|<)(.+)$", value)
                if match is None:
                    return None
                try:
                    bound = datetime.fromisoformat(match.group(2).replace("Z", "+00:00"))
                except ValueError:
                    return None
                operator = match.group(1)
                found = [
                    i
                    for i in found
                    if _compare(
                        datetime.fromisoformat(i["firstSeen"].replace("Z", "+00:00")),
                        operator,
                        bound,
                    )
                ]
        return found

    def _stats_params(self, request: web.Request) -> Reply | None:
        params = request.query
        if request.match_info["org"] != self.org:
            return Reply(status=404, json=example("sentry_error_404.json"))
        projects = params.getall("project", [])
        if not all(p.lstrip("-").isdigit() for p in projects):
            return _bad("Invalid project parameter. Values must be numbers.")
        if "start" in params or "end" in params:
            if "statsPeriod" in params:
                return _bad("start and end are not allowed with statsPeriod")
            try:
                _range(params)
            except (KeyError, ValueError):
                return _bad("start and end are both required")
        elif not _PERIOD.match(params.get("statsPeriod", "")):
            return _bad("Invalid statsPeriod")
        if params.get("interval") not in ("1h", "1d"):
            return _bad("Invalid interval")
        return None

    def _hourly_envelope(self, request: web.Request) -> dict[str, Any]:
        """The envelope of a ``start``/``end`` answer: one interval per hour."""
        start, end = _range(request.query)
        hours = []
        at = start.replace(minute=0, second=0, microsecond=0)
        while at <= end:
            hours.append(at)
            at += timedelta(hours=1)
        return {
            "start": _iso(hours[0]) if hours else _iso(start),
            "end": _iso(hours[-1] + timedelta(hours=1)) if hours else _iso(end),
            "intervals": [_iso(h) for h in hours],
            "groups": [],
            "_hours": hours,
        }

    def _stats_v2(self, request: web.Request) -> Reply:
        problem = self._stats_params(request)
        if problem is not None:
            return problem
        params = request.query
        fields = params.getall("field", [])
        if not fields:
            return _bad('Request is missing a "field"')
        if any(f not in ("sum(quantity)", "sum(times_seen)") for f in fields):
            return _bad(f'Invalid field: "{fields[0]}"')
        if not params.getall("groupBy", []):
            return _bad('Request is missing a "groupBy"')
        if "start" in params:
            body = self._hourly_envelope(request)
            hours = body.pop("_hours")
            wanted = (
                params.get("category") == "error"
                and params.get("outcome") == "accepted"
                and str(self.project_id) in params.getall("project", [str(self.project_id)])
            )
            series = [self.hourly_events.get(h, 0) for h in hours]
            if wanted and any(series):
                body["groups"] = [
                    {
                        "by": {"outcome": "accepted"},
                        "totals": {"sum(quantity)": sum(series)},
                        "series": {"sum(quantity)": series},
                    }
                ]
            return Reply(json=body)
        body = copy.deepcopy(example("sentry_stats_v2.json"))
        counted = (
            self.error_events is not None
            and params.get("category") == "error"
            and params.get("outcome") == "accepted"
            and str(self.project_id) in params.getall("project", [str(self.project_id)])
        )
        if counted:
            body["groups"] = [
                {
                    "by": {"outcome": "accepted"},
                    "totals": {"sum(quantity)": self.error_events},
                    "series": {"sum(quantity)": [self.error_events]},
                }
            ]
        else:
            body["groups"] = []
        return Reply(json=body)

    def _sessions(self, request: web.Request) -> Reply:
        problem = self._stats_params(request)
        if problem is not None:
            return problem
        params = request.query
        fields = params.getall("field", [])
        if not fields:
            return _bad('Request is missing a "field"')
        for field in fields:
            if field not in SESSION_FIELDS:
                return _bad(f'Invalid field: "{field}"')
        query = params.get("query", "")
        body = copy.deepcopy(example("sentry_sessions_empty.json"))
        body["query"] = query
        release = None
        for term in shlex.split(query):
            key, _, value = term.partition(":")
            if key == "release":
                release = value
            elif key:
                return _bad(f"Invalid search filter: {term}")
        if "start" in params:
            return self._session_series(request, release, fields, body["query"])
        known = self.releases.get(release) if release is not None else None
        if known is not None and str(self.project_id) in params.getall("project", []):
            rate, sessions = known
            totals = {
                "crash_free_rate(session)": rate,
                "crash_free_rate(user)": rate,
                "sum(session)": sessions,
            }
            group: dict[str, Any] = {"by": {}, "totals": {f: totals[f] for f in fields}}
            if params.get("includeSeries") != "0":
                group["series"] = {f: [None, totals[f]] for f in fields}
            body["groups"] = [group]
        return Reply(json=body)

    def _session_series(
        self, request: web.Request, release: str | None, fields: list[str], query: str
    ) -> Reply:
        params = request.query
        groupings = params.getall("groupBy", [])
        if groupings not in ([], ["session.status"]):
            return _bad(f'Invalid groupBy: "{groupings[0]}"')
        if groupings and fields != ["sum(session)"]:
            return _bad(f"Cannot group field {fields[0]} by session.status")
        body = self._hourly_envelope(request)
        hours = body.pop("_hours")
        body["query"] = query
        history = self.session_history.get(release or "", {})
        if str(self.project_id) not in params.getall("project", []) or not any(
            h in history for h in hours
        ):
            return Reply(json=body)
        statuses = sorted({s for counts in history.values() for s in counts})
        groups = []
        for status in statuses:
            series = [history.get(h, {}).get(status, 0) for h in hours]
            group: dict[str, Any] = {
                "by": {"session.status": status},
                "series": {"sum(session)": series},
            }
            if params.get("includeTotals") != "0":
                group["totals"] = {"sum(session)": sum(series)}
            groups.append(group)
        body["groups"] = groups
        return Reply(json=body)


def _range(params: Any) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(params["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(params["end"].replace("Z", "+00:00"))
    if start.tzinfo is None or end.tzinfo is None or end < start:
        raise ValueError("start and end")
    return start.astimezone(UTC), end.astimezone(UTC)


def _compare(first: datetime, operator: str, bound: datetime) -> bool:
    return {
        ">=": first >= bound,
        ">": first > bound,
        "<=": first <= bound,
        "<": first < bound,
    }[operator]
