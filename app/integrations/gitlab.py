"""The GitLab front door: deployment approvals.

A project's webhook with "Deployment events" sends a Deployment Hook
(``X-Gitlab-Event: Deployment Hook``, ``object_kind: deployment``) on each status change
of a deployment. One with ``status: blocked`` is waiting for approval on a protected
environment: gonogo checks ``X-Gitlab-Token`` (the webhook's secret token, compared in
constant time), maps the project and environment to a gate (``forges.py``), starts a
check for the release (``short_sha``, or ``ref`` when the rule says so) keyed by the
project and deployment id, and answers 202. Every other status is acknowledged and does
nothing. When the check ends, the outbox approves or rejects the deployment through
``POST /projects/:id/deployments/:deployment_id/approval`` (``status``, ``comment``)
with the configured token, sent only to the configured GitLab URL.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping
from typing import Any

import httpx
import structlog
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.core.db import CheckRow
from app.core.problems import Invalid, NotFound, Unauthorized
from app.integrations.callbacks import GiveUp, RetryLater, approved, bounded, worth_retrying
from app.integrations.doors import (
    ACCEPTED,
    IGNORED,
    DoorParts,
    DoorRequest,
    check_value,
    invalid_payload,
    open_check,
)
from app.integrations.forges import GitLabDoor

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])

DOOR = "gitlab"
EVENT = "Deployment Hook"
BLOCKED = "blocked"
REQUEST_TIMEOUT_S = 10.0
MAX_ID = 2**63 - 1


class _Project(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int = Field(ge=1, le=MAX_ID)
    path_with_namespace: str


class DeploymentHook(BaseModel):
    """The fields of a Deployment Hook gonogo reads."""

    model_config = ConfigDict(extra="ignore")

    object_kind: str
    status: str
    deployment_id: int = Field(ge=1, le=MAX_ID)
    environment: str
    project: _Project
    short_sha: str | None = None
    ref: str | None = None
    commit_url: str | None = None


def token_valid(expected: bytes, header: str | None) -> bool:
    if not header:
        return False
    return hmac.compare_digest(expected, header.encode("utf-8", "replace"))


def release_version(hook: DeploymentHook, version_from: str) -> tuple[str, str]:
    value = hook.ref if version_from == "ref" else hook.short_sha
    if value:
        return value, version_from
    raise Invalid(
        f"no version: the payload has no {version_from}",
        errors=[{"loc": ["body", version_from], "msg": "the release's version is required"}],
    )


@router.post(
    "/gitlab",
    status_code=202,
    summary="GitLab Deployment Hook: a blocked deployment starts a check for the release",
    responses={
        200: {"description": "an event or status gonogo does not act on"},
        401: {"description": "no or a wrong X-Gitlab-Token, or the door is not configured"},
        404: {"description": "no rule for this project and environment, or no such gate"},
        422: {"description": "a malformed payload, or no version"},
    },
)
async def gitlab_webhook(request: Request) -> Any:
    parts = DoorParts.of(request)
    door = parts.doors.gitlab
    if door is None:
        # Nobody can be authenticated without the secret: 401, like a wrong signature.
        raise Unauthorized(
            "the GitLab door is not configured (GONOGO_INTEGRATIONS_FILE): no secret token"
            " to check X-Gitlab-Token against"
        )
    if not token_valid(door.webhook_token, request.headers.get("x-gitlab-token")):
        raise Unauthorized("X-Gitlab-Token is missing or wrong")
    event = request.headers.get("x-gitlab-event", "")
    if event != EVENT:
        return IGNORED.answer(f"event {event[:64]!r} needs no answer")
    try:
        hook = DeploymentHook.model_validate_json(await request.body())
    except ValidationError as invalid:
        raise invalid_payload(invalid) from None
    if hook.object_kind != "deployment":
        raise Invalid(
            "a Deployment Hook must have object_kind deployment",
            errors=[{"loc": ["body", "object_kind"], "msg": "expected 'deployment'"}],
        )
    if hook.status != BLOCKED:
        return IGNORED.answer(f"status {hook.status[:64]!r} needs no answer")
    project = hook.project.path_with_namespace
    rule = door.rule(project, hook.project.id, hook.environment)
    if rule is None:
        raise NotFound(
            f"no rule for project {project[:255]!r} environment {hook.environment[:255]!r}"
            " in GONOGO_INTEGRATIONS_FILE"
        )
    version, source = release_version(hook, rule.version_from)
    key = f"{hook.project.id}:{hook.deployment_id}"
    opened = await open_check(
        parts,
        DoorRequest(
            door=DOOR,
            key=key,
            gate=rule.gate,
            version=check_value("version", version, source=source),
            environment=check_value("environment", rule.environment, source="environment"),
            stage=rule.stage,
            vars=dict(rule.vars),
            metadata={
                "door": DOOR,
                "project": project,
                "environment": hook.environment,
                "deployment_id": hook.deployment_id,
                "short_sha": hook.short_sha,
                "ref": hook.ref,
            },
            target={"project_id": hook.project.id, "deployment_id": hook.deployment_id},
        ),
    )
    log.info(
        "gitlab deployment blocked",
        project=project,
        environment=hook.environment,
        deployment=hook.deployment_id,
        check=opened.check_id,
        new=opened.created,
    )
    return ACCEPTED.answer("check started" if opened.created else "deployment seen before", opened)


def release_mismatch(deployment: Mapping[str, Any], check: CheckRow) -> str | None:
    """Why GitLab's own record of the deployment is not the release the check judged, or
    None when it is: the commit (``sha``, of which a ``short_sha`` version is a prefix,
    or ``ref``) and the environment's name must both match. The hook's body named them;
    the approval trusts only what GitLab's API says."""
    sha, ref = deployment.get("sha"), deployment.get("ref")
    version = check.version
    commit_matches = (isinstance(sha, str) and len(version) >= 7 and sha.startswith(version)) or (
        isinstance(ref, str) and ref == version
    )
    if not commit_matches:
        shown = sha[:12] if isinstance(sha, str) else "none"
        return f"the deployment is of commit {shown} (ref {str(ref)[:64]}), not {version}"
    environment = deployment.get("environment")
    name = environment.get("name") if isinstance(environment, dict) else None
    expected = check.meta.get("environment") if isinstance(check.meta, dict) else None
    if expected is not None and name != expected:
        return f"the deployment is to environment {str(name)[:64]}, not {str(expected)[:64]}"
    return None


