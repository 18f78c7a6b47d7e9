"""The GitLab door through HTTP, against a local fake of GitLab's deployments API: a
blocked deployment is approved or rejected by gonogo's decision about that release."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.db import CALLBACK_DELIVERED, CALLBACK_FAILED
from tests.app.conftest import Service
from tests.app.integrations.conftest import (
    GITLAB_API_TOKEN,
    GITLAB_HOOK_TOKEN,
    PUBLIC_URL,
    Forges,
    deployment_hook,
)
from tests.app.integrations.forge_fakes import gitlab_deployment


async def _approved(forges: Forges, count: int = 1) -> None:
    await forges.advance_until(lambda: len(forges.gitlab.approvals) >= count)
    await forges.settled(count)


async def test_a_go_approves_the_blocked_deployment(forges: Forges) -> None:
    response = await forges.gitlab_hook(deployment_hook())
    assert response.status_code == 202, response.text
    check = await forges.service.check(response.json()["check"])
    assert (check["gate"], check["version"], check["environment"]) == (
        "portal",
        "7638417d",
        "production",
    )
    await _approved(forges)
    path, body = forges.gitlab.approvals[0]
    assert path == "/api/v4/projects/30/deployments/107/approval"
    assert body["status"] == "approved"
    assert f"{PUBLIC_URL}/api/v1/checks/{check['id']}" in body["comment"]


async def test_a_rollback_rejects_the_blocked_deployment(forges: Forges) -> None:
    forges.service.bench.latest("p").answer = 0.90
    response = await forges.gitlab_hook(deployment_hook())
    assert response.status_code == 202
    await _approved(forges)
    body = forges.gitlab.approvals[0][1]
    assert body["status"] == "rejected"
    assert "gonogo: rollback" in body["comment"]
    assert GITLAB_API_TOKEN not in body["comment"]


@pytest.mark.parametrize("token", [None, "", "wrong-token-00000000", GITLAB_HOOK_TOKEN + "x"])
async def test_a_bad_token_is_401_and_stores_nothing(forges: Forges, token: str | None) -> None:
    response = await forges.gitlab_hook(deployment_hook(), token=token)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert await forges.checks() == []
    assert await forges.callbacks() == []


@pytest.mark.parametrize("status", ["running", "success", "failed", "canceled"])
async def test_a_deployment_not_blocked_is_acknowledged_without_effect(
    forges: Forges, status: str
) -> None:
    response = await forges.gitlab_hook(deployment_hook(status=status))
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert await forges.checks() == []


async def test_another_event_is_acknowledged_without_effect(forges: Forges) -> None:
    response = await forges.gitlab_hook({"object_kind": "push"}, event="Push Hook")
    assert response.status_code == 200
    assert await forges.checks() == []


async def test_the_same_blocked_deployment_twice_starts_one_check(forges: Forges) -> None:
    first = await forges.gitlab_hook(deployment_hook())
    again = await forges.gitlab_hook(deployment_hook())
    assert again.json()["check"] == first.json()["check"]
    assert len(await forges.checks()) == 1
    await _approved(forges)
    await forges.clock.advance(60)
    assert len(forges.gitlab.approvals) == 1


@pytest.mark.parametrize(
    ("project", "environment"), [("caresync/portal", "qa"), ("other/project", "production")]
)
async def test_an_unknown_project_or_environment_is_404(
    forges: Forges, project: str, environment: str
) -> None:
    response = await forges.gitlab_hook(deployment_hook(project=project, environment=environment))
    assert response.status_code == 404
    assert await forges.checks() == []
    assert await forges.callbacks() == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"object_kind": "deployment", "status": "blocked"}',
        b'{"object_kind": "deployment", "status": "blocked", "deployment_id": -1,'
        b' "environment": "production", "project": {"id": 30, "path_with_namespace": "a/b"}}',
    ],
)
async def test_a_malformed_hook_is_422(forges: Forges, body: bytes) -> None:
    response = await forges.gitlab_hook(body)
    assert response.status_code == 422
    assert await forges.checks() == []


async def test_no_version_is_422(forges: Forges) -> None:
    response = await forges.gitlab_hook(deployment_hook(short_sha=None))
    assert response.status_code == 422
    assert "short_sha" in response.json()["detail"]
    assert await forges.checks() == []


async def test_an_approval_answering_5xx_is_retried_and_made_once(forges: Forges) -> None:
    forges.gitlab.statuses = [500, 201]
    await forges.gitlab_hook(deployment_hook())
    await _approved(forges)
    assert forges.gitlab.attempts == 2
    [row] = await forges.callbacks()
    assert (row.state, row.attempts) == (CALLBACK_DELIVERED, 2)


@pytest.mark.parametrize(
    ("record", "why"),
    [
        (gitlab_deployment(sha="0badc0de" + "0" * 32), "commit 0badc0de"),
        (gitlab_deployment(environment="staging"), "environment staging"),
    ],
)
async def test_a_hook_naming_another_release_than_gitlab_records_is_rejected(
    forges: Forges, record: dict[str, Any], why: str
) -> None:
    forges.gitlab.deployments[(30, 107)] = record
    response = await forges.gitlab_hook(deployment_hook())
    assert response.status_code == 202
    check = await forges.service.check(response.json()["check"])
    await _approved(forges)
    assert check["version"] == "7638417d"
    body = forges.gitlab.approvals[0][1]
    assert body["status"] == "rejected"
    assert why in body["comment"]


async def test_a_deployment_no_longer_blocked_is_not_answered(forges: Forges) -> None:
    forges.gitlab.deployments[(30, 107)] = gitlab_deployment(status="canceled")
    await forges.gitlab_hook(deployment_hook())
    await forges.advance_until(lambda: forges.gitlab.reads >= 1)
    await forges.settled(1, CALLBACK_FAILED)
    assert forges.gitlab.approvals == []
    [row] = await forges.callbacks()
    assert "no longer blocked" in (row.last_error or "")


async def test_a_deployment_gitlab_does_not_know_is_given_up_not_approved(forges: Forges) -> None:
    forges.gitlab.deployments.clear()
    await forges.gitlab_hook(deployment_hook())
    await forges.advance_until(lambda: forges.gitlab.reads >= 1)
    await forges.settled(1, CALLBACK_FAILED)
    assert forges.gitlab.approvals == []


async def test_the_token_is_checked_before_the_body_is_read(forges: Forges) -> None:
    response = await forges.gitlab_hook(b"{not json", token="wrong-token-00000000")
    assert response.status_code == 401


@pytest.mark.parametrize("door", ["github", "gitlab"])
async def test_a_door_not_configured_answers_401_to_everyone(service: Service, door: str) -> None:
    response = await service.post(
        f"/api/v1/integrations/{door}", "admin", content=b"{}", headers={"X-Gitlab-Token": "x"}
    )
    assert response.status_code == 401
    assert "not configured" in response.json()["detail"]
