"""``alertmanager``: how many alerts matching ``matchers`` are firing (``GET /api/v2/alerts``).

Silenced and inhibited alerts do not count: someone already decided they do not matter.
Zero firing alerts is a real measurement (0), not "no data".
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field

from probes.base import Measurement, ProbeConfig, ProbeContext, ProbeQuery, QuoteContext
from probes.client import (
    ENV_VAR_PATTERN,
    HTTP_URL_PATTERN,
    ProbeFailure,
    bearer_source,
    failure_measurement,
)
from probes.quoting import quote_alertmanager

ALERTS_PATH = "/api/v2/alerts"
_MATCHER = re.compile(r"^\s*[^=!~{}\s]+\s*(=~|!~|!=|=)")
_NAMES_SHOWN = 5


class AlertmanagerConfig(ProbeConfig):
    url: str = Field(pattern=HTTP_URL_PATTERN, description="Alertmanager base URL")
    token_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN)
    headers: dict[str, str] = Field(default_factory=dict)


def _firing(alert: Any) -> bool:
    if not isinstance(alert, dict):
        return False
    status = alert.get("status")
    if not isinstance(status, dict) or status.get("state") != "active":
        return False
    # The state already says "suppressed" for these; checked again in case a proxy or an
    # older server reports them differently.
    return not any(status.get(key) for key in ("silencedBy", "inhibitedBy", "mutedBy"))


def _alert_name(alert: dict[str, Any]) -> str:
    labels = alert.get("labels")
    name = labels.get("alertname") if isinstance(labels, dict) else None
    return str(name) if name else "unnamed"


class AlertmanagerProbe:
    type_name: ClassVar[str] = "alertmanager"
    config_model: ClassVar[type[ProbeConfig]] = AlertmanagerConfig

    def __init__(self, config: AlertmanagerConfig, *, name: str) -> None:
        self.config = config
        self.name = name
        self.client, self._credential = bearer_source(config)

    @staticmethod
    def check_query(query: ProbeQuery) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if not query.matchers:
            problems.append(
                ("matchers", "an alertmanager criterion needs matchers: ['alertname=\"X\"', ...]")
            )
        for index, matcher in enumerate(query.matchers):
            text = matcher.strip()
            if text.startswith("{") or text.endswith("}"):
                problems.append(
                    (f"matchers.{index}", f"write {matcher!r} without braces, one matcher per item")
                )
            elif not _MATCHER.match(text):
                problems.append(
                    (
                        f"matchers.{index}",
                        f'{matcher!r} is not a matcher like name="value" (=, !=, =~, !~)',
                    )
                )
        for key, value in (("query", query.query), ("metric", query.metric), ("path", query.path)):
            if value is not None:
                problems.append((key, f"{key}: is not used by alertmanager; use matchers:"))
        return problems

    @staticmethod
    def quote(value: str, context: QuoteContext) -> str:
        """A check-supplied value in matchers (docs/probes.md#alertmanager)."""
        return quote_alertmanager(value, context)

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        params = [("active", "true"), ("silenced", "false"), ("inhibited", "false")]
        params += [("filter", matcher) for matcher in query.matchers]
        try:
            answer = await self.client.get_json(ALERTS_PATH, params=params)
        except ProbeFailure as failure:
            return failure_measurement(
                failure,
                ctx.now,
                source=self.type_name,
                credential=self._credential,
                detail=_error_detail(failure),
            )
        alerts = answer.json
        if not isinstance(alerts, list):
            return Measurement.error(
                "alertmanager: answer is not a list of alerts (is url an Alertmanager?)", ctx.now
            )
        firing = [alert for alert in alerts if _firing(alert)]
        names = sorted({_alert_name(alert) for alert in firing})
        shown = ", ".join(names[:_NAMES_SHOWN]) + (", ..." if len(names) > _NAMES_SHOWN else "")
        detail = f"{len(firing)} firing: {shown}" if firing else "no matching alert firing"
        return Measurement.ok(float(len(firing)), ctx.now, detail=detail)

    async def aclose(self) -> None:
        await self.client.aclose()


def _error_detail(failure: ProbeFailure) -> str:
    """Alertmanager explains a 400 in a bare JSON string, a 422 in ``message``."""
    body = failure.body
    if isinstance(body, str) and failure.http_status not in (None, 401, 403):
        return f"{failure.detail}: {body}"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return f"{failure.detail}: {body['message']}"
    return failure.detail
