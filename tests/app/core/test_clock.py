from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from app.core.clock import ManualClock, SystemClock
from tests.app.fakes import T0


async def test_sleepers_wake_in_deadline_order_at_their_deadline() -> None:
    clock = ManualClock(T0)
    woke: list[tuple[str, datetime]] = []

    async def sleeper(label: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((label, clock.now()))

    tasks = [
        asyncio.create_task(sleeper("late", 30)),
        asyncio.create_task(sleeper("early", 10)),
        asyncio.create_task(sleeper("middle", 20)),
    ]
    await clock.settle()
    assert clock.sleepers == 3

    await clock.advance(15)
    assert woke == [("early", T0 + timedelta(seconds=10))]
    assert clock.now() == T0 + timedelta(seconds=15)

    await clock.advance(100)
    assert woke[1:] == [
        ("middle", T0 + timedelta(seconds=20)),
        ("late", T0 + timedelta(seconds=30)),
    ]
    assert clock.now() == T0 + timedelta(seconds=115)
    await asyncio.gather(*tasks)


async def test_a_sleeper_that_sleeps_again_is_woken_within_the_same_advance() -> None:
    clock = ManualClock(T0)
    ticks: list[datetime] = []

    async def ticker() -> None:
        for _ in range(3):
            await clock.sleep(10)
            ticks.append(clock.now())

    task = asyncio.create_task(ticker())
    await clock.settle()
    await clock.advance(35)
    assert ticks == [T0 + timedelta(seconds=s) for s in (10, 20, 30)]
    await task


async def test_nothing_wakes_before_its_deadline() -> None:
    clock = ManualClock(T0)
    task = asyncio.create_task(clock.sleep(10))
    await clock.settle()
    await clock.advance(9.999)
    assert not task.done()
    await clock.advance(0.001)
    assert task.done()


async def test_a_cancelled_sleeper_does_not_break_advance() -> None:
    clock = ManualClock(T0)
    task = asyncio.create_task(clock.sleep(5))
    await clock.settle()
    task.cancel()
    await clock.advance(10)
    assert task.cancelled()
    assert clock.sleepers == 0


async def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="backwards"):
        await ManualClock(T0).advance(-1)


async def test_system_clock_is_aware_utc_and_sleeps() -> None:
    clock = SystemClock()
    before = clock.now()
    assert before.tzinfo is UTC
    await clock.sleep(0.01)
    assert clock.now() > before
