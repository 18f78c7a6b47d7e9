"""Collecting the problems of a gate definition: each located, with a hint.

``Problems`` gathers every problem of one definition and places it at its line and column;
``add_validation_errors`` turns a pydantic ``ValidationError`` into such problems, with the
hint for the field; ``did_you_mean`` suggests the closest known word.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from gates.errors import GateProblem, Loc
from gates.yaml_source import Document, Mark

_CONDITION_HINT = "write it in quotes, e.g. go: '> 99.9%', or a list of them to AND"
_DURATION_HINT = "a duration is a number with a unit: 500ms, 30s, 5m, 1h30m"
NAME_HINT = "use lowercase letters, digits and '-', starting with a letter or digit"
_FIELD_HINTS = {
    "go": _CONDITION_HINT,
    "rollback": _CONDITION_HINT,
    "interval": "the time between samples, at least 1s: e.g. 30s, 5m",
    "initial_delay": _DURATION_HINT,
    "timeout": _DURATION_HINT,
    "window": _DURATION_HINT,
    "steady_for": "the number of consecutive all-pass samples needed for go, 1 or more",
    "rollback_after": "the number of consecutive breaches needed for rollback, 1 or more",
    "no_data": "one of inconclusive, pass, fail",
    "name": NAME_HINT,
    "id": NAME_HINT,
}


class Problems:
    """Every problem of one definition, located through its document once composed."""

    def __init__(self, file: str, document: Document | None = None) -> None:
        self.file = file
        self.document = document
        self.items: list[GateProblem] = []

    def add(
        self, location: Loc, message: str, hint: str | None = None, *, at_key: bool = False
    ) -> None:
        mark = self._mark(location, at_key=at_key)
        line, col = mark if mark is not None else (None, None)
        self.items.append(GateProblem(self.file, line, col, location, message, hint))

    def at(self, mark: Mark | None, location: Loc, message: str, hint: str | None = None) -> None:
        line, col = mark if mark is not None else (None, None)
        self.items.append(GateProblem(self.file, line, col, location, message, hint))

    def _mark(self, location: Loc, *, at_key: bool) -> Mark | None:
        if self.document is None:
            return None
        if at_key and location in self.document.keys:
            return self.document.keys[location]
        # A missing key has no position of its own: point at the mapping that lacks it.
        for end in range(len(location), -1, -1):
            mark = self.document.values.get(location[:end])
            if mark is not None:
                return mark
        return None

    def sorted(self) -> list[GateProblem]:
        return sorted(self.items, key=lambda p: (p.line or 0, p.col or 0))


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word``, if any is close enough to be a likely typo."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def _pydantic_message(error: Mapping[str, Any]) -> str:
    if error["type"] == "missing":
        return f"{error['loc'][-1]} is required"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def add_validation_errors(
    invalid: ValidationError,
    location: Loc,
    problems: Problems,
    *,
    skip: Callable[[Loc], bool] = lambda _: False,
    hints: Mapping[str, str] = _FIELD_HINTS,
) -> None:
    """Add each error of ``invalid`` (found at ``location``) with the hint for its field.

    Unknown keys are left out: the loader reports them itself, with a better hint.
    """
    for error in invalid.errors():
        if error["type"] == "extra_forbidden":
            continue  # reported by the loader's key check, with a hint
        inner = tuple(part for part in error["loc"] if isinstance(part, int | str))
        if skip(inner):
            continue
        field_name = next((p for p in reversed(inner) if isinstance(p, str)), "")
        problems.add((*location, *inner), _pydantic_message(error), hints.get(field_name))