class GitLabApprovals:
    """The outbox's GitLab sender: approves or rejects a blocked deployment.

    Before approving, it reads the deployment from GitLab's API (``GET
    /projects/:id/deployments/:deployment_id``): one that is no longer ``blocked`` needs
    no answer, and one whose commit or environment is not the release the check judged is
    rejected with the reason, whatever the hook's body said."""

    def __init__(self, door: GitLabDoor, *, client: httpx.AsyncClient | None = None) -> None:
        self._door = door
        self._client = client or httpx.AsyncClient(follow_redirects=False)
        self._owns_client = client is None

    async def send(self, target: Mapping[str, Any], check: CheckRow, comment: str) -> None:
        project, deployment = int(target["project_id"]), int(target["deployment_id"])
        url = f"{self._door.config.url}/api/v4/projects/{project}/deployments/{deployment}"
        status = "approved" if approved(check) else "rejected"
        if status == "approved":
            record = await self._call("GET", url, "reading the deployment")
            if record.get("status") != BLOCKED:
                raise GiveUp(
                    f"the deployment is {str(record.get('status'))[:32]}, no longer blocked"
                )
            mismatch = release_mismatch(record, check)
            if mismatch is not None:
                log.warning("gitlab deployment is not the judged release", check=check.id)
                status, comment = (
                    "rejected",
                    bounded(f"gonogo rejects it: {mismatch}. {comment}", 1000),
                )
        await self._call(
            "POST",
            f"{url}/approval",
            "deployment approval",
            json={"status": status, "comment": comment},
        )

    async def _call(self, method: str, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"PRIVATE-TOKEN": self._door.token, "User-Agent": "gonogo"}
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                response = await self._client.request(method, url, headers=headers, **kwargs)
        except TimeoutError:
            raise RetryLater(f"{what}: no answer in time") from None
        except httpx.HTTPError as error:
            raise RetryLater(f"{what}: {type(error).__name__}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if 200 <= response.status_code < 300:
            return answer if isinstance(answer, dict) else {}
        message = str(answer.get("message", "") if isinstance(answer, dict) else "")
        text = bounded(f"{what}: HTTP {response.status_code} {message}".strip(), 300)
        if worth_retrying(response.status_code, response.headers):
            raise RetryLater(text)
        raise GiveUp(text)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
