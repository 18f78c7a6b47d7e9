"""Checks of ``${name}`` placeholders in a gate definition.

A criterion's query strings may use the placeholders every check fills
(``CHECK_PLACEHOLDERS``) and the keys of the gate's ``vars``; a probe's settings may use
none, since its connection is shared by every check of the gate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from gates.conditions import placeholder_names
from gates.errors import Loc
from gates.problems import Problems, did_you_mean

# Placeholders every check can fill; anything else must have a default under ``vars``.
CHECK_PLACEHOLDERS = ("version", "environment", "stage")

_BAD_PLACEHOLDER = re.compile(r"\$\{(?![A-Za-z_][A-Za-z0-9_]*\})[^}]*\}")


def _placeholder_strings(raw: Mapping[str, Any], at: Loc) -> list[tuple[Loc, str]]:
    strings: list[tuple[Loc, str]] = []
    for key in ("query", "metric", "path", "field"):
        if isinstance(raw.get(key), str):
            strings.append(((*at, key), raw[key]))
    matchers = raw.get("matchers")
    if isinstance(matchers, list):
        strings.extend(
            ((*at, "matchers", i), m) for i, m in enumerate(matchers) if isinstance(m, str)
        )
    params = raw.get("params")
    if isinstance(params, Mapping):
        strings.extend(((*at, "params", k), v) for k, v in params.items() if isinstance(v, str))
    min_volume = raw.get("min_volume")
    if isinstance(min_volume, Mapping) and isinstance(min_volume.get("query"), str):
        strings.append(((*at, "min_volume", "query"), min_volume["query"]))
    return strings


def check_placeholders(
    raw: Mapping[str, Any], at: Loc, declared: Sequence[str], problems: Problems
) -> None:
    """Malformed or unknown placeholders in the criterion ``raw`` (``declared``: vars keys)."""
    known = [*CHECK_PLACEHOLDERS, *declared]
    for location, text in _placeholder_strings(raw, at):
        for bad in _BAD_PLACEHOLDER.finditer(text):
            problems.add(
                location,
                f"malformed placeholder {bad.group(0)!r}",
                "a placeholder is ${name}: letters, digits and _, no spaces",
            )
        for name in sorted(placeholder_names(text) - set(known)):
            suggestion = did_you_mean(name, known)
            problems.add(
                location,
                f"placeholder ${{{name}}} is not version, environment, stage or a key of vars",
                f"did you mean ${{{suggestion}}}?"
                if suggestion
                else "declare it under vars: with a default (a check's vars still override it)",
            )


def check_no_probe_placeholders(raw: Any, at: Loc, problems: Problems) -> None:
    """A probe's connection is built once per gate and shared by every check, so its
    settings cannot follow a check's values: a ``${name}`` there would be sent as is."""
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            check_no_probe_placeholders(value, (*at, key), problems)
    elif isinstance(raw, list):
        for index, value in enumerate(raw):
            check_no_probe_placeholders(value, (*at, index), problems)
    elif isinstance(raw, str) and "${" in raw:
        problems.add(
            at,
            "placeholders are not filled in probe settings",
            "a probe's connection is shared by every check of the gate; put ${...} in the"
            " criterion's query, matchers, params or path instead",
        )
