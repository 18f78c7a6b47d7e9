"""Flagger's webhooks, answered about the canary revision itself.

Flagger POSTs ``{"name", "namespace", "phase", "checksum", "metadata"}`` to a webhook and
reads only the status code: 200-202 is success, anything else is not. ``checksum`` names
the canary revision (a hash of the Canary's last applied spec and tracked configs), so
every call about one revision starts, or finds, the same check: its ``Idempotency-Key``
is made of the namespace, the Canary's name and the checksum. The version judged comes
from ``metadata.version`` (``metadata.environment`` and ``metadata.stage`` fill those
placeholders too); without one the answer is 422, never the gate's fleet-wide decision.

The payload does not say which hook is calling, so there are two routes:

- ``POST /api/v1/integrations/flagger/{gate}`` answers as a ``confirm-promotion`` hook:
  200 only once the check is final ``go``; 403 otherwise (still judging, or ended
  ``no_go``, ``rollback`` or cancelled), which holds the promotion.
- ``POST /api/v1/integrations/flagger/{gate}/rollback`` answers as a ``rollback`` hook:
  200 only once the check has ended in ``rollback``, which makes Flagger stop the
  analysis and roll back; 403 otherwise.

A running check's decision is read through the freshness view like every read: a
decision older than its ``expires_at`` is a stale ``no_go``.

Flagger's webhooks send no headers of their own, so besides ``Authorization: Bearer`` (a
proxy may add it) the caller's token is read from ``metadata.token``; starting a check
needs the ``pipeline`` role. The caller is authenticated before the body is validated: a
body that is not even JSON, or has no token, gets 401 like a missing header, and only a
token that may start checks learns why a body is invalid. The token is never stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from app.checks import service as checks
from app.checks.schemas import MAX_IDEMPOTENCY_KEY, CheckRequest, NoControlChars
from app.core.auth import Principal, TokenAuthenticator, require
from app.core.problems import Invalid, Unavailable, validation_errors
from app.integrations.doors import DoorParts
from gates.engine import Decision

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])

PROBLEM_JSON = "application/problem+json"
ROLLBACK = Decision.ROLLBACK.value
GO = Decision.GO.value

# Kubernetes names: a namespace is a DNS label, a Canary's name a DNS subdomain. Neither
# can hold the ``/`` and ``:`` that separate them in the idempotency key.
Namespace = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
CanaryName = Annotated[
    str,
    StringConstraints(max_length=253, pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$"),
]
Checksum = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Phase = Annotated[str, StringConstraints(max_length=64), NoControlChars]

# The metadata keys that fill the check; every other key is the Canary author's own.
CHECK_FIELDS = ("version", "environment", "stage")


class FlaggerWebhook(BaseModel):
    """The body Flagger sends to every webhook (``CanaryWebhookPayload``)."""

    model_config = ConfigDict(extra="ignore")

    name: CanaryName = Field(description="the Canary's name")
    namespace: Namespace = Field(description="the Canary's namespace")
    phase: Phase | None = Field(default=None, description="Progressing, Promoting, ...")
    checksum: Checksum = Field(description="identifies the canary revision")
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "``version`` (required): the canary's version; ``environment`` and ``stage``"
            " (optional); ``token``: a gonogo pipeline token, when no header carries one"
        ),
    )


def idempotency_key(payload: FlaggerWebhook) -> str:
    """One key per canary revision: namespace, name and checksum."""
    key = f"flagger:{payload.namespace}/{payload.name}:{payload.checksum}"
    if len(key) <= MAX_IDEMPOTENCY_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"flagger:sha256:{digest}"


def check_request(payload: FlaggerWebhook) -> CheckRequest:
    """The check Flagger's call asks for; the same for every call about one revision (so
    a retry finds it), which is why ``phase`` and the token are not part of it."""
    given = {f: payload.metadata[f] for f in CHECK_FIELDS if f in payload.metadata}
    if "version" not in given:
        raise Invalid(
            "Flagger's call names no version: set metadata.version on the webhook",
            errors=[
                {
                    "loc": ["body", "metadata", "version"],
                    "msg": "required: the canary's version, which the check judges",
                }
            ],
        )
    body = {
        **given,
        "metadata": {
            "flagger": {
                "name": payload.name,
                "namespace": payload.namespace,
                "checksum": payload.checksum,
            }
        },
    }
    try:
        return CheckRequest.model_validate(body)
    except ValidationError as invalid:
        errors = [
            {**e, "loc": ["body", "metadata", *e["loc"]]}
            for e in validation_errors(invalid.errors())
        ]
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:5])
        raise Invalid(f"the request is invalid: {fields}", errors=errors) from None


def _problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def hook_answer(check: dict[str, Any], *, hook: str, succeeds_on: str) -> JSONResponse:
    """200 with the check when its conclusion is ``succeeds_on``; 403 problem+json with
    the check's state and reasons otherwise (Flagger reads any status above 202 as
    "not this time" and shows the body in its events)."""
    if check["conclusion"] == succeeds_on:
        return JSONResponse(check)
    reasons = list(check.get("reasons") or [])
    said = check["conclusion"] if check["state"] != "running" else "still judging"
    return _problem(
        403,
        f"Check is not {succeeds_on}",
        f"{hook}: check {check['id']} of version {check['version']!r} is {said}: "
        + "; ".join(reasons or ["no reason given"]),
        check=check["id"],
        state=check["state"],
        conclusion=check["conclusion"],
        decision=check.get("decision"),
        reasons=reasons,
    )


async def _answer_hook(gate: str, request: Request, *, hook: str, succeeds_on: str) -> JSONResponse:
    parts = DoorParts.of(request)
    raw = await request.body()
    principal = _authorize(
        parts.authenticator, request.headers.get("authorization"), _body_token(raw)
    )
    if "version" in request.query_params:
        raise Invalid(
            "the version comes from the webhook's metadata.version, not the query",
            errors=[{"loc": ["query", "version"], "msg": "set metadata.version instead"}],
        )
    payload = _payload(raw)
    wanted = check_request(payload)
    key = idempotency_key(payload)
    try:
        async with parts.db.session() as session:
            check, created = await checks.create_check(
                session,
                parts.catalog,
                parts.runner,
                parts.clock,
                gate_name=gate,
                request=wanted,
                idempotency_key=key,
                principal=principal,
            )
    except (SQLAlchemyError, OSError) as fault:
        # Flagger reads any status above 202 as "not this time" and asks again next
        # interval: a database outage is that, not a server fault with a traceback.
        log.warning("flagger webhook: database unavailable", gate=gate, error=type(fault).__name__)
        raise Unavailable("the database is not answering; ask again later") from None
    answer = hook_answer(check, hook=hook, succeeds_on=succeeds_on)
    log.info(
        "flagger webhook",
        hook=hook,
        gate=gate,
        canary=f"{payload.namespace}/{payload.name}",
        checksum=payload.checksum,
        phase=payload.phase,
        check=check["id"],
        created=created,
        status=answer.status_code,
    )
    return answer


def _route(path: str, *, hook: str, succeeds_on: str, summary: str) -> Callable[..., Any]:
    @router.post(
        path,
        summary=summary,
        responses={
            200: {"description": f"the canary revision's check is final {succeeds_on}"},
            401: {"description": "no token, or not a valid one"},
            403: {"description": f"not {succeeds_on} (yet); the check's state and reasons"},
            404: {"description": "unknown gate"},
            409: {"description": "this revision's check was started with other values"},
            422: {"description": "not Flagger's payload, or no metadata.version"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": FlaggerWebhook.model_json_schema()}},
            }
        },
        name=f"flagger_{hook.replace('-', '_')}",
    )
    async def answer(gate: str, request: Request) -> JSONResponse:
        return await _answer_hook(gate, request, hook=hook, succeeds_on=succeeds_on)

    return answer


confirm_promotion = _route(
    "/flagger/{gate}",
    hook="confirm-promotion",
    succeeds_on=GO,
    summary="Flagger confirm-promotion hook: 200 only when the canary's check is final go",
)
rollback = _route(
    "/flagger/{gate}/rollback",
    hook="rollback",
    succeeds_on=ROLLBACK,
    summary="Flagger rollback hook: 200 only when the canary's check ended in rollback",
)


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
) -> Principal:
    if not authorization and token:
        authorization = f"Bearer {token}"
    principal = authenticator.authenticate(authorization)
    require(principal, "pipeline", action="starting a check")
    return principal
