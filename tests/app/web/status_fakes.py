"""In-memory stand-ins for the catalog, scheduler and check runner the status page reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from app.core import problems
from app.core.auth import TokenAuthenticator
from app.core.settings import load_settings
from app.gates.freshness import DecisionView, PublishedDecision
from app.integrations.flagger import router as integrations_router
from app.web.status_page import router
from gates.engine import CriterionOutcome, CriterionResult, Decision, Steady, Verdict
from gates.model import Gate
from gates.units import Unit, format_value
from probes.base import ProbeConfig

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
BOUND = timedelta(seconds=10)


def make_gate(name: str = "portal", description: str = "Patient portal blue-green switch") -> Gate:
    return Gate.model_validate(
        {
            "name": name,
            "description": description,
            "interval": "2s",
            "steady_for": 3,
            "probes": {"prom": ProbeConfig(type="prometheus")},
            "criteria": [
                {
                    "name": "availability",
                    "probe": "prom",
                    "query": "a",
                    "go": "> 99.9%",
                    "rollback": "< 95%",
                },
                {"name": "latency-p95", "probe": "prom", "query": "l", "go": "< 2s"},
            ],
        }
    )


def verdict(gate: str, decision: Decision, availability: float, *, passes: int = 3) -> Verdict:
    shown = format_value(availability, Unit.PERCENT)
    if availability < 0.95:
        outcome, reason = CriterionOutcome.BREACH, f"{shown} < 95 % (rollback: < 95%)"
    elif availability > 0.999:
        outcome, reason = CriterionOutcome.PASS, f"{shown} > 99.9 % (go: > 99.9%)"
    else:
        outcome, reason = CriterionOutcome.FAIL, f"{shown} <= 99.9 % (go: > 99.9%)"
    reasons = () if decision is Decision.GO else (f"availability: {reason}", f"steady {passes}/3")
    return Verdict(
        gate,
        decision,
        T0,
        reasons,
        Steady(passes, 3),
        (
            CriterionResult(
                "availability", outcome, reason, "prom", "> 99.9%", "< 95%", value=availability
            ),
            CriterionResult(
                "latency-p95",
                CriterionOutcome.PASS,
                "350 ms < 2 s (go: < 2s)",
                "prom",
                "< 2s",
                None,
                value=0.35,
            ),
        ),
    )


@dataclass
class FakeLoaded:
    gate: Gate
    source: str = "file"
    version: str = "abc123"

    @property
    def name(self) -> str:
        return self.gate.name


@dataclass
class FakeCatalog:
    gates: list[FakeLoaded]

    def all(self) -> list[FakeLoaded]:
        return sorted(self.gates, key=lambda g: g.name)

    def get(self, name: str) -> FakeLoaded | None:
        return next((g for g in self.gates if g.name == name), None)


@dataclass
class FakeScheduler:
    """Decisions published at their ``evaluated_at`` (2 s interval, 10 s bound), read at
    ``now`` as the real scheduler reads them."""

    verdicts: dict[str, Verdict] = field(default_factory=dict)
    now: datetime = T0

    def current_all(self) -> dict[str, DecisionView]:
        return {name: self._view(v) for name, v in self.verdicts.items()}

    def current(self, gate: str) -> DecisionView | None:
        verdict = self.verdicts.get(gate)
        return self._view(verdict) if verdict is not None else None

    def _view(self, verdict: Verdict) -> DecisionView:
        published = PublishedDecision(verdict, interval=timedelta(seconds=2), bound=BOUND)
        return published.view(self.now)


@dataclass
class FakeChecks:
    running: list[dict[str, Any]] = field(default_factory=list)

    def running_checks(self) -> list[dict[str, Any]]:
        return list(self.running)


class FixedClock:
    def __init__(self, now: datetime = T0) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("the status page never sleeps")


def status_app(
    catalog: FakeCatalog,
    scheduler: FakeScheduler,
    checks: FakeChecks | None = None,
    *,
    tokens: str = "",
) -> FastAPI:
    app = FastAPI()
    problems.install(app)
    app.state.authenticator = TokenAuthenticator(load_settings(tokens=tokens).tokens)
    app.include_router(router)
    app.include_router(integrations_router)
    app.state.catalog = catalog
    app.state.scheduler = scheduler
    app.state.checks = checks or FakeChecks()
    app.state.clock = FixedClock()
    return app
