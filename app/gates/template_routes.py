"""``/api/v1/templates``: shared criterion templates (docs/templates.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from app.core.deps import MAX_ROW_ID, Admin, AuthFirstRoute, ClockDep, SessionDep, Viewer
from app.core.problems import Invalid
from app.gates import template_service as services
from app.gates.deps import CatalogDep

router = APIRouter(prefix="/templates", tags=["templates"], route_class=AuthFirstRoute)

_TEMPLATE_BODY = {
    "requestBody": {
        "required": True,
        "description": "the template, as in a template file (YAML) or the same as JSON",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


@router.get("", summary="Every criterion template, with the gates that use it")
async def list_templates(catalog: CatalogDep, _: Viewer) -> list[dict[str, Any]]:
    return services.list_templates(catalog)


@router.get("/{name}", summary="A template's params, criterion, text and users")
async def get_template(name: str, catalog: CatalogDep, _: Viewer) -> dict[str, Any]:
    return services.get_template(catalog, name)


@router.put(
    "/{name}",
    summary="Create or replace an API template; every gate using it is redefined (admin)",
    status_code=200,
    openapi_extra=_TEMPLATE_BODY,
    responses={
        201: {"description": "created"},
        409: {"description": "file-defined template"},
        422: {"description": "invalid template, or a gate using it would not validate"},
    },
)
async def put_template(
    name: str,
    request: Request,
    session: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    principal: Admin,
) -> JSONResponse:
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(
            "the body is not UTF-8 text",
            errors=[{"loc": ["body"], "msg": "send the template as UTF-8 YAML or JSON"}],
        ) from None
    body, created = await services.put_template(
        session, catalog, name=name, text=text, principal=principal, clock=clock
    )
    return JSONResponse(
        body,
        status_code=201 if created else 200,
        headers={"Location": f"/api/v1/templates/{name}"} if created else None,
    )


@router.delete(
    "/{name}",
    summary="Delete an API template no gate uses (admin)",
    status_code=204,
    response_class=Response,
    responses={
        409: {"description": "file-defined template"},
        422: {"description": "a gate still uses it"},
    },
)
async def delete_template(
    name: str, session: SessionDep, catalog: CatalogDep, clock: ClockDep, principal: Admin
) -> Response:
    await services.delete_template(session, catalog, name=name, principal=principal, clock=clock)
    return Response(status_code=204)


@router.get("/{name}/events", summary="The template's audit trail, oldest first")
async def template_events(
    name: str,
    session: SessionDep,
    _: Viewer,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_ROW_ID, description="the last event id already seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> dict[str, Any]:
    return await services.template_events(session, name=name, after=after, limit=limit)
