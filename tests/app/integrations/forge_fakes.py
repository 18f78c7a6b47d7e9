"""Local fakes of GitHub's and GitLab's REST APIs, speaking their documented formats.

GitHub (docs "Generating a JSON Web Token (JWT) for a GitHub App", "Create an installation
access token for an app", "Review custom deployment protection rules for a workflow run"):
- ``POST /app/installations/{id}/access_tokens`` with ``Authorization: Bearer <JWT>``
  (RS256, ``iss`` the App id, ``exp`` at most 10 minutes after ``iat``) answers 201
  ``{"token", "expires_at", "permissions", "repository_selection"}``, 401
  ``{"message": "A JSON web token could not be decoded", ...}`` for a bad JWT;
- ``POST /repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`` with the
  installation token answers 204 with no body, 401 ``{"message": "Bad credentials"}`` for an
  unknown, revoked or expired token, and whatever the test scripts (5xx, 422 with GitHub's
  ``{"message", "documentation_url"}`` error body).

GitLab (``doc/api/deployments.md`` "Get a specific deployment" and "Approve or reject a
blocked deployment"), both with ``PRIVATE-TOKEN``, 401 ``{"message": "401 Unauthorized"}``
without a valid one:
- ``GET /api/v4/projects/:id/deployments/:deployment_id`` answers 200 with the deployment
  (``id``, ``iid``, ``ref``, ``sha``, ``status``, ``environment`` {``id``, ``name``}, ...),
  404 ``{"message": "404 Not found"}`` for one it does not know;
- ``POST /api/v4/projects/:id/deployments/:deployment_id/approval`` answers 201 with the
  approval.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.core.clock import ManualClock
from tests.fakes.server import serve_aiohttp

APP_ID = "424242"
DOCS = "https://docs.github.com/rest/actions/workflow-runs"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Review:
    path: str
    body: dict[str, Any]
    token: str


@dataclass
class FakeGitHub:
    """GitHub's App-token and deployment-review endpoints; times are the test's clock."""

    key: rsa.RSAPrivateKey
    clock: ManualClock
    token_lifetime: timedelta = timedelta(hours=1)
    # Statuses the review endpoint answers in turn (the last repeats); 204 when empty.
    review_statuses: list[int] = field(default_factory=list)
    tokens: dict[str, datetime] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    token_requests: int = 0
    reviews: list[Review] = field(default_factory=list)
    review_attempts: int = 0
    url: str = ""

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_post(
            "/app/installations/{installation}/access_tokens", self._access_token
        )
        application.router.add_post(
            "/repos/{owner}/{repo}/actions/runs/{run}/deployment_protection_rule", self._review
        )
        return application

    def _bearer(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return value if scheme.lower() in ("bearer", "token") else ""

    async def _access_token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        try:
            claims = jwt.decode(
                self._bearer(request),
                self.key.public_key(),
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            return _github_error(401, "A JSON web token could not be decoded")
        now = self.clock.now().timestamp()
        if (
            claims.get("iss") != APP_ID
            or not claims["iat"] <= now < claims["exp"]
            or claims["exp"] - claims["iat"] > 660
        ):
            return _github_error(401, "'Expiration time' claim ('exp') is too far in the future")
        token = "ghs_" + secrets.token_hex(18)
        expires = self.clock.now() + self.token_lifetime
        self.tokens[token] = expires
        body = {
            "token": token,
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": {"actions": "read", "deployments": "write"},
            "repository_selection": "selected",
        }
        return web.json_response(body, status=201)

    async def _review(self, request: web.Request) -> web.Response:
        self.review_attempts += 1
        token = self._bearer(request)
        expires = self.tokens.get(token)
        if expires is None or token in self.revoked or self.clock.now() >= expires:
            return _github_error(401, "Bad credentials")
        body = await request.json()
        if self.review_statuses:
            status = (
                self.review_statuses.pop(0)
                if len(self.review_statuses) > 1
                else self.review_statuses[0]
            )
        else:
            status = 204
        if status == 204:
            self.reviews.append(Review(request.path, body, token))
            return web.Response(status=204)
        if status == 422:
            return _github_error(422, "No pending deployment requests to approve or reject")
        if status == 403:  # GitHub's secondary rate limit
            limited = _github_error(403, "You have exceeded a secondary rate limit")
            limited.headers["Retry-After"] = "60"
            return limited
        return _github_error(status, "Server Error")


def _github_error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message, "documentation_url": DOCS}, status=status)


def gitlab_deployment(
    *,
    deployment_id: int = 107,
    sha: str = "7638417d0d7e4c3b9a1f2e5d6c7b8a9f0e1d2c3b",
    ref: str = "main",
    status: str = "blocked",
    environment: str = "production",
) -> dict[str, Any]:
    """A deployment as GitLab's API answers it (the fields gonogo reads, and some more)."""
    return {
        "id": deployment_id,
        "iid": 12,
        "ref": ref,
        "sha": sha,
        "created_at": "2026-11-24T09:58:00.000Z",
        "updated_at": "2026-11-24T10:00:00.000Z",
        "status": status,
        "user": {"id": 3, "username": "release-bot", "name": "Release bot", "state": "active"},
        "environment": {"id": 9, "name": environment, "external_url": "https://portal.example"},
        "deployable": {"id": 796, "status": "success", "ref": ref, "name": "deploy"},
        "pending_approval_count": 1,
        "approvals": [],
    }


