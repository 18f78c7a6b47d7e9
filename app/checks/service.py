"""What the API does, between the routes (parse, authorise) and the repository (SQL).

Services raise ``app.core.problems`` errors; the request's session dependency commits. Work
that must only happen once the data is committed (starting a check's loop, waking
waiters, installing a gate) is registered with ``after_commit``. Every change to a check
(created, signed off, decided, cancelled) also publishes ``checks`` with its id in the
same transaction, so the replica that samples the check, and long-polls on any replica,
hear of it at commit.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.checks import repository as repo
from app.checks.runner import CheckRunner
from app.checks.schemas import (
    MAX_IDEMPOTENCY_KEY,
    CancelRequest,
    CheckRequest,
    ManualDecisionRequest,
    SignoffRequest,
)
from app.checks.views import check_body, event_body
from app.core.auth import Principal, require
from app.core.clock import Clock
from app.core.db import CheckRow, after_commit
from app.core.problems import Conflict, Invalid, NotFound
from app.gates.catalog import GateCatalog
from app.gates.service import loaded_or_404
from gates.engine import Decision, Steady, Verdict, no_sample_verdict
from gates.model import Gate
from gates.placeholders import gate_placeholders
from probes.timefmt import iso


async def _check_or_404(session: AsyncSession, check_id: str) -> CheckRow:
    row = await repo.check(session, check_id) if len(check_id) <= 64 else None
    if row is None:
        raise NotFound(f"no check with id {check_id!r}")
    return row


async def _body(session: AsyncSession, row: CheckRow, now: datetime) -> dict[str, Any]:
    return check_body(row, await repo.signoffs(session, row.id), now=now)


def _final_conflict(row: CheckRow) -> Conflict:
    what = row.decision if row.state == repo.FINAL else row.state
    return Conflict(
        f"check {row.id} is {row.state} ({what}) since {iso(row.decided_at)};"
        " a final check never changes",
        state=row.state,
        decision=row.decision,
    )


# Keys the front doors build for the checks they start (``app/integrations/``). A caller
# of the API may not use them: a check planted under a door's key (predictable from a
# deployment id or a revision checksum) would be the one the door later answers from.
DOOR_KEY_PREFIXES = ("flagger:", "github:", "gitlab:")


def check_idempotency_key(key: str | None) -> str | None:
    """The ``Idempotency-Key`` header of an API caller, checked (``None`` when absent)."""
    if key is None:
        return None
    problem = None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        problem = f"1 to {MAX_IDEMPOTENCY_KEY} printable characters"
    elif key.startswith(DOOR_KEY_PREFIXES):
        problem = f"keys starting {', '.join(DOOR_KEY_PREFIXES)} are the front doors' own"
    if problem is not None:
        raise Invalid(
            "bad Idempotency-Key header",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": problem}],
        )
    return key


def _check_vars_are_used(gate: Gate, request: CheckRequest) -> None:
    """A check sets only placeholders its gate uses: any other name is a typo or a probe."""
    used = gate_placeholders(gate)
    unknown = [name for name in request.vars if name not in used]
    if unknown:
        known = ", ".join(f"${{{n}}}" for n in sorted(used)) or "none"
        raise Invalid(
            f"gate {gate.name!r} uses no placeholder {', '.join(unknown)}",
            errors=[
                {
                    "loc": ["body", "vars", name],
                    "msg": f"${{{name}}} is not used by gate {gate.name!r} (it uses: {known})",
                }
                for name in unknown
            ],
        )


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
    loaded = loaded_or_404(catalog, gate_name)
    fingerprint = request.fingerprint()
    if idempotency_key is not None:
        existing = await repo.check_by_idempotency_key(session, gate_name, idempotency_key)
        if existing is not None:
            return await _replay(session, existing, fingerprint, clock.now()), False
    gate = loaded.gate
    _check_vars_are_used(gate, request)
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
        gate_version=loaded.version,
    )
    try:
        async with session.begin_nested():
            await repo.add_check(session, row, definition=loaded.stored_text)
    except IntegrityError:
        # The same key raced in from a concurrent retry: answer as for a retry.
        if idempotency_key is None:
            raise
        existing = await repo.check_by_idempotency_key(session, gate_name, idempotency_key)
        if existing is None:
            raise
        return await _replay(session, existing, fingerprint, now), False
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
    await runner.created(session, row)
    after_commit(session, lambda: runner.started(row))
    return check_body(row, [], now=now), True


async def _replay(
    session: AsyncSession, existing: CheckRow, fingerprint: str, now: datetime
) -> dict[str, Any]:
    if existing.request_hash != fingerprint:
        raise Conflict(
            f"Idempotency-Key was already used for check {existing.id} with a different body",
            check=existing.id,
        )
    return await _body(session, existing, now)


async def get_check(session: AsyncSession, check_id: str, *, now: datetime) -> dict[str, Any]:
    return await _body(session, await _check_or_404(session, check_id), now)


async def list_checks(
    session: AsyncSession, *, gate: str | None, state: str | None, limit: int, now: datetime
) -> dict[str, Any]:
    rows = await repo.checks(session, gate=gate, state=state, limit=limit)
    signed = await repo.signoffs_for(session, [r.id for r in rows])
    return {"items": [check_body(row, signed[row.id], now=now) for row in rows]}


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
    gate = await runner.definition_of(row)
    required = {s.id: s for s in gate.signoffs} if gate is not None else {}
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
    now = clock.now()
    if now >= row.deadline:
        # Its loop ends it "timed out" as soon as it can write; a late sign-off must not
        # turn it go in the meantime.
        raise Conflict(
            f"check {row.id} passed its deadline at {iso(row.deadline)};"
            " sign-offs are no longer accepted",
            state=row.state,
            deadline=iso(row.deadline),
        )
    existing = {s.signoff: s for s in await repo.signoffs(session, check_id)}
    if request.signoff in existing:
        raise Conflict(
            f"sign-off {request.signoff!r} was already recorded"
            f" by {existing[request.signoff].signed_by}"
        )
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
    await runner.publish(session, check_id)
    after_commit(session, lambda: runner.signed(check_id, request.signoff))
    return await _body(session, row, now)


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
    body = {
        **verdict.as_dict(),
        "dry_run_reasons": list(latest.get("dry_run_reasons") or []),
        "criteria": list(latest.get("criteria") or []),
    }
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
    await runner.publish(session, check_id)
    await runner.queue_final_notification(session, final, verdict)
    after_commit(session, lambda: runner.ended(final, verdict))
    return await _body(session, final, now)


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
    await runner.publish(session, check_id)
    after_commit(session, lambda: runner.ended(final, None))
    return await _body(session, final, now)


async def check_events(
    session: AsyncSession, *, check_id: str, after: int | None, limit: int
) -> dict[str, Any]:
    await _check_or_404(session, check_id)
    rows = await repo.events(session, check_id, after_id=after, limit=limit)
    return {
        "check": check_id,
        "items": [event_body(e) for e in rows],
    }
