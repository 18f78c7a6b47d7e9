"""Instants as text: RFC 3339 in UTC with a ``Z``, the one form gonogo writes everywhere."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def iso(moment: datetime) -> str: ...
@overload
def iso(moment: None) -> None: ...
def iso(moment: datetime | None) -> str | None:
    """``2026-11-24T10:00:00Z`` for an aware instant (shown in UTC); None stays None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