@dataclass
class FakeGitLab:
    token: str
    statuses: list[int] = field(default_factory=list)
    approvals: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    attempts: int = 0
    url: str = ""
    # GitLab's record of each deployment by (project id, deployment id).
    deployments: dict[tuple[int, int], dict[str, Any]] = field(
        default_factory=lambda: {(30, 107): gitlab_deployment()}
    )
    reads: int = 0

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_get(
            "/api/v4/projects/{project}/deployments/{deployment}", self._deployment
        )
        application.router.add_post(
            "/api/v4/projects/{project}/deployments/{deployment}/approval", self._approval
        )
        return application

    async def _deployment(self, request: web.Request) -> web.Response:
        self.reads += 1
        if not hmac.compare_digest(request.headers.get("PRIVATE-TOKEN", ""), self.token):
            return web.json_response({"message": "401 Unauthorized"}, status=401)
        key = (int(request.match_info["project"]), int(request.match_info["deployment"]))
        found = self.deployments.get(key)
        if found is None:
            return web.json_response({"message": "404 Not found"}, status=404)
        return web.json_response(found)

    async def _approval(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if not hmac.compare_digest(request.headers.get("PRIVATE-TOKEN", ""), self.token):
            return web.json_response({"message": "401 Unauthorized"}, status=401)
        status = (
            (self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0])
            if self.statuses
            else 201
        )
        if status >= 500:
            return web.json_response({"message": "500 Internal Server Error"}, status=status)
        body = json.loads(await request.text())
        self.approvals.append((request.path, body))
        approval = {
            "user": {"id": 7, "username": "gonogo-bot", "name": "gonogo", "state": "active"},
            "status": body["status"],
            "created_at": "2026-11-24T10:00:00.000Z",
            "comment": body.get("comment"),
        }
        return web.json_response(approval, status=201)


@asynccontextmanager
async def running(fake: FakeGitHub | FakeGitLab) -> AsyncIterator[str]:
    async with serve_aiohttp(fake.app()) as server:
        fake.url = server.url
        yield server.url


@asynccontextmanager
async def foreign_host() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A server on another host name (localhost, not 127.0.0.1) that records every request's
    headers: a token reaching it was sent to the wrong host."""
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(status=204)

    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", record)
    async with serve_aiohttp(application) as server:
        yield f"http://localhost:{server.port}", seen
