"""Every router in one place: ``/api/v1`` (gates, checks, admin) and the public health and
metrics routes (``docs/architecture.md``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.checks import routes as checks
from app.core.deps import DatabaseDep
from app.core.problems import problem_response
from app.gates import admin_routes as admin
from app.gates import replay_routes as replays
from app.gates import routes as gates
from app.gates import template_routes as templates
from app.gates.deps import CatalogDep
from app.observability import metrics

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(gates.router)
api_router.include_router(checks.router)
api_router.include_router(admin.router)
api_router.include_router(templates.router)
api_router.include_router(replays.router)

public_router = APIRouter(tags=["health"])


@public_router.get("/healthz", summary="The process is up (public)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@public_router.get(
    "/readyz",
    summary="The gates are loaded and the database was reached since start (public)",
    responses={503: {"description": "not ready; the body says why"}},
    response_model=None,
)
async def readyz(
    request: Request, db: DatabaseDep, catalog: CatalogDep
) -> dict[str, object] | Response:
    # Ready once gates are loaded and the database was reached once since start. A later
    # outage shows here as "database": false and in stale (no_go) decisions, not as
    # unreadiness, so callers keep getting no_go answers rather than connection errors.
    reachable = await db.ping()
    gates_loaded = bool(getattr(request.app.state, "gates_loaded", False))
    replica = request.app.state.settings.replica_id
    if not (db.reached and gates_loaded):
        reasons = []
        if not db.reached:
            reasons.append("the database has not been reached since start")
        if not gates_loaded:
            reasons.append("the gates are not loaded yet")
        return problem_response(
            503, "; ".join(reasons), database=reachable, gates=gates_loaded, replica=replica
        )
    body: dict[str, object] = {
        "status": "ready",
        "database": reachable,
        "gates": len(catalog.all()),
        "replica": replica,
    }
    bus = getattr(request.app.state, "bus", None)
    if bus is not None:
        body["bus_listening"] = bus.listening
    if not reachable:
        body["detail"] = "the database is not answering; decisions go stale (no_go) meanwhile"
    return body


@public_router.get("/metrics", summary="Prometheus metrics (public)", response_class=Response)
async def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
