"""Integrations that cannot speak gonogo's own API: Flagger's webhook contract.

Flagger POSTs ``{"name", "namespace", "phase", "metadata"}`` to a webhook and reads only
the status code: 2xx lets the canary advance, anything else counts as a failed check.
So the answer is 200 only while the gate's current (continuous) decision is ``go``, and
403 with a problem+json body listing the reasons otherwise. The decision comes from
memory, like every read, through the scheduler's stale-aware view: an expired ``go`` is a
``no_go`` here too. The webhook never calls a probe.

Flagger's webhooks send no headers of their own, so besides ``Authorization: Bearer`` (a
proxy may add it) the caller's token is read from ``metadata.token``; any role may ask.
The caller is authenticated before the body is validated: a body that is not even JSON,
or has no token, gets 401 like a missing header, and only a valid token learns why a
body is invalid.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.core.auth import TokenAuthenticator, require
from app.core.problems import Invalid, validation_errors
from app.gates.catalog import LoadedGate
from app.gates.freshness import DecisionView
from gates.engine import Decision

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])

PROBLEM_JSON = "application/problem+json"


class FlaggerWebhook(BaseModel):
    """The body Flagger sends to every webhook (``CanaryWebhookPayload``)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="the Canary's name")
    namespace: str = Field(description="the Canary's namespace")
    phase: str | None = Field(default=None, description="Progressing, Promoting, ...")
    metadata: dict[str, str] = Field(
        default_factory=dict, description="``token``: a gonogo API token, when tokens are set"
    )


def _problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


class KnownGates(Protocol):
    def get(self, name: str) -> LoadedGate | None: ...


class CurrentDecisions(Protocol):
    def current(self, gate: str) -> DecisionView | None: ...


def flagger_answer(gate: str, catalog: KnownGates, scheduler: CurrentDecisions) -> JSONResponse:
    """200 with the decision body on a fresh go; 403 problem+json with the reasons
    otherwise (a stale go included); 404 for a gate gonogo does not know."""
    if catalog.get(gate) is None:
        return _problem(404, "Gate not found", f"no gate named {gate!r}")
    view = scheduler.current(gate)
    verdict = view.verdict if view is not None else None
    if view is not None and view.verdict.decision is Decision.GO:
        return JSONResponse(view.as_dict())
    decision = verdict.decision.value if verdict is not None else Decision.NO_GO.value
    reasons = list(verdict.reasons) if verdict is not None else ["no sample yet"]
    return _problem(
        403,
        "Gate decision is not go",
        f"gate {gate!r} says {decision}: " + "; ".join(reasons or ["no reason given"]),
        gate=gate,
        decision=decision,
        reasons=reasons,
    )


@router.post(
    "/flagger/{gate}",
    summary="Flagger webhook: 200 only while the gate's decision is go",
    responses={
        403: {"description": "the decision is no_go or rollback (reasons in the body)"},
        404: {"description": "unknown gate"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": FlaggerWebhook.model_json_schema()}},
        }
    },
)
async def flagger_webhook(gate: str, request: Request) -> JSONResponse:
    state = request.app.state
    raw = await request.body()
    _authorize(state.authenticator, request.headers.get("authorization"), _body_token(raw))
    payload = _payload(raw)
    answer = flagger_answer(gate, state.catalog, state.scheduler)
    log.info(
        "flagger webhook",
        gate=gate,
        canary=f"{payload.namespace}/{payload.name}",
        phase=payload.phase,
        status=answer.status_code,
    )
    return answer


def _body_token(raw: bytes) -> str | None:
    """``metadata.token`` of the body, if the body is JSON that has one; nothing else
    about the body is judged before the caller is known."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    metadata = body.get("metadata") if isinstance(body, dict) else None
    token = metadata.get("token") if isinstance(metadata, dict) else None
    return token if isinstance(token, str) else None


def _payload(raw: bytes) -> FlaggerWebhook:
    try:
        return FlaggerWebhook.model_validate_json(raw)
    except ValidationError as invalid:
        errors = [{**e, "loc": ["body", *e["loc"]]} for e in validation_errors(invalid.errors())]
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:5])
        raise Invalid(f"the request is invalid: {fields}", errors=errors) from None


def _authorize(
    authenticator: TokenAuthenticator, authorization: str | None, token: str | None
) -> None:
    if not authorization and token:
        authorization = f"Bearer {token}"
    require(authenticator.authenticate(authorization), "viewer", action="reading")
