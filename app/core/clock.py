"""Time as a dependency: the service reads the clock and sleeps only through a ``Clock``.

``SystemClock`` is the real one. ``ManualClock`` lets tests move time by hand: sleepers
wake in order of their deadline, and nothing really sleeps.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when a test calls ``advance``.

    ``advance`` wakes every sleeper whose deadline falls in the advanced span, earliest
    first (ties in the order they went to sleep), setting ``now`` to each deadline before
    waking it and letting the woken tasks run until they block again. Tasks that are ready
    when ``advance`` is called run first, so a task created just before goes to sleep
    relative to the old ``now``.
    """

    def __init__(self, start: datetime | None = None, *, settle_turns: int = 50) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._settle_turns = settle_turns

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deadline = self._now + timedelta(seconds=seconds)
        heapq.heappush(self._sleepers, (deadline, next(self._order), waiter))
        await waiter

    @property
    def sleepers(self) -> int:
        """How many tasks are asleep on this clock right now."""
        return sum(1 for _, _, waiter in self._sleepers if not waiter.done())

    async def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go backwards")
        target = self._now + timedelta(seconds=seconds)
        await self.settle()  # tasks started just before go to sleep first
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, waiter = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not waiter.done():  # a cancelled sleeper has nothing to wake
                waiter.set_result(None)
            await self.settle()
        self._now = target
        await self.settle()

    async def settle(self) -> None:
        """Give woken tasks loop turns to run until they block again (in-memory work only)."""
        for _ in range(self._settle_turns):
            await asyncio.sleep(0)


async def sleep_or_woken(clock: Clock, seconds: float, wake: asyncio.Event) -> None:
    """Sleep ``seconds`` on ``clock``, or less if ``wake`` is set meanwhile (a worker
    told there is work)."""
    woken = asyncio.ensure_future(wake.wait())
    sleep = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({woken, sleep}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (woken, sleep):
            waiter.cancel()
        await asyncio.gather(woken, sleep, return_exceptions=True)
