"""What the GitHub and GitLab doors share: starting a check for a forge's request, with
its answer queued in the same transaction, and the shapes of their replies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.checks.runner import CheckRunner
from app.checks.schemas import CheckRequest
from app.checks.service import create_check
from app.core.auth import Principal, TokenAuthenticator
from app.core.clock import Clock
from app.core.db import Database
from app.core.deps import state_part
from app.core.problems import Invalid, validation_errors
from app.gates.catalog import GateCatalog
from app.integrations.callbacks import callback_for, enqueue
from app.integrations.forges import Doors
from gates.placeholders import check_value_problem


@dataclass(frozen=True)
class DoorParts:
    """What a front door needs of the running service, each part checked for its type."""

    db: Database
    catalog: GateCatalog
    runner: CheckRunner
    clock: Clock
    authenticator: TokenAuthenticator
    doors: Doors

    @classmethod
    def of(cls, request: Request) -> DoorParts:
        return cls(
            db=state_part(request, "db", Database),
            catalog=state_part(request, "catalog", GateCatalog),
            runner=state_part(request, "checks", CheckRunner),
            clock=state_part(request, "clock", Clock),  # type: ignore[type-abstract]
            authenticator=state_part(request, "authenticator", TokenAuthenticator),
            doors=state_part(request, "doors", Doors),
        )


@dataclass(frozen=True)
class DoorRequest:
    """A forge asking for a decision: the check to start and where to answer."""

    door: str
    key: str  # the forge's id of this request: the check's idempotency key
    gate: str
    version: str
    environment: str | None
    stage: str | None
    vars: dict[str, str]
    metadata: dict[str, Any]
    target: dict[str, Any]


@dataclass(frozen=True)
class Opened:
    check_id: str
    created: bool
    state: str


def check_value(name: str, value: str, *, source: str) -> str:
    """``value`` if a check may carry it (``docs/decisions.md``); else a 422 naming where
    in the payload it came from."""
    problem = check_value_problem(value)
    if problem is not None:
        raise Invalid(
            f"the {name} taken from {source} cannot be a check's {name}: {problem}",
            errors=[{"loc": ["body", *source.split(".")], "msg": problem}],
        )
    return value


def invalid_payload(invalid: ValidationError) -> Invalid:
    errors = [{**e, "loc": ["body", *e["loc"]]} for e in validation_errors(invalid.errors())]
    fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:5])
    return Invalid(f"the payload is invalid: {fields}", errors=errors)


async def open_check(parts: DoorParts, request: DoorRequest) -> Opened:
    """Start the check (or find the one this request already started) and queue the
    forge's answer with it, in one transaction."""
    try:
        check_request = CheckRequest(
            version=request.version,
            environment=request.environment,
            stage=request.stage,
            vars=request.vars,
            metadata=request.metadata,
        )
    except ValidationError as invalid:
        raise invalid_payload(invalid) from None
    clock = parts.clock
    async with parts.db.session() as session:
        body, created = await create_check(
            session,
            parts.catalog,
            parts.runner,
            clock,
            gate_name=request.gate,
            request=check_request,
            idempotency_key=f"{request.door}:{request.key}",
            principal=Principal(request.door, "pipeline"),
        )
        if await callback_for(session, request.door, request.key) is None:
            await enqueue(
                session,
                door=request.door,
                key=request.key,
                check_id=str(body["id"]),
                target=request.target,
                now=clock.now(),
            )
    return Opened(str(body["id"]), created, str(body["state"]))


@dataclass(frozen=True)
class Reply:
    status: int
    word: str

    def answer(self, detail: str, opened: Opened | None = None) -> JSONResponse:
        body: dict[str, Any] = {"status": self.word, "detail": detail}
        if opened is not None:
            body.update(
                check=opened.check_id,
                state=opened.state,
                new=opened.created,
                check_url=f"/api/v1/checks/{opened.check_id}",
            )
        return JSONResponse(body, status_code=self.status)


IGNORED = Reply(200, "ignored")
ACCEPTED = Reply(202, "accepted")
