"""What the API does, between the routes (parse, authorise) and the repository (SQL).

Services raise ``app.core.problems`` errors; the request's session dependency commits. Work
that must only happen once the data is committed (starting a check's loop, waking
waiters, installing a gate) is registered with ``after_commit``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.checks import repository as repo
from app.checks.runner import CheckRunner, check_body, iso, no_sample_verdict
from app.core.auth import Principal, require
from app.core.clock import Clock
from app.core.db import CheckRow, after_commit, on_rollback
from app.core.problems import Conflict, Invalid, NotFound
from app.gates.catalog import GateCatalog, GateReadOnly, LoadedGate, definition_version
from app.gates.scheduler import GateScheduler
from gates.conditions import ConditionError, format_duration, parse_duration
from gates.engine import Decision, Steady, Verdict
from gates.errors import GateFileError, count_of
from gates.model import GATE_NAME

MAX_CHECK_TIMEOUT = timedelta(hours=24)
MAX_IDEMPOTENCY_KEY = 255

Text255 = Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True)]


class CheckRequest(BaseModel):
    """``POST /gates/{gate}/checks``."""

    model_config = ConfigDict(extra="forbid")

    version: Text255 = Field(description="the release being judged; fills ${version}")
    environment: Text255 | None = None
    stage: Text255 | None = None
    vars: dict[
        Annotated[str, StringConstraints(max_length=100)],
        Annotated[str, StringConstraints(max_length=2000)],
    ] = Field(default_factory=dict, description="extra placeholder values for this check")
    metadata: dict[str, Any] = Field(default_factory=dict, description="kept with the check")
    timeout: str | float | None = Field(
        default=None, description="overrides the gate's timeout: '10m', or seconds"
    )

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str | float | None) -> str | float | None:
        if value is None:
            return None
        try:
            span = parse_duration(value)
        except ConditionError as error:
            raise ValueError(str(error)) from None
        except OverflowError:
            raise ValueError(f"at most {format_duration(MAX_CHECK_TIMEOUT)}") from None
        if not timedelta(0) < span <= MAX_CHECK_TIMEOUT:
            raise ValueError(
                f"must be longer than 0s and at most {format_duration(MAX_CHECK_TIMEOUT)}"
            )
        return value

    def timeout_span(self) -> timedelta | None:
        return None if self.timeout is None else parse_duration(self.timeout)

    def fingerprint(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class SignoffRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signoff: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class ManualDecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["go", "no_go", "rollback"]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None


# -- gates -------------------------------------------------------------------------------


def _loaded_or_404(catalog: GateCatalog, name: str) -> LoadedGate:
    loaded = catalog.get(name)
    if loaded is None:
        raise NotFound(f"no gate named {name!r}")
    return loaded


def gate_decision(loaded: LoadedGate, scheduler: GateScheduler) -> dict[str, Any]:
    verdict = scheduler.latest(loaded.name) or no_sample_verdict(
        loaded.name, loaded.gate.steady_for
    )
    return verdict.as_dict()


def gate_decision_json(catalog: GateCatalog, scheduler: GateScheduler, name: str) -> bytes:
    """The current continuous decision body, from memory only."""
    loaded = _loaded_or_404(catalog, name)
    body = scheduler.latest_body(name)
    if body is not None:
        return body
    return json.dumps(gate_decision(loaded, scheduler), separators=(",", ":")).encode()


def gate_summary(loaded: LoadedGate, scheduler: GateScheduler) -> dict[str, Any]:
    gate = loaded.gate
    return {
        "name": gate.name,
        "description": gate.description,
        "source": loaded.source,
        "version": loaded.version,
        "decision": gate_decision(loaded, scheduler),
    }


def gate_detail(loaded: LoadedGate, scheduler: GateScheduler) -> dict[str, Any]:
    # The definition holds only *_env variable names, never their values.
    return {
        **gate_summary(loaded, scheduler),
        "path": loaded.path,
        "definition": loaded.gate.model_dump(mode="json"),
        "text": loaded.text,
    }


def list_gates(catalog: GateCatalog, scheduler: GateScheduler) -> list[dict[str, Any]]:
    return [gate_summary(loaded, scheduler) for loaded in catalog.all()]


def get_gate(catalog: GateCatalog, scheduler: GateScheduler, name: str) -> dict[str, Any]:
    return gate_detail(_loaded_or_404(catalog, name), scheduler)


def _check_gate_name(name: str) -> None:
    if not GATE_NAME.match(name):
        raise Invalid(
            f"bad gate name {name!r}",
            errors=[
                {"loc": ["path", "gate"], "msg": "a gate name matches [a-z0-9][a-z0-9-]{0,62}"}
            ],
        )


async def put_gate(
    session: AsyncSession,
    catalog: GateCatalog,
    scheduler: GateScheduler,
    *,
    name: str,
    text: str,
    principal: Principal,
    clock: Clock,
) -> tuple[dict[str, Any], bool]:
    """Create or replace an API-defined gate; returns its body and whether it is new."""
    _check_gate_name(name)
    previous = catalog.get(name)
    try:
        loaded = catalog.put_api_gate(name, text)
    except GateReadOnly as read_only:
        raise Conflict(str(read_only)) from None
    except GateFileError as invalid:
        raise Invalid(
            f"the gate definition is invalid ({count_of(len(invalid.problems), 'problem')})",
            errors=[_located(p.as_dict()) for p in invalid.problems],
        ) from None
    if previous is not loaded:
        on_rollback(session, lambda: _restore(catalog, name, previous))
    created = await repo.save_api_gate(
        session,
        name=name,
        text=text,
        version=definition_version(text),
        at=clock.now(),
        by=principal.name,
    )
    return gate_detail(loaded, scheduler), created


def _located(error: dict[str, Any]) -> dict[str, Any]:
    where = f"line {error['line']}, column {error['col']}: " if error.get("line") else ""
    return {**error, "loc": ["body", *error["loc"]], "msg": where + error["msg"]}


def _restore(catalog: GateCatalog, name: str, previous: LoadedGate | None) -> None:
    """Undo a catalog change whose database write failed."""
    try:
        if previous is None:
            catalog.remove_api_gate(name)
        else:
            catalog.put_api_gate(name, previous.text)
    except (KeyError, GateReadOnly, GateFileError):
        pass


async def delete_gate(session: AsyncSession, catalog: GateCatalog, *, name: str) -> None:
    loaded = _loaded_or_404(catalog, name)
    if loaded.source == "file":
        raise Conflict(f"gate {name!r} is defined by the file {loaded.path}; edit the file instead")
    running = await repo.running_check_count(session, name)
    if running:
        raise Conflict(
            f"gate {name!r} has {count_of(running, 'running check')}; cancel or decide them first"
        )
    await repo.delete_api_gate(session, name)

    def remove() -> None:
        with contextlib.suppress(KeyError, GateReadOnly):
            catalog.remove_api_gate(name)

    after_commit(session, remove)


async def load_api_gates(session: AsyncSession, catalog: GateCatalog) -> list[str]:
    """Install every stored API-defined gate; returns problems (gates that no longer load)."""
    problems = []
    for row in await repo.api_gates(session):
        try:
            catalog.put_api_gate(row.name, row.text)
        except GateReadOnly:
            problems.append(f"gate {row.name}: a gate file of that name takes precedence")
        except GateFileError as invalid:
            problems.append(f"gate {row.name} (stored): {invalid}")
    return problems


async def gate_samples(
    session: AsyncSession,
    catalog: GateCatalog,
    *,
    name: str,
    since: datetime | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    _loaded_or_404(catalog, name)
    before_id = None
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 19:
            raise Invalid(
                "bad cursor",
                errors=[
                    {"loc": ["query", "cursor"], "msg": "use next_cursor from the previous page"}
                ],
            )
        before_id = int(cursor)
    rows = await repo.gate_samples(session, name, since=since, before_id=before_id, limit=limit)
    items = [{"id": row.id, **row.body} for row in rows]
    return {
        "items": items,
        "next_cursor": str(rows[-1].id) if len(rows) == limit else None,
    }


# -- checks ------------------------------------------------------------------------------


async def _check_or_404(session: AsyncSession, check_id: str) -> CheckRow:
    row = await repo.check(session, check_id) if len(check_id) <= 64 else None
    if row is None:
        raise NotFound(f"no check with id {check_id!r}")
    return row


async def _body(session: AsyncSession, row: CheckRow) -> dict[str, Any]:
    return check_body(row, await repo.signoffs(session, row.id))


def _final_conflict(row: CheckRow) -> Conflict:
    what = row.decision if row.state == repo.FINAL else row.state
    return Conflict(
        f"check {row.id} is {row.state} ({what}) since {iso(row.decided_at)};"
        " a final check never changes",
        state=row.state,
        decision=row.decision,
    )


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise Invalid(
            "bad Idempotency-Key header",
            errors=[
                {
                    "loc": ["header", "Idempotency-Key"],
                    "msg": f"1 to {MAX_IDEMPOTENCY_KEY} printable characters",
                }
            ],
        )
    return key


async def create_check(
    session: AsyncSession,
    catalog: GateCatalog,
    runner: CheckRunner,
    clock: Clock,
    *,
    gate_name: str,
    request: CheckRequest,
    idempotency_key: str | None,
    principal: Principal,
) -> tuple[dict[str, Any], bool]:
    """Start a check; returns its body and False when an idempotent retry found it."""
    loaded = _loaded_or_404(catalog, gate_name)
    fingerprint = request.fingerprint()
    if idempotency_key is not None:
        existing = await repo.check_by_idempotency_key(session, gate_name, idempotency_key)
        if existing is not None:
            return await _replay(session, existing, fingerprint), False
    gate = loaded.gate
    now = clock.now()
    timeout = request.timeout_span() or gate.timeout
    row = CheckRow(
        id=uuid.uuid4().hex,
        gate=gate_name,
        version=request.version,
        environment=request.environment,
        stage=request.stage,
        vars=dict(request.vars),
        meta=dict(request.metadata),
        state=repo.RUNNING,
        decision=None,
        verdict=no_sample_verdict(gate_name, gate.steady_for).as_dict(),
        deciding_samples=[],
        created_at=now,
        created_by=principal.name,
        deadline=now + timeout,
        timeout_s=timeout.total_seconds(),
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
    )
    try:
        async with session.begin_nested():
            await repo.add_check(session, row)
    except IntegrityError:
        # The same key raced in from a concurrent retry: answer as for a retry.
        if idempotency_key is None:
            raise
        existing = await repo.check_by_idempotency_key(session, gate_name, idempotency_key)
        if existing is None:
            raise
        return await _replay(session, existing, fingerprint), False
    await repo.add_event(
        session,
        row.id,
        "created",
        at=now,
        actor=principal.name,
        data={
            "version": row.version,
            "environment": row.environment,
            "stage": row.stage,
            "vars": row.vars,
            "gate_version": loaded.version,
            "deadline": iso(row.deadline),
            "idempotency_key": idempotency_key,
        },
    )
    after_commit(session, lambda: runner.started(row))
    return check_body(row, []), True


async def _replay(session: AsyncSession, existing: CheckRow, fingerprint: str) -> dict[str, Any]:
    if existing.request_hash != fingerprint:
        raise Conflict(
            f"Idempotency-Key was already used for check {existing.id} with a different body",
            check=existing.id,
        )
    return await _body(session, existing)


async def get_check(session: AsyncSession, check_id: str) -> dict[str, Any]:
    return await _body(session, await _check_or_404(session, check_id))


async def list_checks(
    session: AsyncSession, *, gate: str | None, state: str | None, limit: int
) -> dict[str, Any]:
    rows = await repo.checks(session, gate=gate, state=state, limit=limit)
    signed = await repo.signoffs_for(session, [r.id for r in rows])
    return {"items": [check_body(row, signed[row.id]) for row in rows]}


async def add_signoff(
    session: AsyncSession,
    catalog: GateCatalog,
    runner: CheckRunner,
    clock: Clock,
    *,
    check_id: str,
    request: SignoffRequest,
    principal: Principal,
) -> dict[str, Any]:
    row = await _check_or_404(session, check_id)
    loaded = catalog.get(row.gate)
    required = {s.id: s for s in loaded.gate.signoffs} if loaded is not None else {}
    wanted = required.get(request.signoff)
    if wanted is None:
        known = ", ".join(sorted(required)) or "none"
        raise Invalid(
            f"gate {row.gate!r} has no sign-off {request.signoff!r}",
            errors=[
                {"loc": ["body", "signoff"], "msg": f"unknown sign-off; this gate's are: {known}"}
            ],
        )
    require(principal, wanted.role, action=f"sign-off {wanted.id!r}")
    if row.state != repo.RUNNING or not await repo.lock_running(session, check_id):
        raise _final_conflict(await _check_or_404(session, check_id))
    existing = {s.signoff: s for s in await repo.signoffs(session, check_id)}
    if request.signoff in existing:
        raise Conflict(
            f"sign-off {request.signoff!r} was already recorded"
            f" by {existing[request.signoff].signed_by}"
        )
    now = clock.now()
    try:
        async with session.begin_nested():
            await repo.add_signoff(
                session,
                check_id=check_id,
                signoff=request.signoff,
                signed_by=principal.name,
                comment=request.comment,
                at=now,
            )
    except IntegrityError:
        raise Conflict(f"sign-off {request.signoff!r} was already recorded") from None
    await repo.add_event(
        session,
        check_id,
        "signoff",
        at=now,
        actor=principal.name,
        data={"signoff": request.signoff, "comment": request.comment},
    )
    after_commit(session, lambda: runner.signed(check_id, request.signoff))
    return await _body(session, row)


async def decide_check(
    session: AsyncSession,
    catalog: GateCatalog,
    runner: CheckRunner,
    clock: Clock,
    *,
    check_id: str,
    request: ManualDecisionRequest,
    principal: Principal,
) -> dict[str, Any]:
    """A human's final decision (an override), with its reason in the audit trail."""
    if request.decision == Decision.GO.value:
        require(principal, "admin", action="a manual go")
    row = await _check_or_404(session, check_id)
    if row.state != repo.RUNNING:
        raise _final_conflict(row)
    now = clock.now()
    decision = Decision(request.decision)
    latest = row.verdict
    steady = latest.get("steady") or {}
    verdict = Verdict(
        row.gate,
        decision,
        now,
        (f"manual {decision.value} by {principal.name}: {request.reason}",),
        Steady(int(steady.get("passes", 0)), int(steady.get("needed", 1))),
    )
    body = {**verdict.as_dict(), "criteria": list(latest.get("criteria") or [])}
    last = await repo.recent_check_samples(session, check_id, 1)
    deciding = [s.id for s in last]
    if not await repo.finish_check(
        session,
        check_id,
        state=repo.FINAL,
        decision=decision.value,
        verdict=body,
        decided_at=now,
        decided_by=principal.name,
        deciding_samples=deciding,
    ):
        raise _final_conflict(await _check_or_404(session, check_id))
    await repo.add_event(
        session,
        check_id,
        "override",
        at=now,
        actor=principal.name,
        data={
            "decision": decision.value,
            "reason": request.reason,
            "engine_decision": latest.get("decision"),
        },
    )
    await repo.add_event(
        session,
        check_id,
        "final",
        at=now,
        actor=principal.name,
        data={
            "decision": decision.value,
            "reasons": list(verdict.reasons),
            "deciding_samples": deciding,
        },
    )
    final = await _check_or_404(session, check_id)
    after_commit(session, lambda: runner.ended(final, verdict))
    return await _body(session, final)


