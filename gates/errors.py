"""Errors about gate definitions, each problem located in its file."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from probes.errors import GonogoError

Loc = tuple[str | int, ...]


def loc(*parts: str | int) -> Loc:
    """A location inside a gate definition, e.g. ``loc("criteria", 1, "go")``."""
    return tuple(parts)


def format_loc(location: Loc) -> str:
    """``("criteria", 1, "go")`` → ``criteria[1].go`` (indices count from 0)."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass(frozen=True, slots=True)
class GateProblem:
    """One thing wrong with a gate definition, with where it is and how to fix it.

    Prints like a compiler diagnostic:
    ``portal.yaml:12:9: criteria[1].go: bad condition '>> 5': expected ... (hint: ...)``.
    ``line`` and ``col`` count from 1; they are ``None`` when the problem has no single
    place in the text (an empty file, a file that cannot be read).
    """

    file: str
    line: int | None
    col: int | None
    loc: Loc
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        place = self.file
        if self.line is not None:
            place += f":{self.line}"
            if self.col is not None:
                place += f":{self.col}"
        parts = [place] if place else []
        if self.loc:
            parts.append(format_loc(self.loc))
        text = ": ".join([*parts, self.message])
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def as_dict(self) -> dict[str, Any]:
        """The ``errors[]`` item of a problem+json body (``loc``, ``msg``) plus position."""
        return {
            "loc": list(self.loc),
            "msg": self.message if not self.hint else f"{self.message} (hint: {self.hint})",
            "line": self.line,
            "col": self.col,
        }


def _as_problem(item: GateProblem | str) -> GateProblem:
    if isinstance(item, GateProblem):
        return item
    return GateProblem(file="", line=None, col=None, loc=(), message=item)


def count_of(count: int, noun: str) -> str:
    """``1 problem``, ``2 problems``: for messages people read."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


class GateFileError(GonogoError):
    """A gate definition (file or API body) is invalid; ``problems`` lists every problem."""

    def __init__(self, problems: Iterable[GateProblem | str]) -> None:
        self.problems: tuple[GateProblem, ...] = tuple(_as_problem(p) for p in problems)
        listed = "\n".join(str(p) for p in self.problems)
        super().__init__(
            f"invalid gate definition ({count_of(len(self.problems), 'problem')}):\n{listed}"
        )

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [p.as_dict() for p in self.problems]
