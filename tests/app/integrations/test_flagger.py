"""The Flagger webhook through HTTP: 200 only on go, reasons otherwise."""

from __future__ import annotations

import httpx
import pytest

from gates.engine import Decision
from tests.app.web.status_fakes import (
    FakeCatalog,
    FakeLoaded,
    FakeScheduler,
    make_gate,
    status_app,
    verdict,
)

FLAGGER_BODY = {
    "name": "portal",
    "namespace": "portal",
    "phase": "Progressing",
    "metadata": {"type": "rollout"},
}


TOKEN = "flagger-viewer-secret-0001"


def client(scheduler: FakeScheduler, *, tokens: str = "") -> httpx.AsyncClient:
    app = status_app(FakeCatalog([FakeLoaded(make_gate("portal"))]), scheduler, tokens=tokens)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gonogo")


async def test_go_answers_200_with_the_decision() -> None:
    scheduler = FakeScheduler({"portal": verdict("portal", Decision.GO, 0.9995)})
    async with client(scheduler) as http:
        response = await http.post("/api/v1/integrations/flagger/portal", json=FLAGGER_BODY)
    assert response.status_code == 200
    assert response.json()["decision"] == "go"


@pytest.mark.parametrize(
    ("decision", "availability", "reason"),
    [
        (Decision.NO_GO, 0.998, "availability: 0.998 <= 0.999 (go: > 99.9%)"),
        (Decision.ROLLBACK, 0.91, "availability: 0.91 < 0.95 (rollback: < 95%)"),
    ],
)
async def test_anything_but_go_is_403_problem_with_reasons(
    decision: Decision, availability: float, reason: str
) -> None:
    scheduler = FakeScheduler({"portal": verdict("portal", decision, availability, passes=0)})
    async with client(scheduler) as http:
        response = await http.post("/api/v1/integrations/flagger/portal", json=FLAGGER_BODY)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 403
    assert problem["title"] and problem["type"]
    assert problem["decision"] == decision.value
    assert reason in problem["reasons"]
    assert reason in problem["detail"]
    assert decision.value in problem["detail"]


async def test_a_gate_not_sampled_yet_is_not_go() -> None:
    async with client(FakeScheduler()) as http:
        response = await http.post("/api/v1/integrations/flagger/portal", json=FLAGGER_BODY)
    assert response.status_code == 403
    assert response.json()["reasons"] == ["no sample yet"]


async def test_unknown_gate_is_404_problem() -> None:
    async with client(FakeScheduler()) as http:
        response = await http.post("/api/v1/integrations/flagger/nope", json=FLAGGER_BODY)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "nope" in response.json()["detail"]


@pytest.mark.parametrize(
    "body", [{}, {"name": "portal"}, {"name": "portal", "namespace": 3}, [1, 2]]
)
async def test_a_body_that_is_not_flaggers_is_422_naming_the_field(body: object) -> None:
    scheduler = FakeScheduler({"portal": verdict("portal", Decision.GO, 0.9995)})
    async with client(scheduler) as http:
        response = await http.post("/api/v1/integrations/flagger/portal", json=body)
    assert response.status_code == 422
    assert "namespace" in response.text or "body" in response.text


async def test_extra_fields_from_newer_flagger_versions_are_accepted() -> None:
    scheduler = FakeScheduler({"portal": verdict("portal", Decision.GO, 0.9995)})
    async with client(scheduler) as http:
        response = await http.post(
            "/api/v1/integrations/flagger/portal", json={**FLAGGER_BODY, "checksum": "abc"}
        )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("metadata", "headers"),
    [
        ({"type": "rollout", "token": TOKEN}, {}),
        ({"type": "rollout"}, {"Authorization": f"Bearer {TOKEN}"}),
    ],
    ids=["token in metadata", "bearer header"],
)
async def test_with_tokens_set_the_caller_shows_a_token(
    metadata: dict[str, str], headers: dict[str, str]
) -> None:
    scheduler = FakeScheduler({"portal": verdict("portal", Decision.GO, 0.9995)})
    async with client(scheduler, tokens=f"flagger:viewer:{TOKEN}") as http:
        response = await http.post(
            "/api/v1/integrations/flagger/portal",
            json={**FLAGGER_BODY, "metadata": metadata},
            headers=headers,
        )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "metadata", [{"type": "rollout"}, {"type": "rollout", "token": "not-the-token"}]
)
async def test_with_tokens_set_no_or_a_wrong_token_is_401_and_never_go(
    metadata: dict[str, str],
) -> None:
    scheduler = FakeScheduler({"portal": verdict("portal", Decision.GO, 0.9995)})
    async with client(scheduler, tokens=f"flagger:viewer:{TOKEN}") as http:
        response = await http.post(
            "/api/v1/integrations/flagger/portal", json={**FLAGGER_BODY, "metadata": metadata}
        )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "not-the-token" not in response.text
    assert TOKEN not in response.text
