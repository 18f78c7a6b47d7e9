"""A third-party probe type: answers a fixed number from its config."""

from __future__ import annotations

from typing import ClassVar

from probes.base import Measurement, ProbeConfig, ProbeContext, ProbeQuery, QuoteContext


class ConstantConfig(ProbeConfig):
    value: float


class ConstantProbe:
    type_name: ClassVar[str] = "constant"
    config_model: ClassVar[type[ProbeConfig]] = ConstantConfig

    def __init__(self, config: ConstantConfig, *, name: str) -> None:
        self.config = config
        self.name = name

    @staticmethod
    def check_query(query: ProbeQuery) -> list[tuple[str, str]]:
        return []

    @staticmethod
    def quote(value: str, context: QuoteContext) -> str:
        # The query is never sent anywhere, so no value can change what is measured.
        return value

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        return Measurement.ok(self.config.value, ctx.now, detail="constant")

    async def aclose(self) -> None:
        return None
