"""The GitHub and GitLab doors' fixtures: fakes of both forges on loopback, an
integrations file pointing at them, and the service started with it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from app.core.clock import ManualClock
from app.core.db import CALLBACK_DELIVERED, Database, DoorCallbackRow
from tests.app.conftest import Service, open_service
from tests.app.fakes import ProbeBench
from tests.app.integrations.forge_fakes import (
    APP_ID,
    FakeGitHub,
    FakeGitLab,
    github_signature,
    pem,
    rsa_key,
    running,
)

WEBHOOK_SECRET = "github-webhook-secret-0001"
GITLAB_HOOK_TOKEN = "gitlab-hook-token-0001"
GITLAB_API_TOKEN = "glpat-api-token-000000001"
PUBLIC_URL = "https://gonogo.example.org"
SHA = "7638417db6d59f3c431d3e1f261cc637155684cd"

_KEY: rsa.RSAPrivateKey | None = None


def app_key() -> rsa.RSAPrivateKey:
    """One RSA key for the whole run (making one takes a noticeable fraction of a second)."""
    global _KEY
    if _KEY is None:
        _KEY = rsa_key()
    return _KEY


def integrations_yaml(github_url: str, gitlab_url: str) -> str:
    return f"""\
github:
  app_id: {APP_ID}
  private_key_env: GONOGO_NOTIFY_GITHUB_APP_KEY
  webhook_secret_env: GONOGO_NOTIFY_GITHUB_WEBHOOK_SECRET
  api_url: {github_url}
  rules:
    - {{repository: caresync/portal, environment: production, gate: portal}}
    - repository: caresync/portal
      environment: staging
      gate: portal
      stage: canary
      version_from: ref
    - {{repository: caresync/portal, environment: dr, gate: retired}}
gitlab:
  url: {gitlab_url}
  token_env: GONOGO_NOTIFY_GITLAB_TOKEN
  webhook_token_env: GONOGO_NOTIFY_GITLAB_WEBHOOK_TOKEN
  rules:
    - {{project: caresync/portal, environment: production, gate: portal}}
