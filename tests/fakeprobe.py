"""An in-memory probe for tests, the way httpx ships ``MockTransport``.

``FakeProbe`` answers from a script: numbers, ``Measurement``s, ``None`` for "no data",
an exception to raise, or ``HANG`` to block until released (or cancelled). A test may
also set the next answer (``probe.answer = ...``) or hold every call with ``hang()``
until ``release()``. It records every query and context it was asked with, so tests can
check what the sampler sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from probes.base import Measurement, ProbeConfig, ProbeContext, ProbeQuery, QuoteContext


class _Hang:
    def __repr__(self) -> str:
        return "HANG"


HANG = _Hang()

Answer = float | Measurement | BaseException | _Hang | None
Script = Callable[[ProbeQuery, ProbeContext], Answer]


@dataclass(frozen=True)
class Call:
    query: ProbeQuery
    ctx: ProbeContext


class FakeProbe:
    """Scripted answers, in order; the last one repeats. A callable script decides per call."""

    type_name: ClassVar[str] = "fake"
    config_model: ClassVar[type[ProbeConfig]] = ProbeConfig

    def __init__(
        self,
        *answers: Answer,
        script: Script | None = None,
        timeout: float = 5.0,
        retries: int = 0,
        name: str = "fake",
    ) -> None:
        if not answers and script is None:
            answers = (1.0,)
        self.name = name
        self._answers: Sequence[Answer] = answers
        self._script = script
        self.config = ProbeConfig(type="fake", timeout=timeout, retries=retries)
        self.calls: list[Call] = []
        self.started = asyncio.Event()
        self.cancelled = 0
        self.closed = False
        self.in_flight = 0
        self._release = asyncio.Event()
        self._held = asyncio.Event()
        self._held.set()

    @property
    def answer(self) -> Answer:
        return self._answers[-1]

    @answer.setter
    def answer(self, value: Answer) -> None:
        """From now on, answer ``value`` to every call."""
        self._answers = (value,)
        self._script = None

    def hang(self) -> None:
        """Hold every call from now on until ``release()``."""
        self._held.clear()

    @staticmethod
    def check_query(query: ProbeQuery) -> list[tuple[str, str]]:
        return []

    def release(self) -> None:
        self._release.set()
        self._held.set()

    def _next(self, query: ProbeQuery, ctx: ProbeContext) -> Answer:
        if self._script is not None:
            return self._script(query, ctx)
        index = min(len(self.calls) - 1, len(self._answers) - 1)
        return self._answers[index]

    def quote(self, value: str, context: QuoteContext) -> str:
        """No query language: values are recorded as they are (quoting is tested with the
        real types, tests/probes/test_quoting*.py)."""
        return value

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        self.calls.append(Call(query, ctx))
        self.started.set()
        self.in_flight += 1
        try:
            await self._held.wait()
        finally:
            self.in_flight -= 1
        answer = self._next(query, ctx)
        if isinstance(answer, _Hang):
            try:
                await self._release.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            return Measurement.ok(1.0, ctx.now, detail="released")
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, Measurement):
            return answer
        if answer is None:
            return Measurement.no_data("empty result", ctx.now)
        return Measurement.ok(answer, ctx.now, detail="fake")

    async def aclose(self) -> None:
        self.closed = True
