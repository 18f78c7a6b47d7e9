"""``/api/v1/gates``: definitions, the current continuous decision, sample history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from app.core.deps import Admin, SessionDep, Viewer
from app.core.problems import Invalid
from app.gates import service as services

router = APIRouter(prefix="/gates", tags=["gates"])

_GATE_BODY = {
    "requestBody": {
        "required": True,
        "description": "the gate definition, as in a gate file (YAML) or the same as JSON",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


@router.get("", summary="Every gate with its current decision")
async def list_gates(request: Request, _: Viewer) -> list[dict[str, Any]]:
    state = request.app.state
    return services.list_gates(state.catalog, state.scheduler)


@router.get("/{gate}", summary="A gate's definition, source, version and current decision")
async def get_gate(gate: str, request: Request, _: Viewer) -> dict[str, Any]:
    state = request.app.state
    return services.get_gate(state.catalog, state.scheduler, gate)


@router.put(
    "/{gate}",
    summary="Create or replace an API-defined gate from YAML or JSON (admin)",
    status_code=200,
    openapi_extra=_GATE_BODY,
    responses={201: {"description": "created"}, 409: {"description": "file-defined gate"}},
)
async def put_gate(
    gate: str, request: Request, session: SessionDep, principal: Admin
) -> JSONResponse:
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(
            "the body is not UTF-8 text",
            errors=[{"loc": ["body"], "msg": "send the gate as UTF-8 YAML or JSON"}],
        ) from None
    state = request.app.state
    body, created = await services.put_gate(
        session,
        state.catalog,
        state.scheduler,
        name=gate,
        text=text,
        principal=principal,
        clock=state.clock,
    )
    return JSONResponse(
        body,
        status_code=201 if created else 200,
        headers={"Location": f"/api/v1/gates/{gate}"} if created else None,
    )


@router.delete(
    "/{gate}",
    summary="Delete an API-defined gate (admin)",
    status_code=204,
    response_class=Response,
    responses={409: {"description": "file-defined gate, or checks still running"}},
)
async def delete_gate(gate: str, request: Request, session: SessionDep, _: Admin) -> Response:
    await services.delete_gate(session, request.app.state.catalog, name=gate)
    return Response(status_code=204)


@router.get(
    "/{gate}/decision",
    summary="The gate's current continuous decision (from memory; never calls a probe)",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
async def gate_decision(gate: str, request: Request, _: Viewer) -> Response:
    state = request.app.state
    body = services.gate_decision_json(state.catalog, state.scheduler, gate)
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/{gate}/samples", summary="Continuous sample history, newest first, paginated")
async def gate_samples(
    gate: str,
    request: Request,
    session: SessionDep,
    _: Viewer,
    since: Annotated[datetime | None, Query(description="only samples after this instant")] = None,
    cursor: Annotated[
        str | None, Query(max_length=32, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    if since is not None and since.tzinfo is None:
        raise Invalid(
            "since needs a time zone",
            errors=[{"loc": ["query", "since"], "msg": "give a zone, e.g. 2026-11-24T10:00:00Z"}],
        )
    return await services.gate_samples(
        session, request.app.state.catalog, name=gate, since=since, cursor=cursor, limit=limit
    )
