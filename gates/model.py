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
    placeholder_names,
)
from gates.errors import Loc
from gates.units import Unit, implied_unit
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
    if isinstance(items, list | tuple) and not items:
        return ()  # the stored form of a compare: or slo: criterion, which has no go:
    if not isinstance(items, list | tuple):
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


def _to_fraction(value: Any) -> Any:
    """``98%`` as 0.98; a plain number as it is written."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number or a percentage, not the boolean {str(value).lower()}")
    if isinstance(value, str):
        text = value.strip()
        number = text.removesuffix("%").strip()
        try:
            parsed = float(number)
        except ValueError:
            raise ValueError(f"{value!r} is not a number or a percentage like '98%'") from None
        return parsed / 100 if text.endswith("%") else parsed
    return value


def _fraction_text(value: float) -> str:
    return f"{value * 100:g}%"


# A fraction written as a number (0.98) or a percentage ("98%").
Fraction = Annotated[
    float,
    BeforeValidator(_to_fraction),
    Field(allow_inf_nan=False),
    PlainSerializer(_fraction_text, return_type=str),
]

# Fewest points each side of a comparison needs before it is judged (docs/decisions.md).
MIN_COMPARISON_POINTS = 10
# Most points one side of a comparison may ask for (window / step), so a sample's cost
# stays bounded; Prometheus refuses more than 11,000 per series.
MAX_COMPARISON_POINTS = 10_000
DEFAULT_COMPARE_CONFIDENCE = 0.98
DEFAULT_COMPARE_STEP = timedelta(seconds=30)


class Compare(BaseModel):
    """``compare:``: the canary's series against the baseline's over ``window``
    (docs/decisions.md, "Statistical comparison")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    test: Literal["mann_whitney"] = "mann_whitney"
    window: Duration
    step: Duration = DEFAULT_COMPARE_STEP
    confidence: Fraction = DEFAULT_COMPARE_CONFIDENCE
    effect: Fraction
    rollback_effect: Fraction | None = None
    direction: Literal["increase", "decrease", "either"] = "increase"

    @field_validator("confidence")
    @classmethod
    def _confidence_range(cls, value: float) -> float:
        if not 0.5 <= value < 1:
            raise ValueError(f"confidence is at least 50% and below 100%, got {value * 100:g}%")
        return value

    @field_validator("effect", "rollback_effect")
    @classmethod
    def _effect_positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("an effect is a relative shift larger than 0%, e.g. '10%'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Compare:
        if self.step <= timedelta(0):
            raise ValueError("step must be longer than 0s")
        if self.window <= self.step:
            raise ValueError("window must be longer than step")
        points = math.floor(self.window / self.step) + 1
        if points < MIN_COMPARISON_POINTS:
            raise ValueError(
                f"window {format_duration(self.window)} at step {format_duration(self.step)}"
                f" gives {points} points a side; a comparison needs at least"
                f" {MIN_COMPARISON_POINTS}: use a longer window or a shorter step"
            )
        if points > MAX_COMPARISON_POINTS:
            raise ValueError(
                f"window {format_duration(self.window)} at step {format_duration(self.step)}"
                f" asks for {points} points a side; at most {MAX_COMPARISON_POINTS}"
            )
        if self.rollback_effect is not None and self.rollback_effect < self.effect:
            raise ValueError("rollback_effect must be at least effect")
        return self


class BurnWindow(BaseModel):
    """One multi-window pair: it fires when the burn rate over both windows exceeds
    ``burn_rate``; then it means ``then``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    long: Duration
    short: Duration
    burn_rate: FiniteNumber = Field(gt=0)
    then: Literal["rollback", "no_go"]

    @model_validator(mode="after")
    def _short_within_long(self) -> BurnWindow:
        if self.short <= timedelta(0):
            raise ValueError("short must be longer than 0s")
        if self.short >= self.long:
            raise ValueError(
                f"short ({format_duration(self.short)}) must be shorter than long"
                f" ({format_duration(self.long)}); the workbook's short window is 1/12 of it"
            )
        return self


# The SRE workbook's pairs for paging (docs/decisions.md, "SLO burn rate").
DEFAULT_BURN_WINDOWS = (
    BurnWindow(
        long=timedelta(hours=1), short=timedelta(minutes=5), burn_rate=14.4, then="rollback"
    ),
    BurnWindow(long=timedelta(hours=6), short=timedelta(minutes=30), burn_rate=6, then="no_go"),
)


class ErrorBudget(BaseModel):
    """``no_go`` while less than ``at_least`` of the error budget over ``period`` is left."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    period: Duration = timedelta(days=30)
    at_least: Fraction

    @field_validator("at_least")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError(
                f"at_least is a share of the budget from 0% to below 100%, got {value:.6g}"
            )
        return value


class Slo(BaseModel):
    """``slo:``: error-budget burn rate over several window pairs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: Fraction
    errors: str
    total: str
    windows: list[BurnWindow] = Field(default_factory=lambda: list(DEFAULT_BURN_WINDOWS))
    budget: ErrorBudget | None = None

    @field_validator("objective")
    @classmethod
    def _objective_range(cls, value: float) -> float:
        if value >= 1:
            raise ValueError(
                f"objective must be below 100%, got {value * 100:g}%"
                " (a 100% objective leaves no error budget to burn)"
            )
        if value <= 0:
            raise ValueError(f"objective must be above 0%, got {value * 100:g}%")
        return value

    @field_validator("windows")
    @classmethod
    def _some_windows(cls, value: list[BurnWindow]) -> list[BurnWindow]:
        if not value:
            raise ValueError("windows needs at least one pair; leave it out for the defaults")
        return value

    @field_validator("errors", "total")
    @classmethod
    def _uses_window(cls, value: str) -> str:
        if "window" not in placeholder_names(value):
            raise ValueError(
                "the query must use ${window}, which gonogo fills with each window in turn"
                " (e.g. rate(http_requests_total[${window}]))"
            )
        return value


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    probe: str
    # Empty only for a criterion judged by compare: or slo:, which leave it out.
    go: Conditions
    rollback: Conditions | None = None
    rollback_after: Count | None = Field(default=None, ge=1, le=1000)
    no_data: NoDataPolicy = NoDataPolicy.INCONCLUSIVE
    min_volume: MinVolume | None = None
    description: str = ""
    baseline: Baseline | None = None
    # How values are shown (docs/decisions.md, "Units shown"); implied by the conditions if unset.
    unit: Unit | None = None
    # Judged, shown, stored and exported like any criterion, but never changes the decision.
    dry_run: bool = Field(default=False, strict=True)
    compare: Compare | None = None
    slo: Slo | None = None
    # Probe-specific keys (see the probe types in README); each type checks its own.
    query: str | None = None
    metric: str | None = None
    window: Duration | None = None
    matchers: list[str] = Field(default_factory=list)
    params: dict[str, str] = Field(default_factory=dict)
    path: str | None = None
    field: str | None = None
    reduce: Reduce | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_go_for_judgements(cls, data: Any) -> Any:
        if isinstance(data, dict) and "go" not in data and (data.get("compare") or data.get("slo")):
            return {**data, "go": ()}
        return data

    @model_validator(mode="after")
    def _judged_one_way(self) -> Criterion:
        judgement = "compare" if self.compare is not None else "slo" if self.slo else None
        if self.compare is not None and self.slo is not None:
            raise ValueError("a criterion has compare: or slo:, not both")
        if judgement is None:
            if not self.go:
                raise ValueError("go: is empty; a criterion needs a condition (e.g. go: '< 1%')")
            return self
        if self.go or self.rollback:
            raise ValueError(
                f"go: and rollback: are not used with {judgement}:; its own keys say when it"
                " fails and when it rolls back"
            )
        if self.compare is not None and self.baseline is None:
            raise ValueError(
                "compare: needs baseline: {vars: {...}}, the values the baseline's series"
                " is read with"
            )
        if self.min_volume is not None:
            raise ValueError(f"min_volume: is not used with {judgement}:")
        if self.slo is not None and self.query is not None:
            raise ValueError("query: is not used with slo:; its errors: and total: are the queries")
        return self

    def value_unit(self) -> Unit | None:
        """The unit this criterion's values are shown in: ``unit:``, else the one its
        absolute conditions imply, else ``None`` (plain numbers)."""
        return implied_unit((*self.go, *(self.rollback or ())), self.unit)

    def can_roll_back(self) -> bool:
        """Whether a breach of this criterion counts toward rollback: it has ``rollback:``
        conditions, a ``compare.rollback_effect``, or an ``slo:`` pair that rolls back."""
        if self.compare is not None:
            return self.compare.rollback_effect is not None
        if self.slo is not None:
            return any(pair.then == "rollback" for pair in self.slo.windows)
        return bool(self.rollback)

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
