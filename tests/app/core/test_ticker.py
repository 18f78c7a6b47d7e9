"""The drift-free ticker: ticks at anchor + k * interval, skipping the ones a slow sample missed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from app.core.clock import ManualClock
from app.core.ticker import Ticker
from tests.conftest import T0


async def test_ticks_fall_on_the_grid_and_a_slow_sample_skips_rather_than_bunches() -> None:
    clock = ManualClock(T0)
    ticker = Ticker(clock, anchor=T0, interval=timedelta(seconds=10))
    assert ticker.due == T0
    await clock.advance(1)  # a quick sample
    ticker.advance()
    assert ticker.due == T0 + timedelta(seconds=10)
    await clock.advance(34)  # a sample that overran three ticks
    ticker.advance()
    assert ticker.due == T0 + timedelta(seconds=40)


def test_the_same_tick_is_never_taken_twice_even_if_the_clock_stands_still() -> None:
    ticker = Ticker(ManualClock(T0), anchor=T0, interval=timedelta(seconds=5))
    ticker.advance()
    ticker.advance()
    assert ticker.tick == 2


async def test_sleep_until_due_wakes_at_the_limit_when_it_comes_first() -> None:
    clock = ManualClock(T0)
    ticker = Ticker(clock, anchor=T0 + timedelta(seconds=30), interval=timedelta(seconds=5))
    sleeper = asyncio.create_task(ticker.sleep_until_due(limit=T0 + timedelta(seconds=10)))
    await clock.advance(9)
    assert not sleeper.done()
    await clock.advance(1)
    assert sleeper.done()
