"""Words for what a source answered, used in the reasons people read."""

from __future__ import annotations

from typing import Any

MESSAGE_CHARS = 200


def is_number(value: Any) -> bool:
    """A JSON number (``true`` and ``false`` are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def kind_of(value: Any) -> str:
    """``null``, ``an object``, ``a list``, ``a string``, ``a boolean`` or ``a number``."""
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


def shorten(text: str, limit: int = MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
