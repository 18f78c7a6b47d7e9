"""Stored history for the status page and check page tests: continuous samples of a
gate with a go stretch, a gap, a rollback and a no_go stretch, and checks (final and
running, with hostile text) written straight into a migrated database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.checks import repository as checks_repo
from app.core.db import FINAL, RUNNING, CheckRow, Database, SampleRow, SignoffRow
from app.gates import repository as gates_repo
from gates.model import Gate
from tests.app.web.status_fakes import T0, make_gate

HOSTILE = '<script>alert("x")</script>&amp;'
SECRET_METADATA = "metadata-secret-7f3a"
SECRET_COMMENT = "comment-secret-91bd"
FINAL_ID = "f" * 32
RUNNING_ID = "a" * 32
STEP = timedelta(seconds=5)


def slow_gate(name: str, description: str = "") -> Gate:
    """A gate sampled every 30 s, whose newest samples reach back over the whole window."""
    return make_gate(name, description).model_copy(update={"interval": timedelta(seconds=30)})


def availability_body(decision: str, value: float, at: datetime) -> dict[str, Any]:
    return {
        "gate": "portal",
        "decision": decision,
        "evaluated_at": at.isoformat(),
        "expires_at": (at + timedelta(seconds=10)).isoformat(),
        "reasons": [] if decision == "go" else [f"availability: {value} <= 0.999"],
        "steady": {"passes": 0, "needed": 3},
        "criteria": [
            {
                "name": "availability",
                "outcome": "pass",
                "value": value,
                "go": "> 99.9%",
                "rollback": "< 95%",
                "reason": "",
                "probe": "prom",
            },
            {
                "name": "latency-p95",
                "outcome": "pass",
                "value": 0.35,
                "go": "< 2s",
                "rollback": None,
                "reason": "",
                "probe": "prom",
            },
        ],
    }


# (first, last, decision, availability): every STEP from first to last, inclusive.
STRETCHES = (
    (T0 - timedelta(minutes=60), T0 - timedelta(minutes=50), "go", 0.9995),
    (T0 - timedelta(minutes=40), T0 - timedelta(minutes=30), "rollback", 0.90),
    (T0 - timedelta(minutes=30) + STEP, T0 - STEP, "no_go", 0.998),
)


def stretch_instants(first: datetime, last: datetime) -> list[datetime]:
    instants = []
    moment = first
    while moment <= last:
        instants.append(moment)
        moment += STEP
    return instants


@dataclass
class Seeded:
    samples: int


async def seed_history(db: Database, gate: str = "portal") -> Seeded:
    count = 0
    async with db.session() as session:
        for first, last, decision, value in STRETCHES:
            for at in stretch_instants(first, last):
                session.add(
                    SampleRow(
                        gate=gate,
                        check_id=None,
                        evaluated_at=at,
                        decision=decision,
                        body=availability_body(decision, value, at),
                        gate_version="v1",
                    )
                )
                count += 1
        # Older than the window: never read.
        await gates_repo.add_sample(
            session,
            gate=gate,
            check_id=None,
            evaluated_at=T0 - timedelta(hours=5),
            decision="rollback",
            body=availability_body("rollback", 0.5, T0 - timedelta(hours=5)),
        )
    return Seeded(count)


def check_row(check_id: str, **values: Any) -> CheckRow:
    base: dict[str, Any] = {
        "id": check_id,
        "gate": "portal",
        "version": "2.4.1",
        "environment": "production",
        "stage": "blue-green",
        "vars": {"tenant": "acme"},
        "meta": {"ticket": SECRET_METADATA},
        "state": FINAL,
        "decision": "go",
        "verdict": availability_body("go", 0.9995, T0 - timedelta(minutes=20)),
        "deciding_samples": [],
        "created_at": T0 - timedelta(minutes=25),
        "created_by": "ci",
        "deadline": T0 - timedelta(minutes=15),
        "timeout_s": 600.0,
        "decided_at": T0 - timedelta(minutes=20),
        "decided_by": "engine",
        "gate_version": "v1",
    }
    base.update(values)
    return CheckRow(**base)


async def seed_checks(db: Database) -> None:
    hostile_verdict = availability_body("rollback", 0.9, T0 - timedelta(minutes=10))
    hostile_verdict["reasons"] = [f"manual rollback by alice: {HOSTILE}"]
    running_verdict = availability_body("go", 0.9995, T0 - timedelta(minutes=1))
    async with db.session() as session:
        session.add(
            check_row(
                "b" * 32,
                version="2.4.0",
                created_at=T0 - timedelta(minutes=50),
                decided_at=T0 - timedelta(minutes=45),
            )
        )
        session.add(
            check_row(
                FINAL_ID,
                version=HOSTILE,
                decision="rollback",
                verdict=hostile_verdict,
                created_at=T0 - timedelta(minutes=14),
                deadline=T0 - timedelta(minutes=4),
                decided_at=T0 - timedelta(minutes=10),
                decided_by="alice",
            )
        )
        session.add(
            check_row(
                RUNNING_ID,
                version="2.5.0",
                state=RUNNING,
                decision=None,
                verdict=running_verdict,
                created_at=T0 - timedelta(minutes=3),
                deadline=T0 + timedelta(minutes=10),
                decided_at=None,
                decided_by=None,
            )
        )
        await session.flush()
        session.add(
            SignoffRow(
                check_id=FINAL_ID,
                signoff="uat",
                signed_by="alice",
                comment=SECRET_COMMENT,
                signed_at=T0 - timedelta(minutes=12),
            )
        )
        for index, at in enumerate(
            stretch_instants(T0 - timedelta(minutes=14), T0 - timedelta(minutes=10))
        ):
            decision = "no_go" if index < 20 else "rollback"
            session.add(
                SampleRow(
                    gate="portal",
                    check_id=FINAL_ID,
                    evaluated_at=at,
                    decision=decision,
                    body=availability_body(decision, 0.9, at),
                )
            )
        await checks_repo.add_event(
            session,
            FINAL_ID,
            "created",
            at=T0 - timedelta(minutes=14),
            actor="ci",
            data={"metadata": SECRET_METADATA},
        )
        await checks_repo.add_event(
            session,
            FINAL_ID,
            "override",
            at=T0 - timedelta(minutes=10),
            actor="alice",
            data={"decision": "rollback", "reason": HOSTILE},
        )
