"""Request bodies of the checks API, validated at the edge."""

from __future__ import annotations

import hashlib
import json
import math
import re
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

MAX_METADATA_DEPTH = 8
MAX_METADATA_BYTES = 16 * 1024

# Control characters (tab, newline and carriage return aside) and lone surrogates: no
# pipeline means them, PostgreSQL refuses NUL, and a surrogate cannot be stored as UTF-8.
_UNWANTED_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_UNWANTED_IN_KEYS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def refuse_unwanted_chars(text: str, *, key: bool = False) -> str:
    """``text`` unchanged; raises ``ValueError`` on a control character or a surrogate."""
    found = (_UNWANTED_IN_KEYS if key else _UNWANTED_CHARS).search(text)
    if found is not None:
        raise ValueError(
            f"contains U+{ord(found.group()):04X} (a control character or a lone surrogate) at"
            f" position {found.start()}; send plain text"
        )
    return text


# Last, after any StringConstraints on the same field, so those still apply.
NoControlChars = AfterValidator(refuse_unwanted_chars)


def _check_metadata_value(value: Any, path: str, depth: int) -> None:
    """``depth``: the number of mappings and lists ``value`` is inside, itself included."""
    if isinstance(value, dict | list) and depth > MAX_METADATA_DEPTH:
        raise ValueError(f"nested deeper than {MAX_METADATA_DEPTH} levels (at {path})")
    if isinstance(value, dict):
        for key, item in value.items():
            try:
                refuse_unwanted_chars(key, key=True)
            except ValueError as bad:
                raise ValueError(f"key at {path}: {bad}") from None
            _check_metadata_value(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_metadata_value(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, str):
        try:
            refuse_unwanted_chars(value)
        except ValueError as bad:
            raise ValueError(f"{path}: {bad}") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: numbers must be finite (not NaN or Infinity)")


def bounded_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` as given, if it is small, shallow and plain enough to store and show
    back: at most ``MAX_METADATA_DEPTH`` levels and ``MAX_METADATA_BYTES`` as JSON."""
    _check_metadata_value(value, "metadata", 1)
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"{size} bytes as JSON; at most {MAX_METADATA_BYTES}")
    return value


Text255 = Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True)]


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
    metadata: Annotated[dict[str, Any], AfterValidator(bounded_metadata)] = Field(
        default_factory=dict,
        description=(
            f"kept with the check; at most {MAX_METADATA_DEPTH} levels deep and"
            f" {MAX_METADATA_BYTES} bytes as JSON, no control characters"
        ),
    )
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

    @field_validator("version", "environment", "stage")
    @classmethod
    def _plain_text(cls, value: str | None) -> str | None:
        return None if value is None else refuse_unwanted_chars(value)

    @field_validator("vars")
    @classmethod
    def _plain_vars(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            refuse_unwanted_chars(key, key=True)
            refuse_unwanted_chars(item)
        return value

    def timeout_span(self) -> timedelta | None:
        return None if self.timeout is None else parse_duration(self.timeout)

    def fingerprint(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class SignoffRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signoff: Annotated[str, StringConstraints(min_length=1, max_length=63), NoControlChars]
    comment: Annotated[str, StringConstraints(max_length=2000), NoControlChars] | None = None


class ManualDecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["go", "no_go", "rollback"]
    reason: Annotated[
        str,
        StringConstraints(min_length=1, max_length=2000, strip_whitespace=True),
        NoControlChars,
    ]


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(max_length=2000), NoControlChars] | None = None
