"""Flagger's webhooks through HTTP, about the canary revision: one check per revision
(namespace, name and checksum), judged with the canary's own version.

Flagger reads 200-202 as success and anything else as "not this time"
(fluxcd/flagger ``pkg/controller/webhook.go``): ``confirm-promotion`` holds the promotion
until it succeeds, ``rollback`` rolls the canary back when it succeeds.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.exc import OperationalError

from tests.app.conftest import TOKENS, Service
from tests.app.integrations.canary_support import VersionBench
from tests.app.integrations.canary_support import bench as bench  # the fixture
from tests.app.integrations.canary_support import gates_dir as gates_dir  # the fixture
from tests.support import REPO

PROMOTE = "/api/v1/integrations/flagger/canary"
ROLLBACK = "/api/v1/integrations/flagger/canary/rollback"


def payload(
    checksum: str = "85d557f47b",
    *,
    phase: str = "Progressing",
    **metadata: str,
) -> dict[str, Any]:
    """What Flagger POSTs (``CanaryWebhookPayload``), as in its webhook docs."""
    return {
        "name": "portal",
        "namespace": "prod",
        "phase": phase,
        "checksum": checksum,
        "metadata": {"version": "2.0", **metadata},
    }


def versions(bench: Any) -> VersionBench:
    assert isinstance(bench, VersionBench)
    return bench


async def checks(service: Service) -> list[dict[str, Any]]:
    response = await service.get("/api/v1/checks")
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def call(service: Service, path: str, body: Any, role: str = "pipeline") -> Any:
    return await service.post(path, role, json=body)


async def test_the_canary_is_judged_by_its_own_version_not_the_fleet(service: Service) -> None:
    versions(service.bench).by_version["2.0"] = 0.90  # the canary breaches; the fleet is fine
    for _ in range(2):
        await service.advance(10)
    fleet = (await service.get("/api/v1/gates/canary/decision")).json()
    assert fleet["decision"] == "go", fleet

    first = await call(service, PROMOTE, payload())
    assert first.status_code == 403, first.text
    assert first.headers["content-type"] == "application/problem+json"
    problem = first.json()
    assert problem["state"] == "running"
    assert problem["conclusion"] == "running"
    assert "still judging" in problem["detail"]
    check_id = problem["check"]
    assert (await call(service, ROLLBACK, payload())).status_code == 403

    await service.samples_reach(check_id, 1)
    await service.advance(10)
    final = await service.final(check_id)
    assert (final["state"], final["decision"]) == ("final", "rollback")
    assert final["version"] == "2.0"
    assert 'availability{version=~"2.0"}' in versions(service.bench).queries

    promote = await call(service, PROMOTE, payload(phase="WaitingPromotion"))
    assert promote.status_code == 403, promote.text
    assert promote.json()["conclusion"] == "rollback"
    rollback = await call(service, ROLLBACK, payload())
    assert rollback.status_code == 200, rollback.text
    assert rollback.json()["id"] == check_id
    assert rollback.json()["conclusion"] == "rollback"
    assert len(await checks(service)) == 1


async def test_a_healthy_canary_is_promoted_once_its_check_is_final_go(service: Service) -> None:
    versions(service.bench).by_version["2.1"] = 1.0
    body = payload(version="2.1")
    first = await call(service, PROMOTE, body)
    assert first.status_code == 403
    check_id = first.json()["check"]
    await service.samples_reach(check_id, 1)
    steady = await call(service, PROMOTE, body)
    assert steady.status_code == 403
    assert "steady 1/2" in steady.json()["reasons"]

    await service.advance(10)
    assert (await service.final(check_id))["decision"] == "go"
    promoted = await call(service, PROMOTE, body)
    assert promoted.status_code == 200, promoted.text
    check = promoted.json()
    assert (check["id"], check["state"], check["decision"]) == (check_id, "final", "go")
    assert (await call(service, ROLLBACK, body)).status_code == 403


async def test_a_check_that_times_out_neither_promotes_nor_rolls_back(service: Service) -> None:
    versions(service.bench).by_version["2.2"] = 0.97  # fails go, never breaches
    first = await call(service, PROMOTE, payload(version="2.2"))
    check_id = first.json()["check"]
    await service.samples_reach(check_id, 1)
    for _ in range(7):
        await service.advance(10)
    final = await service.final(check_id)
    assert (final["state"], final["decision"]) == ("final", "no_go")
    promote = await call(service, PROMOTE, payload(version="2.2"))
    assert promote.status_code == 403
    assert promote.json()["conclusion"] == "no_go"
    assert (await call(service, ROLLBACK, payload(version="2.2"))).status_code == 403


async def test_one_check_per_revision_and_a_new_checksum_starts_another(service: Service) -> None:
    answers = [
        await call(service, PROMOTE, payload("aaaa1111")),
        await call(service, ROLLBACK, payload("aaaa1111", phase="Waiting")),
        await call(service, PROMOTE, payload("aaaa1111", phase="WaitingPromotion")),
    ]
    ids = {a.json()["check"] for a in answers}
    assert len(ids) == 1, [a.text for a in answers]
    assert len(await checks(service)) == 1

    other = await call(service, PROMOTE, payload("bbbb2222"))
    assert other.json()["check"] not in ids
    listed = await checks(service)
    assert len(listed) == 2
    assert {c["metadata"]["flagger"]["checksum"] for c in listed} == {"aaaa1111", "bbbb2222"}

    # Another Canary with the same checksum is another revision.
    elsewhere = await call(service, PROMOTE, {**payload("aaaa1111"), "namespace": "staging"})
    assert elsewhere.json()["check"] not in ids
    assert len(await checks(service)) == 3


async def test_the_check_takes_version_environment_and_stage_from_metadata(
    service: Service,
) -> None:
    response = await call(
        service, PROMOTE, payload(version="3.1.4-rc.1", environment="prod", stage="canary")
    )
    check_id = response.json()["check"]
    check = await service.check(check_id)
    assert (check["version"], check["environment"], check["stage"]) == (
        "3.1.4-rc.1",
        "prod",
        "canary",
    )
    assert check["metadata"] == {
        "flagger": {"name": "portal", "namespace": "prod", "checksum": "85d557f47b"}
    }


async def test_the_same_revision_with_another_version_is_a_conflict(service: Service) -> None:
    assert (await call(service, PROMOTE, payload(version="2.0"))).status_code == 403
    changed = await call(service, PROMOTE, payload(version="2.9"))
    assert changed.status_code == 409
    assert changed.headers["content-type"] == "application/problem+json"
    assert len(await checks(service)) == 1


@pytest.mark.parametrize("path", [PROMOTE, ROLLBACK])
async def test_without_a_version_the_answer_is_422_and_nothing_is_stored(
    service: Service, path: str
) -> None:
    body = payload()
    del body["metadata"]["version"]
    response = await call(service, path, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["loc"] for e in response.json()["errors"]] == [["body", "metadata", "version"]]
    no_metadata = {k: v for k, v in payload().items() if k != "metadata"}
    assert (await call(service, path, no_metadata)).status_code == 422
    assert await checks(service) == []


async def test_a_version_in_the_query_is_refused_not_ignored(service: Service) -> None:
    response = await call(service, f"{PROMOTE}?version=2.0", payload())
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "version"]
    assert await checks(service) == []


@pytest.mark.parametrize(
    ("version", "loc"),
    [
        ("1.0|2.0", ["body", "metadata", "version"]),
        (" 2.0", ["body", "metadata", "version"]),
        ("x" * 129, ["body", "metadata", "version"]),
    ],
)
async def test_a_version_outside_the_rule_is_422_naming_it(
    service: Service, version: str, loc: list[str]
) -> None:
    response = await call(service, PROMOTE, payload(version=version))
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["errors"]] == [loc]
    assert await checks(service) == []


MALFORMED: list[Any] = [
    {},
    [1, 2],
    "portal",
    None,
    {"name": "portal", "namespace": "prod", "metadata": {"version": "2.0"}},  # no checksum
    {**payload(), "checksum": ""},
    {**payload(), "checksum": "a/b"},
    {**payload(), "checksum": "c" * 65},
    {**payload(), "name": "Portal"},
    {**payload(), "name": "a/b"},
    {**payload(), "name": "n" * 254},
    {**payload(), "namespace": "prod:x"},
    {**payload(), "namespace": 3},
    {**payload(), "phase": "x\u0000"},
    {**payload(), "metadata": {"version": 2}},
    {**payload(), "metadata": ["version", "2.0"]},
]


@pytest.mark.parametrize("body", MALFORMED)
@pytest.mark.parametrize("path", [PROMOTE, ROLLBACK])
async def test_a_body_that_is_not_flaggers_is_422_and_stores_nothing(
    service: Service, path: str, body: Any
) -> None:
    response = await call(service, path, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in response.text
    assert await checks(service) == []


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"", b"[" * 100_000])
async def test_bytes_that_are_not_json_are_4xx_never_5xx(service: Service, content: bytes) -> None:
    response = await service.post(
        PROMOTE, "pipeline", content=content, headers={"Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert await checks(service) == []


async def test_an_unknown_gate_is_404_and_stores_nothing(service: Service) -> None:
    response = await call(service, "/api/v1/integrations/flagger/nope", payload())
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]
    assert await checks(service) == []


@pytest.mark.parametrize("path", [PROMOTE, ROLLBACK])
async def test_the_token_may_come_in_metadata_and_is_never_kept_or_shown(
    service: Service, path: str
) -> None:
    token = TOKENS["pipeline"]
    response = await service.client.post(path, json=payload(token=token))
    assert response.status_code == 403, response.text
    check = await service.check(response.json()["check"])
    assert token not in response.text
    assert token not in str(check)
    events = await service.get(f"/api/v1/checks/{check['id']}/events")
    assert token not in events.text


@pytest.mark.parametrize(
    ("metadata", "headers"),
    [
        ({}, {}),
        ({"token": "not-the-token"}, {}),
        ({}, {"Authorization": "Bearer not-the-token"}),
    ],
    ids=["no token", "wrong token in metadata", "wrong bearer header"],
)
@pytest.mark.parametrize("path", [PROMOTE, ROLLBACK])
async def test_no_or_a_wrong_token_is_401_and_stores_nothing(
    service: Service, path: str, metadata: dict[str, str], headers: dict[str, str]
) -> None:
    response = await service.client.post(path, json=payload(**metadata), headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "not-the-token" not in response.text
    assert await checks(service) == []


async def test_the_caller_is_known_before_the_body_is_judged(service: Service) -> None:
    garbage = await service.client.post(
        PROMOTE, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert garbage.status_code == 401
    no_version = await service.client.post(PROMOTE, json={"name": "portal"})
    assert no_version.status_code == 401


async def test_a_viewer_may_not_start_a_check_through_flagger(service: Service) -> None:
    response = await call(service, PROMOTE, payload(), role="viewer")
    assert response.status_code == 403
    assert response.json()["title"] != "Check is not go"
    in_metadata = await service.client.post(PROMOTE, json=payload(token=TOKENS["viewer"]))
    assert in_metadata.status_code == 403
    assert await checks(service) == []


async def test_a_running_checks_expired_decision_reads_stale(service: Service) -> None:
    versions(service.bench).by_version["2.0"] = 1.0
    first = await call(service, PROMOTE, payload())
    check_id = first.json()["check"]
    await service.samples_reach(check_id, 1)
    await service.quiet()  # every loop asleep: the check's first sample is stored
    service.probe("p").hang()  # the next samples never finish
    await service.clock.advance(45)  # past max(3 x 10s, 10s) since the last evaluation
    answer = await call(service, PROMOTE, payload())
    assert answer.status_code == 403
    reasons = answer.json()["reasons"]
    assert reasons[0].startswith("stale since"), reasons
    service.probe("p").release()


async def test_a_database_outage_is_503_not_a_server_fault(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr("app.checks.service.create_check", unreachable)
    response = await call(service, PROMOTE, payload())
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "INSERT" not in response.text


async def test_the_examples_hooks_promote_a_healthy_canary(service: Service) -> None:
    """``examples/integrations/flagger-canary.yaml`` as Flagger would call it (its gate
    renamed to this suite's, its token to a real one)."""
    with (REPO / "examples" / "integrations" / "flagger-canary.yaml").open() as handle:
        [canary] = [d for d in yaml.safe_load_all(handle) if d]
    hooks = {h["type"]: h for h in canary["spec"]["analysis"]["webhooks"]}
    meta = canary["metadata"]

    async def flagger_calls(kind: str) -> Any:
        hook = hooks[kind]
        path = urlsplit(hook["url"]).path.replace("/flagger/portal", "/flagger/canary")
        body = {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "phase": "Progressing",
            "checksum": "7c9d6f5b8",
            "metadata": {**hook["metadata"], "token": TOKENS["pipeline"]},
        }
        return await service.client.post(path, json=body)

    versions(service.bench).by_version[hooks["confirm-promotion"]["metadata"]["version"]] = 1.0
    assert (await flagger_calls("rollback")).status_code == 403
    held = await flagger_calls("confirm-promotion")
    assert held.status_code == 403
    check_id = held.json()["check"]
    await service.samples_reach(check_id, 1)
    await service.advance(10)
    assert (await service.final(check_id))["decision"] == "go"
    assert (await flagger_calls("confirm-promotion")).status_code == 200
    assert (await flagger_calls("rollback")).status_code == 403
    assert len(await checks(service)) == 1
