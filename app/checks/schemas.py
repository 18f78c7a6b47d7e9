"""Request bodies of the checks API, validated at the edge."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from gates.conditions import ConditionError, format_duration, parse_duration
from gates.placeholders import check_value_problem, reserved_name_problem

MAX_CHECK_TIMEOUT = timedelta(hours=24)
MAX_IDEMPOTENCY_KEY = 255


def _check_value(value: str) -> str:
    problem = check_value_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _var_name(name: str) -> str:
    problem = reserved_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


# What a check may supply: it fills placeholders, so the gate language's rule applies
# (docs/decisions.md, "Placeholders and quoting").
CheckValue = Annotated[str, AfterValidator(_check_value)]
VarName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"),
    AfterValidator(_var_name),
]


class CheckRequest(BaseModel):
    """``POST /gates/{gate}/checks``."""

    model_config = ConfigDict(extra="forbid")

    version: CheckValue = Field(description="the release being judged; fills ${version}")
    environment: CheckValue | None = None
    stage: CheckValue | None = None
    vars: dict[VarName, CheckValue] = Field(
        default_factory=dict,
        description="values for placeholders the gate uses; names like ${name}, values as version",
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="kept with the check")
    timeout: str | float | None = Field(
        default=None, description="overrides the gate's timeout: '10m', or seconds"
    )

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str | float | None) -> str | float | None:
        if value is None:
            return None
        try:
            span = parse_duration(value)
        except ConditionError as error:
            raise ValueError(str(error)) from None
        except OverflowError:
            raise ValueError(f"at most {format_duration(MAX_CHECK_TIMEOUT)}") from None
        if not timedelta(0) < span <= MAX_CHECK_TIMEOUT:
            raise ValueError(
                f"must be longer than 0s and at most {format_duration(MAX_CHECK_TIMEOUT)}"
            )
        return value

    def timeout_span(self) -> timedelta | None:
        return None if self.timeout is None else parse_duration(self.timeout)

    def fingerprint(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class SignoffRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signoff: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class ManualDecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["go", "no_go", "rollback"]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None
