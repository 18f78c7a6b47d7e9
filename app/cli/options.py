"""Option values shared by several commands."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Annotated

import typer

from gates.placeholders import check_value_problem, reserved_name_problem

_VAR = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$", re.DOTALL)


class VarError(ValueError):
    """A ``--var`` that is not ``name=value`` with a placeholder name and a value a check
    may supply (the same rule as the API's)."""


def parse_vars(items: Sequence[str]) -> dict[str, str]:
    """``--var k=v`` options as a mapping; raises ``VarError`` naming a bad one."""
    values: dict[str, str] = {}
    for item in items:
        match = _VAR.match(item)
        if match is None:
            raise VarError(f"bad --var {item!r}: write it as name=value (name: letters, digits, _)")
        key, value = match["key"], match["value"]
        problem = reserved_name_problem(key) or check_value_problem(value)
        if problem is not None:
            raise VarError(f"bad --var {key}: {problem}")
        values[key] = value
    return values


def check_vars_used(values: Mapping[str, str], used: Collection[str], *, gate: str) -> None:
    """A check sets only placeholders its gate uses; raises ``VarError`` naming another."""
    unknown = sorted(name for name in values if name not in used)
    if unknown:
        known = ", ".join(f"${{{n}}}" for n in sorted(used)) or "none"
        raise VarError(
            f"bad --var {unknown[0]}: ${{{unknown[0]}}} is not used by gate {gate!r}"
            f" (it uses: {known})"
        )


# -- options of the commands that talk to a server -----------------------------------------

ServerOption = Annotated[
    str,
    typer.Option(
        "--server",
        envvar="GONOGO_SERVER",
        show_envvar=True,
        show_default=False,
        help="gonogo base URL, e.g. http://127.0.0.1:8080",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="GONOGO_TOKEN",
        show_envvar=True,
        show_default=False,
        help="API token, sent as a bearer token and never printed (default: none)",
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help=(
            "print the server's JSON body on stdout and nothing else; progress goes to"
            " stderr (default: off: text)"
        ),
    ),
]
