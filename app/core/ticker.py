"""The drift-free ticker both sampling loops run on.

Ticks fall at ``anchor + k * interval``. A sample that overruns skips the ticks it missed
instead of bunching them, and no tick is ever taken twice. Sleeping goes through the
``Clock``, so tests drive the ticker by hand.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from app.core.clock import Clock


class Ticker:
    def __init__(self, clock: Clock, *, anchor: datetime, interval: timedelta) -> None:
        self._clock = clock
        self.anchor = anchor
        self.interval = interval
        self.tick = 0

    @property
    def due(self) -> datetime:
        """When the current tick falls."""
        return self.anchor + self.tick * self.interval

    async def sleep_until_due(self, *, limit: datetime | None = None) -> None:
        """Sleep until the current tick (or ``limit``, if that comes first)."""
        until = self.due if limit is None else min(self.due, limit)
        while (remaining := (until - self._clock.now()).total_seconds()) > 0:
            await self._clock.sleep(remaining)

    def advance(self) -> None:
        """Move to the first tick after now, and never to the same tick twice."""
        elapsed = (self._clock.now() - self.anchor) // self.interval + 1
        self.tick = max(self.tick + 1, elapsed)