"""


@pytest.fixture
def forge_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GONOGO_NOTIFY_GITHUB_APP_KEY", pem(app_key()))
    monkeypatch.setenv("GONOGO_NOTIFY_GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("GONOGO_NOTIFY_GITLAB_TOKEN", GITLAB_API_TOKEN)
    monkeypatch.setenv("GONOGO_NOTIFY_GITLAB_WEBHOOK_TOKEN", GITLAB_HOOK_TOKEN)


@dataclass
class Forges:
    """The service with both doors open, and the fakes they answer."""

    service: Service
    github: FakeGitHub
    gitlab: FakeGitLab
    clock: ManualClock

    async def until(self, condition: Callable[[], bool], *, seconds: float = 10.0) -> None:
        async def met() -> bool:
            return condition()

        await self.service.until(met, seconds=seconds)

    async def advance_until(
        self, condition: Callable[[], bool], *, step: float = 1.0, limit: float = 600.0
    ) -> None:
        """Move the clock ``step`` seconds at a time (at most ``limit``) until ``condition``."""
        moved = 0.0
        deadline = time.monotonic() + 20
        while not condition():
            if moved >= limit or time.monotonic() > deadline:
                pytest.fail(f"not met after {moved}s on the clock")
            await self.clock.advance(step)
            moved += step
            await asyncio.sleep(0.02)  # database writes run in threads

    async def github_hook(
        self,
        payload: dict[str, Any] | bytes,
        *,
        delivery: str | None = None,
        event: str = "deployment_protection_rule",
        secret: str = WEBHOOK_SECRET,
        signature: str | None = None,
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/044aadd",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "292430182",
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-Hub-Signature-256": (
                signature if signature is not None else github_signature(secret, body)
            ),
        }
        return await self.service.client.post(
            "/api/v1/integrations/github", content=body, headers=headers
        )

    async def gitlab_hook(
        self,
        payload: dict[str, Any] | bytes,
        *,
        token: str | None = GITLAB_HOOK_TOKEN,
        event: str = "Deployment Hook",
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "X-Gitlab-Event": event}
        if token is not None:
            headers["X-Gitlab-Token"] = token
        return await self.service.client.post(
            "/api/v1/integrations/gitlab", content=body, headers=headers
        )

    async def callbacks(self) -> list[DoorCallbackRow]:
        db = Database(self.service.database_url)
        try:
            async with db.session() as session:
                rows = await session.scalars(select(DoorCallbackRow).order_by(DoorCallbackRow.id))
                return list(rows.all())
        finally:
            await db.dispose()

    async def settled(self, count: int, state: str = CALLBACK_DELIVERED) -> None:
        """Wait until ``count`` callbacks are in ``state`` (written after the forge answered)."""

        async def reached() -> bool:
            return sum(1 for row in await self.callbacks() if row.state == state) >= count

        await self.service.until(reached)

    async def checks(self) -> list[dict[str, Any]]:
        response = await self.service.get("/api/v1/checks")
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


def protection_rule(
    api: str,
    *,
    environment: str = "production",
    sha: str | None = SHA,
    ref: str | None = "refs/heads/main",
    run: int = 4242,
    callback: str | None = None,
) -> dict[str, Any]:
    """A ``deployment_protection_rule`` webhook body, shaped as GitHub documents it."""
    deployment: dict[str, Any] = {
        "url": f"{api}/repos/caresync/portal/deployments/1",
        "id": 1,
        "node_id": "DE_kwDOJt2p2M5vqVQk",
        "task": "deploy",
        "original_environment": environment,
        "environment": environment,
        "description": None,
        "created_at": "2026-11-24T10:00:00Z",
        "updated_at": "2026-11-24T10:00:00Z",
        "statuses_url": f"{api}/repos/caresync/portal/deployments/1/statuses",
        "repository_url": f"{api}/repos/caresync/portal",
        "creator": {"login": "octocat", "id": 1, "type": "User"},
        "payload": {},
    }
    if sha is not None:
        deployment["sha"] = sha
    if ref is not None:
        deployment["ref"] = ref
    return {
        "action": "requested",
        "environment": environment,
        "event": "push",
        "deployment_callback_url": callback
        or f"{api}/repos/caresync/portal/actions/runs/{run}/deployment_protection_rule",
        "deployment": deployment,
        "pull_requests": [],
        "repository": {
            "id": 658227544,
            "node_id": "R_kgDOJzsZWA",
            "name": "portal",
            "full_name": "caresync/portal",
            "private": False,
            "owner": {"login": "caresync", "id": 21031067, "type": "Organization"},
        },
        "organization": {"login": "caresync", "id": 21031067},
        "installation": {"id": 39129914, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMzk="},
        "sender": {"login": "octocat", "id": 1, "type": "User"},
    }


def deployment_hook(
    *,
    status: str = "blocked",
    deployment_id: int = 107,
    environment: str = "production",
    short_sha: str | None = "7638417d",
    project: str = "caresync/portal",
) -> dict[str, Any]:
    """A Deployment Hook body, shaped as GitLab's webhook events page documents it."""
    body: dict[str, Any] = {
        "object_kind": "deployment",
        "status": status,
        "status_changed_at": "2026-11-24 10:00:00 +0000",
        "deployment_id": deployment_id,
        "deployable_id": 796,
        "deployable_url": "https://gitlab.example/caresync/portal/-/jobs/796",
        "environment": environment,
        "environment_tier": "production",
        "environment_slug": environment,
        "environment_external_url": "https://portal.example",
        "project": {
            "id": 30,
            "name": "portal",
            "web_url": "https://gitlab.example/caresync/portal",
            "namespace": "caresync",
            "path_with_namespace": project,
            "default_branch": "main",
        },
        "ref": "main",
        "commit_url": "https://gitlab.example/caresync/portal/-/commit/7638417d",
        "commit_title": "Release 1.4.3",
        "user": {"id": 1, "name": "Administrator", "username": "root"},
        "user_url": "https://gitlab.example/root",
    }
    if short_sha is not None:
        body["short_sha"] = short_sha
    return body


@asynccontextmanager
async def forges_service(
    database_url: str,
    gates_dir: Path,
    clock: ManualClock,
    bench: ProbeBench,
    tmp_path: Path,
    github: FakeGitHub,
    gitlab: FakeGitLab,
) -> AsyncIterator[Forges]:
    """The service with an integrations file pointing at ``github`` and ``gitlab``."""
    path = tmp_path / "integrations.yaml"
    path.write_text(integrations_yaml(github.url, gitlab.url))
    app, lifespan = await open_service(
        database_url, gates_dir, clock, bench, integrations_file=path, public_url=PUBLIC_URL
    )
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gonogo.test") as client:
            yield Forges(Service(app, client, clock, bench, database_url), github, gitlab, clock)
    finally:
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def fake_github(clock: ManualClock) -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub(app_key(), clock)
    async with running(fake):
        yield fake


@pytest.fixture
async def fake_gitlab() -> AsyncIterator[FakeGitLab]:
    fake = FakeGitLab(GITLAB_API_TOKEN)
    async with running(fake):
        yield fake


@pytest.fixture
async def forges(
    forge_env: None,
    database_url: str,
    gates_dir: Path,
    clock: ManualClock,
    bench: ProbeBench,
    tmp_path: Path,
    fake_github: FakeGitHub,
    fake_gitlab: FakeGitLab,
) -> AsyncIterator[Forges]:
    async with forges_service(
        database_url, gates_dir, clock, bench, tmp_path, fake_github, fake_gitlab
    ) as opened:
        yield opened
