"""``json``: one number from any JSON API (``GET url``), at a dotted ``path``.

For adoption and business metrics (``data.registration_rate``, ``items.0.value``). The
value must be a number or a numeric string; booleans, null, objects and missing keys are
errors that name the path, never a silent 0.
"""

from __future__ import annotations

import math
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
from probes.http import lookup
from probes.quoting import quote_json

_PATH = r"^[^.\s]+(\.[^.\s]+)*$"


class JsonConfig(ProbeConfig):
    url: str = Field(pattern=HTTP_URL_PATTERN, description="the JSON document's URL")
    token_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN)
    headers: dict[str, str] = Field(default_factory=dict)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


class JsonProbe:
    type_name: ClassVar[str] = "json"
    config_model: ClassVar[type[ProbeConfig]] = JsonConfig

    def __init__(self, config: JsonConfig, *, name: str) -> None:
        self.config = config
        self.name = name
        self.client, self._credential = bearer_source(config)

    @staticmethod
    def check_query(query: ProbeQuery) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if not query.path:
            problems.append(("path", "a json criterion needs path: (e.g. data.registration_rate)"))
        elif "${" not in query.path and not re.match(_PATH, query.path):
            problems.append(("path", f"{query.path!r} is not a dotted path like items.0.value"))
        for key, value in (("query", query.query), ("metric", query.metric)):
            if value is not None:
                problems.append((key, f"{key}: is not used by json; use path:"))
        return problems

    @staticmethod
    def quote(value: str, context: QuoteContext) -> str:
        """A check-supplied value in a dotted path (docs/probes.md#json)."""
        return quote_json(value, context)

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        path = query.path or ""
        try:
            answer = await self.client.get_json(self.config.url)
        except ProbeFailure as failure:
            return failure_measurement(
                failure, ctx.now, source=self.type_name, credential=self._credential
            )
        try:
            found = lookup(answer.json, path)
        except KeyError as missing:
            return Measurement.error(f"json: {missing.args[0]}", ctx.now)
        if isinstance(found, bool) or not isinstance(found, int | float | str):
            return Measurement.error(f"json: {path} is {_kind(found)}, not a number", ctx.now)
        try:
            value = float(found)
        except ValueError:
            return Measurement.error(f"json: {path} is {_kind(found)}, not a number", ctx.now)
        if not math.isfinite(value):
            return Measurement.error(f"json: {path} is {found!r}, not a finite number", ctx.now)
        return Measurement.ok(value, ctx.now, detail=f"{path} = {found!r}")

    async def aclose(self) -> None:
        await self.client.aclose()
