"""Checks: started by pipelines, long-polled until final, signed off and overridden by people."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse

from app.checks import service as services
from app.checks.deps import RunnerDep
from app.checks.schemas import CancelRequest, CheckRequest, ManualDecisionRequest, SignoffRequest
from app.core.deps import (
    MAX_ROW_ID,
    Approver,
    AuthFirstRoute,
    ClockDep,
    Pipeline,
    SessionDep,
    Viewer,
)
from app.core.problems import NotFound
from app.gates.deps import CatalogDep

router = APIRouter(tags=["checks"], route_class=AuthFirstRoute)

MAX_WAIT_SECONDS = 60
_CHECK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


async def _check_id(check_id: str) -> str:
    """The path's check id; an id no check can have (a NUL, a surrogate, 65 characters)
    is a 404 before it reaches the database, which might refuse it with an error."""
    if not _CHECK_ID.fullmatch(check_id):
        raise NotFound(f"no check with id {check_id!r}")
    return check_id


CheckId = Annotated[str, Depends(_check_id)]


@router.post(
    "/gates/{gate}/checks",
    summary="Start a check of a release (pipeline)",
    status_code=201,
    responses={
        200: {"description": "a retried request (same Idempotency-Key and body): the same check"},
        409: {"description": "the Idempotency-Key was used with a different body"},
    },
)
async def start_check(
    gate: str,
    payload: CheckRequest,
    session: SessionDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    clock: ClockDep,
    principal: Pipeline,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="makes a retried request return the same check (at most 255 characters)",
        ),
    ] = None,
) -> JSONResponse:
    key = services.check_idempotency_key(idempotency_key)
    body, created = await services.create_check(
        session,
        catalog,
        runner,
        clock,
        gate_name=gate,
        request=payload,
        idempotency_key=key,
        principal=principal,
    )
    return JSONResponse(
        body,
        status_code=201 if created else 200,
        headers={"Location": f"/api/v1/checks/{body['id']}"},
    )


@router.get("/checks/{check_id}", summary="A check; with wait, long-polls until it is final")
async def get_check(
    check_id: CheckId,
    session: SessionDep,
    runner: RunnerDep,
    clock: ClockDep,
    _: Viewer,
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait for the final decision"),
    ] = 0,
) -> dict[str, Any]:
    # Wait first, from memory, so a long poll holds no database connection.
    await runner.wait_final(check_id, wait)
    return await services.get_check(session, check_id, now=clock.now())


@router.get("/checks", summary="Checks, newest first")
async def list_checks(
    session: SessionDep,
    clock: ClockDep,
    _: Viewer,
    gate: Annotated[str | None, Query(max_length=63, pattern=r"^[a-z0-9][a-z0-9-]*$")] = None,
    state: Literal["running", "final", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    return await services.list_checks(session, gate=gate, state=state, limit=limit, now=clock.now())


@router.post(
    "/checks/{check_id}/signoffs",
    summary="Record a sign-off the gate requires (approver); the signer is the token",
    status_code=201,
)
async def add_signoff(
    check_id: CheckId,
    payload: SignoffRequest,
    session: SessionDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    clock: ClockDep,
    principal: Approver,
) -> dict[str, Any]:
    return await services.add_signoff(
        session,
        catalog,
        runner,
        clock,
        check_id=check_id,
        request=payload,
        principal=principal,
    )


@router.post(
    "/checks/{check_id}/decision",
    summary="Decide a check by hand with a reason (approver: no_go, rollback; admin: go)",
)
async def decide_check(
    check_id: CheckId,
    payload: ManualDecisionRequest,
    session: SessionDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    clock: ClockDep,
    principal: Approver,
) -> dict[str, Any]:
    return await services.decide_check(
        session,
        catalog,
        runner,
        clock,
        check_id=check_id,
        request=payload,
        principal=principal,
    )


@router.post("/checks/{check_id}/cancel", summary="Cancel a running check (pipeline)")
async def cancel_check(
    check_id: CheckId,
    session: SessionDep,
    runner: RunnerDep,
    clock: ClockDep,
    principal: Pipeline,
    payload: CancelRequest | None = None,
) -> dict[str, Any]:
    return await services.cancel_check(
        session,
        runner,
        clock,
        check_id=check_id,
        request=payload or CancelRequest(),
        principal=principal,
    )


@router.get("/checks/{check_id}/events", summary="The check's audit trail, oldest first")
async def check_events(
    check_id: CheckId,
    session: SessionDep,
    _: Viewer,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_ROW_ID, description="the last event id already seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> dict[str, Any]:
    return await services.check_events(session, check_id=check_id, after=after, limit=limit)
