"""Option values shared by several commands."""

from __future__ import annotations

import re
from collections.abc import Sequence

_VAR = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$", re.DOTALL)


class VarError(ValueError):
    """A ``--var`` that is not ``name=value`` with a placeholder name."""


def parse_vars(items: Sequence[str]) -> dict[str, str]:
    """``--var k=v`` options as a mapping; raises ``VarError`` naming a bad one."""
    values: dict[str, str] = {}
    for item in items:
        match = _VAR.match(item)
        if match is None:
            raise VarError(f"bad --var {item!r}: write it as name=value (name: letters, digits, _)")
        values[match["key"]] = match["value"]
    return values