async def cancel_check(
    session: AsyncSession,
    runner: CheckRunner,
    clock: Clock,
    *,
    check_id: str,
    request: CancelRequest,
    principal: Principal,
) -> dict[str, Any]:
    row = await _check_or_404(session, check_id)
    if row.state != repo.RUNNING:
        raise _final_conflict(row)
    now = clock.now()
    reason = f"cancelled by {principal.name}" + (f": {request.reason}" if request.reason else "")
    body = {**row.verdict, "reasons": [reason]}
    if not await repo.finish_check(
        session,
        check_id,
        state=repo.CANCELLED,
        decision=None,
        verdict=body,
        decided_at=now,
        decided_by=principal.name,
        deciding_samples=[],
    ):
        raise _final_conflict(await _check_or_404(session, check_id))
    await repo.add_event(
        session,
        check_id,
        "cancelled",
        at=now,
        actor=principal.name,
        data={"reason": request.reason},
    )
    final = await _check_or_404(session, check_id)
    after_commit(session, lambda: runner.ended(final, None))
    return await _body(session, final)


async def check_events(
    session: AsyncSession, *, check_id: str, after: int | None, limit: int
) -> dict[str, Any]:
    await _check_or_404(session, check_id)
    rows = await repo.events(session, check_id, after_id=after, limit=limit)
    return {
        "check": check_id,
        "items": [
            {"id": e.id, "kind": e.kind, "at": iso(e.at), "actor": e.actor, "data": e.data}
            for e in rows
        ],
    }
