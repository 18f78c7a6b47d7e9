"""The gate model: what a gate file (or ``PUT /gates/{name}`` body) may say.

Defaults live here and nowhere else.
"""

from __future__ import annotations

import enum
import math
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializeAsAny,
    field_validator,
    model_validator,
)

from gates.conditions import (
    MAX_DURATION,
    Condition,
    ConditionError,
    format_duration,
    parse_duration,
)
from gates.errors import Loc
from probes.base import ProbeConfig, ProbeQuery, Reduce

# A gate's, criterion's or sign-off's name; the string for pydantic, compiled for callers.
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
GATE_NAME = re.compile(NAME_PATTERN)

DEFAULT_INTERVAL = timedelta(seconds=30)
MIN_INTERVAL = timedelta(seconds=1)
DEFAULT_STEADY_FOR = 3
DEFAULT_ROLLBACK_AFTER = 2
DEFAULT_TIMEOUT = timedelta(minutes=30)
# Samples of history a gate keeps in memory (continuous decision, and a check's).
HISTORY_CAP = 2000


def _to_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        if value > MAX_DURATION:
            raise ValueError(f"longer than the maximum of {format_duration(MAX_DURATION)}")
        return value
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError("a duration is like '30s', '5m', '1h30m' or '500ms'")


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    PlainSerializer(format_duration, return_type=str),
]


def _to_conditions(value: Any) -> tuple[Condition, ...]:
    if isinstance(value, Condition):
        return (value,)
    items = [value] if isinstance(value, str | int | float) else value
    if not isinstance(items, list | tuple) or not items:
        raise ValueError("a condition is a string like '> 99.9%' or a list of them")
    parsed = []
    for item in items:
        if isinstance(item, Condition):
            parsed.append(item)
            continue
        if not isinstance(item, str):
            raise ValueError(f"bad condition {item!r}: write it as a quoted string like '< 1%'")
        try:
            parsed.append(Condition.parse(item))
        except ConditionError as error:
            raise ValueError(str(error)) from None
    return tuple(parsed)


def _conditions_text(value: tuple[Condition, ...]) -> str | list[str]:
    texts = [c.text for c in value]
    return texts[0] if len(texts) == 1 else texts


Conditions = Annotated[
    tuple[Condition, ...],
    BeforeValidator(_to_conditions),
    PlainSerializer(_conditions_text),
]


def _no_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not the boolean {str(value).lower()}")
    return value


# Counts are whole numbers as written: no boolean (true is not 1), no "3", no 3.0.
Count = Annotated[int, BeforeValidator(_no_boolean), Field(strict=True)]
# A finite number as written (an int or a float, never a boolean, NaN or infinity).
FiniteNumber = Annotated[float, BeforeValidator(_no_boolean), Field(allow_inf_nan=False)]


class NoDataPolicy(enum.StrEnum):
    INCONCLUSIVE = "inconclusive"
    PASS = "pass"
    FAIL = "fail"


class MinVolume(BaseModel):
    """Traffic needed before a value counts; below it the criterion is inconclusive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: str | None = Field(
        default=None, description="query for the volume; unset = the probe's own volume"
    )
    at_least: FiniteNumber = Field(ge=0)


class Baseline(BaseModel):
    """The criterion's query run a second time in the same sample, with these placeholder
    values in place of the check's: the current version beside the canary. A value may
    use placeholders itself (``version: "${baseline}"``, which a check supplies)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vars: dict[str, str] = Field(min_length=1)


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    probe: str
    go: Conditions
    rollback: Conditions | None = None
    rollback_after: Count | None = Field(default=None, ge=1, le=1000)
    no_data: NoDataPolicy = NoDataPolicy.INCONCLUSIVE
    min_volume: MinVolume | None = None
    description: str = ""
    baseline: Baseline | None = None
    # Judged, shown, stored and exported like any criterion, but never changes the decision.
    dry_run: bool = Field(default=False, strict=True)
    # Probe-specific keys (see the probe types in README); each type checks its own.
    query: str | None = None
    metric: str | None = None
    window: Duration | None = None
    matchers: list[str] = Field(default_factory=list)
    params: dict[str, str] = Field(default_factory=dict)
    path: str | None = None
    field: str | None = None
    reduce: Reduce | None = None

    def probe_query(self) -> ProbeQuery:
        """The probe-specific part, placeholders not yet filled."""
        return ProbeQuery(
            query=self.query,
            metric=self.metric,
            window=self.window,
            matchers=tuple(self.matchers),
            params=dict(self.params),
            path=self.path,
            field=self.field,
            reduce=self.reduce,
        )


