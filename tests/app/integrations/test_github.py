"""The GitHub door through HTTP, against a local fake of GitHub's API: a protection rule
is approved or rejected by gonogo's decision about that release."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from app.core.clock import ManualClock
from app.core.db import CALLBACK_DELIVERED, CALLBACK_FAILED
from tests.app.fakes import ProbeBench
from tests.app.integrations.conftest import (
    PUBLIC_URL,
    SHA,
    WEBHOOK_SECRET,
    Forges,
    forges_service,
    protection_rule,
)
from tests.app.integrations.forge_fakes import FakeGitHub, FakeGitLab, foreign_host


async def _delivered(forges: Forges, count: int = 1) -> None:
    """GitHub has the review and gonogo has recorded it as delivered."""
    await forges.advance_until(lambda: len(forges.github.reviews) >= count)
    await forges.settled(count)


async def test_a_go_approves_the_deployment_with_reasons_and_a_link(forges: Forges) -> None:
    response = await forges.github_hook(protection_rule(forges.github.url))
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "accepted" and answer["new"] is True
    check = await forges.service.check(answer["check"])
    assert (check["gate"], check["version"], check["environment"]) == (
        "portal",
        SHA,
        "production",
    )

    await _delivered(forges)
    final = await forges.service.check(answer["check"])
    assert final["decision"] == "go"
    review = forges.github.reviews[0]
    assert review.path == "/repos/caresync/portal/actions/runs/4242/deployment_protection_rule"
    assert review.body["environment_name"] == "production"
    assert review.body["state"] == "approved"
    assert "gonogo: go" in review.body["comment"]
    assert f"{PUBLIC_URL}/api/v1/checks/{answer['check']}" in review.body["comment"]
    assert forges.github.token_requests == 1
    [row] = await forges.callbacks()
    assert (row.state, row.attempts) == (CALLBACK_DELIVERED, 1)


async def test_a_rollback_rejects_the_deployment_with_the_reasons(forges: Forges) -> None:
    forges.service.bench.latest("p").answer = 0.90
    response = await forges.github_hook(protection_rule(forges.github.url))
    assert response.status_code == 202
    await _delivered(forges)
    body = forges.github.reviews[0].body
    assert body["state"] == "rejected"
    assert "gonogo: rollback" in body["comment"]
    assert "availability" in body["comment"] and "< 95%" in body["comment"]
    assert len(body["comment"]) <= 1000


@pytest.mark.parametrize("end", ["cancel", "override"])
async def test_a_cancelled_or_overridden_check_is_reported_as_rejected(
    forges: Forges, end: str
) -> None:
    forges.service.bench.latest("p").answer = 0.97  # fail: the check keeps running
    response = await forges.github_hook(protection_rule(forges.github.url))
    check_id = response.json()["check"]
    if end == "cancel":
        ended = await forges.service.post(
            f"/api/v1/checks/{check_id}/cancel", "pipeline", json={"reason": "release pulled"}
        )
    else:
        ended = await forges.service.post(
            f"/api/v1/checks/{check_id}/decision",
            "approver",
            json={"decision": "no_go", "reason": "change freeze"},
        )
    assert ended.status_code == 200, ended.text
    await _delivered(forges)
    body = forges.github.reviews[0].body
    assert body["state"] == "rejected"
    expected = "release pulled" if end == "cancel" else "change freeze"
    assert expected in body["comment"]


async def test_a_replayed_delivery_starts_nothing_new(forges: Forges) -> None:
    payload = protection_rule(forges.github.url)
    first = await forges.github_hook(payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    again = await forges.github_hook(payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["check"] == first.json()["check"]
    assert again.json()["new"] is False
    assert len(await forges.checks()) == 1
    await _delivered(forges)
    await forges.clock.advance(60)
    assert len(forges.github.reviews) == 1
    assert len(await forges.callbacks()) == 1


@pytest.mark.parametrize(
    "signature",
    [None, "", "sha256=" + "0" * 64, "sha1=abc", "sha256=not-hex"],
    ids=["missing", "empty", "wrong", "sha1", "garbage"],
)
async def test_a_bad_signature_is_401_and_stores_nothing(
    forges: Forges, signature: str | None
) -> None:
    body = json.dumps(protection_rule(forges.github.url)).encode()
    if signature is None:
        response = await forges.service.client.post(
            "/api/v1/integrations/github",
            content=body,
            headers={"X-GitHub-Event": "deployment_protection_rule", "X-GitHub-Delivery": "d-1"},
        )
    else:
        response = await forges.github_hook(body, signature=signature)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert WEBHOOK_SECRET not in response.text
    assert await forges.checks() == []
    assert await forges.callbacks() == []


async def test_a_signature_made_with_another_secret_is_401(forges: Forges) -> None:
    response = await forges.github_hook(
        protection_rule(forges.github.url), secret="another-secret-0000"
    )
    assert response.status_code == 401
    assert await forges.checks() == []


async def test_a_signature_is_checked_before_the_body_is_read(forges: Forges) -> None:
    response = await forges.github_hook(b"{not json", signature="sha256=" + "1" * 64)
    assert response.status_code == 401


async def test_ping_and_other_actions_are_acknowledged_without_effect(forges: Forges) -> None:
    ping = await forges.github_hook(
        {"zen": "Keep it logically awesome.", "hook_id": 1}, event="ping"
    )
    assert ping.status_code == 200 and ping.json()["status"] == "ignored"
    other = protection_rule(forges.github.url)
    other["action"] = "completed"
    answer = await forges.github_hook(other)
    assert answer.status_code == 200 and answer.json()["status"] == "ignored"
    assert await forges.checks() == []


@pytest.mark.parametrize(
    ("repository", "environment"),
    [("caresync/portal", "qa"), ("someone/else", "production")],
)
async def test_an_unknown_repository_or_environment_is_404_and_stores_nothing(
    forges: Forges, repository: str, environment: str
) -> None:
    payload = protection_rule(forges.github.url, environment=environment)
    payload["repository"]["full_name"] = repository
    response = await forges.github_hook(payload)
    assert response.status_code == 404
    assert environment in response.json()["detail"]
    assert await forges.checks() == []
    assert await forges.callbacks() == []


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"action": "requested"}', b'{"action": "requested", "environment": 3}'],
)
async def test_a_malformed_payload_is_422(forges: Forges, body: bytes) -> None:
    response = await forges.github_hook(body)
    assert response.status_code == 422
    assert response.json()["errors"]
    assert await forges.checks() == []


async def test_no_version_is_422(forges: Forges) -> None:
    response = await forges.github_hook(protection_rule(forges.github.url, sha=None))
    assert response.status_code == 422
    assert "deployment.sha" in response.json()["detail"]
    assert await forges.checks() == []


async def test_a_version_taken_from_the_ref_drops_refs_heads(forges: Forges) -> None:
    payload = protection_rule(forges.github.url, environment="staging", ref="refs/tags/v1.4.3")
    response = await forges.github_hook(payload)
    assert response.status_code == 202, response.text
    check = await forges.service.check(response.json()["check"])
    assert (check["version"], check["stage"]) == ("v1.4.3", "canary")


async def test_a_ref_no_check_may_carry_is_422_naming_the_field(forges: Forges) -> None:
    payload = protection_rule(forges.github.url, environment="staging", ref='main"} or vector(1)')
    response = await forges.github_hook(payload)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "deployment", "ref"]


async def test_a_callback_on_a_foreign_host_is_refused_and_no_token_is_sent(
    forges: Forges,
) -> None:
    async with foreign_host() as (foreign, seen):
        payload = protection_rule(
            forges.github.url,
            callback=f"{foreign}/repos/caresync/portal/actions/runs/1/deployment_protection_rule",
        )
        with capture_logs() as logs:
            response = await forges.github_hook(payload)
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "deployment_callback_url"]
        assert any("refused" in entry["event"] for entry in logs)
        assert await forges.checks() == []
        assert seen == []
        assert forges.github.token_requests == 0


async def test_a_callback_answering_5xx_is_retried_and_delivered_once(forges: Forges) -> None:
    forges.github.review_statuses = [502, 503, 204]
    response = await forges.github_hook(protection_rule(forges.github.url))
    assert response.status_code == 202
    await _delivered(forges)
    assert forges.github.review_attempts == 3
    await forges.clock.advance(600)
    assert len(forges.github.reviews) == 1
    [row] = await forges.callbacks()
    assert (row.state, row.attempts) == (CALLBACK_DELIVERED, 3)


async def test_a_rate_limited_callback_is_retried_not_given_up(forges: Forges) -> None:
    forges.github.review_statuses = [403, 204]  # a secondary rate limit, with Retry-After
    response = await forges.github_hook(protection_rule(forges.github.url))
    assert response.status_code == 202
    await _delivered(forges)
    assert forges.github.review_attempts == 2
    [row] = await forges.callbacks()
    assert (row.state, row.attempts) == (CALLBACK_DELIVERED, 2)


async def test_a_422_from_github_is_logged_and_not_retried(forges: Forges) -> None:
    forges.github.review_statuses = [422]
    with capture_logs() as logs:
        response = await forges.github_hook(protection_rule(forges.github.url))
        assert response.status_code == 202

        async def failed() -> bool:
            rows = await forges.callbacks()
            return bool(rows) and rows[0].state == CALLBACK_FAILED

        await forges.advance_until(lambda: forges.github.review_attempts >= 1)
        await forges.service.until(failed)
    [row] = await forges.callbacks()
    assert row.last_error is not None and "422" in row.last_error
    assert any(e["event"] == "door callback refused; giving up" for e in logs)
    await forges.clock.advance(3600)
    assert forges.github.review_attempts == 1


async def test_an_expired_installation_token_is_refreshed(forges: Forges) -> None:
    forges.github.token_lifetime = forges.github.token_lifetime / 60  # one minute
    first = await forges.github_hook(protection_rule(forges.github.url, run=1))
    assert first.status_code == 202
    await _delivered(forges)
    await forges.clock.advance(120)  # the token has expired
    second = await forges.github_hook(protection_rule(forges.github.url, run=2))
    assert second.status_code == 202
    await _delivered(forges, 2)
    assert forges.github.token_requests == 2
    assert forges.github.review_attempts == 2  # renewed before use, not after a 401
    assert forges.github.reviews[0].token != forges.github.reviews[1].token


async def test_a_revoked_installation_token_is_replaced_on_401(forges: Forges) -> None:
    await forges.github_hook(protection_rule(forges.github.url, run=1))
    await _delivered(forges)
    forges.github.revoked.add(forges.github.reviews[0].token)
    await forges.github_hook(protection_rule(forges.github.url, run=2))
    await _delivered(forges, 2)
    assert forges.github.token_requests == 2
    [first, second] = await forges.callbacks()
    assert (first.state, second.state) == (CALLBACK_DELIVERED, CALLBACK_DELIVERED)


async def test_a_pending_callback_is_delivered_after_a_restart(
    forge_env: None,
    database_url: str,
    gates_dir: Path,
    clock: ManualClock,
    tmp_path: Path,
    fake_github: FakeGitHub,
    fake_gitlab: FakeGitLab,
) -> None:
    fake_github.review_statuses = [503]
    bench = ProbeBench()
    async with forges_service(
        database_url, gates_dir, clock, bench, tmp_path, fake_github, fake_gitlab
    ) as first:
        response = await first.github_hook(protection_rule(fake_github.url))
        assert response.status_code == 202
        await first.advance_until(lambda: fake_github.review_attempts >= 1)
    assert fake_github.reviews == []

    fake_github.review_statuses = []  # GitHub is back
    async with forges_service(
        database_url, gates_dir, clock, ProbeBench(), tmp_path, fake_github, fake_gitlab
    ) as second:
        await second.advance_until(lambda: len(fake_github.reviews) >= 1)
        await second.settled(1)
        await clock.advance(600)
        assert len(fake_github.reviews) == 1
        assert fake_github.reviews[0].body["state"] == "approved"
        [row] = await second.callbacks()
        assert row.state == CALLBACK_DELIVERED


async def test_a_rule_naming_a_gate_that_does_not_exist_is_404(forges: Forges) -> None:
    response = await forges.github_hook(protection_rule(forges.github.url, environment="dr"))
    assert response.status_code == 404
    assert "retired" in response.json()["detail"]
    assert await forges.checks() == []
    assert await forges.callbacks() == []


async def test_a_delivery_id_replayed_with_another_body_is_409(forges: Forges) -> None:
    delivery = "8d3a1d6e-cc78-11e3-81ab-4c9367dc0958"
    first = await forges.github_hook(protection_rule(forges.github.url), delivery=delivery)
    other = await forges.github_hook(
        protection_rule(forges.github.url, sha="0" * 40), delivery=delivery
    )
    assert (first.status_code, other.status_code) == (202, 409)
    assert len(await forges.checks()) == 1
    assert len(await forges.callbacks()) == 1
