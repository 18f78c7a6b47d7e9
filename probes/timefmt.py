"""Time as text: instants as RFC 3339 in UTC with a ``Z``, lengths as gate files write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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


def format_duration(value: timedelta) -> str:
    """``40s``, ``4m30s``, ``2h``, ``500ms``: a length of time as gate files write it."""
    seconds = value.total_seconds()
    if 0 < seconds < 1:
        return f"{round(seconds * 1000)}ms"
    parts = []
    remaining = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