class Signoff(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    # Who may record it: POST /checks/{id}/signoffs needs at least approver (docs/decisions.md).
    role: Literal["approver", "admin"] = "approver"


class Notify(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://")
    format: Literal["json", "slack"] = "json"
    secret_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class Gate(BaseModel):
    """One gate. ``probes`` holds each probe type's own validated config model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    interval: Duration = DEFAULT_INTERVAL
    initial_delay: Duration = timedelta(0)
    steady_for: Count = Field(default=DEFAULT_STEADY_FOR, ge=1, le=1000)
    rollback_after: Count = Field(default=DEFAULT_ROLLBACK_AFTER, ge=1, le=1000)
    timeout: Duration = DEFAULT_TIMEOUT
    vars: dict[str, str] = Field(default_factory=dict)
    probes: dict[str, SerializeAsAny[ProbeConfig]] = Field(default_factory=dict)
    criteria: list[Criterion] = Field(min_length=1)
    signoffs: list[Signoff] = Field(default_factory=list)
    notify: list[Notify] = Field(default_factory=list)

    @field_validator("interval")
    @classmethod
    def _interval_floor(cls, value: timedelta) -> timedelta:
        if value < MIN_INTERVAL:
            raise ValueError(f"interval must be at least 1s, got {format_duration(value)}")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("timeout must be longer than 0s")
        return value

    @field_validator("vars", mode="before")
    @classmethod
    def _vars_as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (str(v).lower() if isinstance(v, bool) else str(v))
                if isinstance(v, str | int | float)
                else v
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _references(self) -> Gate:
        seen: set[str] = set()
        for criterion in self.criteria:
            if criterion.name in seen:
                raise ValueError(f"two criteria are named {criterion.name!r}; names must be unique")
            seen.add(criterion.name)
            if criterion.probe not in self.probes:
                known = ", ".join(sorted(self.probes)) or "none defined"
                raise ValueError(
                    f"criterion {criterion.name!r} uses probe {criterion.probe!r},"
                    f" which is not defined under probes: ({known})"
                )
        ids = [s.id for s in self.signoffs]
        if len(ids) != len(set(ids)):
            raise ValueError("sign-off ids must be unique")
        return self

    def rollback_after_for(self, criterion: Criterion) -> int:
        return criterion.rollback_after or self.rollback_after

    def placeholder_defaults(self) -> dict[str, str]:
        return dict(self.vars)


def history_window(gate: Gate, criterion: Criterion) -> timedelta | None:
    """The criterion's ``window`` when gonogo aggregates it from its own samples (the http
    probe's ``availability``), else ``None``: a window the source computes itself (PromQL
    ``[5m]``, Datadog, Sentry) needs no history and no coverage."""
    config = gate.probes.get(criterion.probe)
    if criterion.window is None or config is None:
        return None
    return criterion.window if criterion.metric in config.history_metrics else None


def window_samples(window: timedelta, interval: timedelta) -> int:
    """Samples that span ``window`` at ``interval``: every tick in it, plus the current one."""
    return math.ceil(window / interval) + 1


def history_needed(gate: Gate) -> int:
    """Samples a gate's decision can look back on (docs/decisions.md, "Window coverage").

    ``steady_for``; twice the longest ``rollback_after``, so that a breach run with as many
    inconclusive samples as breaches between its ends is seen whole; and every criterion
    ``window`` at the gate's ``interval`` (any probe may read its history over its window).
    """
    needed = max(gate.steady_for, *(2 * gate.rollback_after_for(c) for c in gate.criteria))
    for criterion in gate.criteria:
        if criterion.window is not None:
            needed = max(needed, window_samples(criterion.window, gate.interval))
    return needed


def history_size(gate: Gate) -> int:
    """Samples actually kept: ``history_needed``, at most ``HISTORY_CAP``. A window that
    gonogo aggregates itself never needs more (``history_problems`` refuses it at load)."""
    return min(history_needed(gate), HISTORY_CAP)


def history_problems(gate: Gate) -> list[tuple[Loc, str, str]]:
    """(location, message, hint) for each aggregated window longer than the history kept.

    Such a window could never be covered, so it is refused when the gate is loaded rather
    than judged on a shortened history or left inconclusive forever.
    """
    longest = gate.interval * (HISTORY_CAP - 1)
    problems: list[tuple[Loc, str, str]] = []
    for index, criterion in enumerate(gate.criteria):
        window = history_window(gate, criterion)
        if window is None or window_samples(window, gate.interval) <= HISTORY_CAP:
            continue
        problems.append(
            (
                ("criteria", index, "window"),
                f"window {format_duration(window)} at interval {format_duration(gate.interval)}"
                f" needs {window_samples(window, gate.interval)} samples of history;"
                f" gonogo keeps at most {HISTORY_CAP}",
                f"use a window of at most {format_duration(longest)}, or a longer interval",
            )
        )
    return problems
