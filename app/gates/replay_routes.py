"""``POST /api/v1/gates/{gate}/replay``: what a gate would have decided over a past range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.core.deps import AuthFirstRoute, SessionDep, Viewer
from app.gates import replay_service
from app.gates.deps import CatalogDep
from gates.model import Duration

router = APIRouter(prefix="/gates", tags=["gates"], route_class=AuthFirstRoute)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("give a time zone, e.g. 2026-11-24T10:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("give an instant between years 1 and 9999") from None


Instant = Annotated[datetime, AfterValidator(_utc)]


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: Instant = Field(alias="from", description="RFC 3339 instant with a zone")
    end: Instant = Field(alias="to", description="RFC 3339 instant with a zone")
    step: Duration | None = Field(
        default=None, description="time between steps, like 1m (default: the gate's interval)"
    )
    vars: dict[str, Annotated[str, Field(max_length=128)]] = Field(
        default_factory=dict, max_length=32, description="placeholder values the gate uses"
    )


@router.post(
    "/{gate}/replay",
    summary="Replay the gate on its sources' history (at most 20,000 steps over 31 days)",
    response_class=Response,
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def replay_gate(
    gate: str, body: ReplayRequest, session: SessionDep, catalog: CatalogDep, _: Viewer
) -> Response:
    step: timedelta | None = body.step
    # Encoded by the service off the event loop: the body of 20,000 steps is megabytes.
    content = await replay_service.replay_gate(
        session, catalog, gate, start=body.start, end=body.end, step=step, vars=body.vars
    )
    return Response(content, media_type="application/json")
