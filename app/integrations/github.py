"""The GitHub front door: a GitHub App's custom deployment protection rule.

GitHub sends the ``deployment_protection_rule`` webhook (``action: requested``) when a
workflow job reaches an environment protected by the App. gonogo checks the
``X-Hub-Signature-256`` HMAC of the raw body before reading anything in it, maps the
repository and environment to a gate (``forges.py``), starts a check for the release
(``deployment.sha``, or the ref when the rule says so) keyed by ``X-GitHub-Delivery``, and
answers 202 at once. When the check ends, the outbox calls the ``deployment_callback_url``
with ``{environment_name, state: approved|rejected, comment}`` as the App's installation.

Authentication: a JWT signed RS256 with the App's private key (``iat`` 60 s in the past,
``exp`` 9 minutes ahead, ``iss`` the App id) is exchanged at
``POST /app/installations/{id}/access_tokens`` for an installation token. Both are cached
until shortly before they expire; a 401 on the callback drops the cached token and tries
once more with a fresh one. Tokens go only to the configured API host: a callback URL
anywhere else is refused when the webhook arrives and again before sending.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import structlog
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from app.core.clock import Clock
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
from app.integrations.forges import GitHubDoor
from probes.timefmt import iso

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])

DOOR = "github"
EVENT = "deployment_protection_rule"
API_VERSION = "2022-11-28"
REQUEST_TIMEOUT_S = 10.0
# A cached credential is renewed this long before it expires.
JWT_LIFETIME = timedelta(minutes=9)
JWT_RENEW_BEFORE = timedelta(minutes=1)
TOKEN_RENEW_BEFORE = timedelta(minutes=5)
_CALLBACK_PATH = re.compile(r"^/repos/[^/]+/[^/]+/actions/runs/\d+/deployment_protection_rule$")
_DELIVERY = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class _Deployment(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sha: str | None = None
    ref: str | None = None


class _Repository(BaseModel):
    model_config = ConfigDict(extra="ignore")

    full_name: str


class _Installation(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int


class ProtectionRuleRequest(BaseModel):
    """The fields of the ``deployment_protection_rule`` webhook gonogo reads."""

    model_config = ConfigDict(extra="ignore")

    action: str
    environment: str
    event: str | None = None
    deployment_callback_url: str
    deployment: _Deployment | None = None
    # Payloads of Actions runs also carry the commit at the top level.
    sha: str | None = None
    ref: str | None = None
    repository: _Repository
    installation: _Installation


def signature_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is ``sha256=<hex HMAC-SHA256 of body>`` (compared in constant time)."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


def callback_allowed(api_url: str, url: str) -> bool:
    """Whether ``url`` is a deployment protection review URL on the configured API host."""
    base, target = urlsplit(api_url), urlsplit(url)
    if (target.scheme, target.hostname, target.port) != (base.scheme, base.hostname, base.port):
        return False
    if target.username or target.password or target.query or target.fragment:
        return False
    prefix = base.path.rstrip("/")
    if not target.path.startswith(prefix + "/"):
        return False
    return bool(_CALLBACK_PATH.match(target.path[len(prefix) :]))


def release_version(payload: ProtectionRuleRequest, version_from: str) -> tuple[str, str]:
    """The check's version and where it came from: the deployment's commit (the default),
    or its ref without ``refs/heads/`` or ``refs/tags/``; raises ``Invalid`` when absent."""
    deployment = payload.deployment or _Deployment()
    if version_from == "ref":
        ref = deployment.ref or payload.ref
        if ref:
            return re.sub(r"^refs/(heads|tags)/", "", ref), "deployment.ref"
        field = "deployment.ref"
    else:
        sha = deployment.sha or payload.sha
        if sha:
            return sha, "deployment.sha"
        field = "deployment.sha"
    raise Invalid(
        f"no version: the payload has no {field}",
        errors=[{"loc": ["body", *field.split(".")], "msg": "the release's version is required"}],
    )


@router.post(
    "/github",
    status_code=202,
    summary="GitHub App deployment protection rule: start a check for the release",
    responses={
        200: {"description": "an event gonogo does not act on (ping, other actions)"},
        401: {"description": "no or a wrong X-Hub-Signature-256, or the door is not configured"},
        404: {"description": "no rule for this repository and environment, or no such gate"},
        422: {"description": "a malformed payload, no version, or a foreign callback URL"},
    },
)
async def github_webhook(request: Request) -> Any:
    parts = DoorParts.of(request)
    door = parts.doors.github
    if door is None:
        # Nobody can be authenticated without the secret: 401, like a wrong signature.
        raise Unauthorized(
            "the GitHub door is not configured (GONOGO_INTEGRATIONS_FILE): no webhook secret"
            " to check X-Hub-Signature-256 against"
        )
    raw = await request.body()
    if not signature_valid(door.webhook_secret, raw, request.headers.get("x-hub-signature-256")):
        raise Unauthorized("X-Hub-Signature-256 is missing or does not match the body")
    event = request.headers.get("x-github-event", "")
    if event != EVENT:
        return IGNORED.answer(f"event {event[:64]!r} needs no answer")
    delivery = request.headers.get("x-github-delivery", "")
    if not _DELIVERY.match(delivery):
        raise Invalid(
            "bad X-GitHub-Delivery header",
            errors=[{"loc": ["header", "X-GitHub-Delivery"], "msg": "the delivery's GUID"}],
        )
    try:
        payload = ProtectionRuleRequest.model_validate_json(raw)
    except ValidationError as invalid:
        raise invalid_payload(invalid) from None
    if payload.action != "requested":
        return IGNORED.answer(f"action {payload.action[:64]!r} needs no answer")
    repository = payload.repository.full_name
    rule = door.rule(repository, payload.environment)
    if rule is None:
        raise NotFound(
            f"no rule for repository {repository[:255]!r} environment"
            f" {payload.environment[:255]!r} in GONOGO_INTEGRATIONS_FILE"
        )
    version, version_source = release_version(payload, rule.version_from)
    if not callback_allowed(door.config.api_url, payload.deployment_callback_url):
        log.warning(
            "github callback URL refused: not on the configured API host",
            repository=repository,
            host=urlsplit(payload.deployment_callback_url).hostname,
            api_url=door.config.api_url,
        )
        raise Invalid(
            "deployment_callback_url is not a review URL on the configured GitHub API host",
            errors=[
                {
                    "loc": ["body", "deployment_callback_url"],
                    "msg": f"must be under {door.config.api_url}/repos/",
                }
            ],
        )
    deployment = payload.deployment or _Deployment()
    opened = await open_check(
        parts,
        DoorRequest(
            door=DOOR,
            key=delivery,
            gate=rule.gate,
            version=check_value("version", version, source=version_source),
            environment=check_value("environment", rule.environment, source="environment"),
            stage=rule.stage,
            vars=dict(rule.vars),
            metadata={
                "door": DOOR,
                "repository": repository,
                "environment": payload.environment,
                "event": payload.event,
                "delivery": delivery,
                "sha": deployment.sha or payload.sha,
                "ref": deployment.ref or payload.ref,
            },
            target={
                "callback_url": payload.deployment_callback_url,
                "environment_name": payload.environment,
                "installation_id": payload.installation.id,
            },
        ),
    )
    log.info(
        "github protection rule",
        repository=repository,
        environment=payload.environment,
        delivery=delivery,
        check=opened.check_id,
        new=opened.created,
    )
    return ACCEPTED.answer("check started" if opened.created else "delivery seen before", opened)


@dataclass
class _Cached:
    value: str
    renew_at: datetime


class GitHubApp:
    """The App's credentials, cached, and the review call (the outbox's GitHub sender)."""

    def __init__(
        self, door: GitHubDoor, *, clock: Clock, client: httpx.AsyncClient | None = None
    ) -> None:
        self._door = door
        self._clock = clock
        self._client = client or httpx.AsyncClient(follow_redirects=False)
        self._owns_client = client is None
        self._jwt: _Cached | None = None
        self._tokens: dict[int, _Cached] = {}

    @property
    def api_url(self) -> str:
        return self._door.config.api_url

    def app_jwt(self) -> str:
        now = self._clock.now()
        if self._jwt is None or now >= self._jwt.renew_at:
            issued = now - timedelta(seconds=60)
            expires = now + JWT_LIFETIME
            claims = {
                "iat": int(issued.timestamp()),
                "exp": int(expires.timestamp()),
                "iss": self._door.config.app_id,
            }
            token = jwt.encode(claims, self._door.private_key, algorithm="RS256")
            self._jwt = _Cached(token, expires - JWT_RENEW_BEFORE)
        return self._jwt.value

    async def installation_token(self, installation_id: int) -> str:
        now = self._clock.now()
        cached = self._tokens.get(installation_id)
        if cached is not None and now < cached.renew_at:
            return cached.value
        url = f"{self.api_url}/app/installations/{installation_id}/access_tokens"
        response = await self._post(url, bearer=self.app_jwt(), body=None)
        if response.status_code == 401:
            self._jwt = None  # a clock step or a rotated key: sign a new one next time
            raise RetryLater(f"installation token: HTTP 401 {_message(response)}".strip())
        if response.status_code != 201:
            raise _failure("installation token", response)
        try:
            answer = response.json()
            token = str(answer["token"])
            expires_at = datetime.fromisoformat(str(answer["expires_at"]).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            raise RetryLater("installation token: the answer is not GitHub's JSON") from None
        self._tokens[installation_id] = _Cached(token, expires_at - TOKEN_RENEW_BEFORE)
        log.info(
            "github installation token issued",
            installation=installation_id,
            expires_at=iso(expires_at),
        )
        return token

    async def send(self, target: Mapping[str, Any], check: CheckRow, comment: str) -> None:
        url = str(target.get("callback_url", ""))
        if not callback_allowed(self.api_url, url):
            log.warning(
                "github callback URL refused: not on the configured API host",
                host=urlsplit(url).hostname,
                api_url=self.api_url,
            )
            raise GiveUp("the callback URL is not on the configured GitHub API host")
        installation = int(target["installation_id"])
        body = {
            "environment_name": str(target["environment_name"]),
            "state": "approved" if approved(check) else "rejected",
            "comment": comment,
        }
        for fresh in (False, True):
            token = await self.installation_token(installation)
            response = await self._post(url, bearer=token, body=body)
            if response.status_code == 401 and not fresh:
                self._tokens.pop(installation, None)  # revoked or expired early
                continue
            if 200 <= response.status_code < 300:
                return
            raise _failure("deployment review", response)

    async def _post(
        self, url: str, *, bearer: str, body: Mapping[str, Any] | None
    ) -> httpx.Response:
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {bearer}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "gonogo",
        }
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await self._client.post(url, json=body, headers=headers)
        except TimeoutError:
            raise RetryLater("no answer in time") from None
        except httpx.HTTPError as error:
            raise RetryLater(type(error).__name__) from None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _failure(what: str, response: httpx.Response) -> Exception:
    """``RetryLater`` for a refusal for now (``worth_retrying``), ``GiveUp`` for any other
    status, with GitHub's message."""
    text = bounded(f"{what}: HTTP {response.status_code} {_message(response)}".strip(), 300)
    if worth_retrying(response.status_code, response.headers):
        return RetryLater(text)
    return GiveUp(text)


def _message(response: httpx.Response) -> str:
    """The ``message`` of GitHub's error body, if it has one."""
    try:
        answer = response.json()
    except ValueError:
        return ""
    return bounded(str(answer.get("message", "")), 200) if isinstance(answer, dict) else ""
