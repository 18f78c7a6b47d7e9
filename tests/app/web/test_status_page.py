"""The status page and /status.json, through HTTP, from in-memory state."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

from gates.engine import Decision, Steady, Verdict, judge
from gates.model import Gate
from probes.base import Measurement, ProbeConfig
from tests.app.web.status_fakes import (
    T0,
    FakeCatalog,
    FakeChecks,
    FakeLoaded,
    FakeScheduler,
    make_gate,
    status_app,
    verdict,
)


def client_for(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gonogo")  # type: ignore[arg-type]


def three_gates() -> tuple[FakeCatalog, FakeScheduler]:
    catalog = FakeCatalog(
        [
            FakeLoaded(make_gate("portal")),
            FakeLoaded(make_gate("billing")),
            FakeLoaded(make_gate("records")),
        ]
    )
    scheduler = FakeScheduler(
        {
            "portal": verdict("portal", Decision.GO, 0.9995),
            "billing": verdict("billing", Decision.NO_GO, 0.998, passes=1),
            "records": verdict("records", Decision.ROLLBACK, 0.91, passes=0),
        }
    )
    return catalog, scheduler


CHECK = {
    "id": "c-42",
    "gate": "portal",
    "version": "2.4.1",
    "environment": "production",
    "stage": "blue-green",
    "created_at": T0,
    "latest": {"decision": "no_go", "reasons": ["missing sign-off: uat"]},
    "missing_signoffs": ["uat", "clinical-safety"],
}


async def test_status_json_has_every_gate_with_decision_label_and_criteria() -> None:
    catalog, scheduler = three_gates()
    async with client_for(status_app(catalog, scheduler, FakeChecks([CHECK]))) as client:
        response = await client.get("/status.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["generated_at"] == "2026-11-24T10:00:00Z"
    assert body["summary"] == {"go": 1, "no_go": 1, "rollback": 1}
    gates = {g["name"]: g for g in body["gates"]}
    assert [g["name"] for g in body["gates"]] == ["records", "billing", "portal"]
    assert (gates["portal"]["decision"], gates["portal"]["label"], gates["portal"]["colour"]) == (
        "go",
        "GO",
        "Green",
    )
    assert (gates["billing"]["label"], gates["billing"]["colour"]) == ("NO GO", "Yellow")
    assert (gates["records"]["label"], gates["records"]["colour"]) == ("ROLLBACK", "Red")
    assert gates["billing"]["steady"]["text"] == "steady 1/3"
    availability = gates["records"]["criteria"][0]
    assert availability == {
        "name": "availability",
        "probe": "prom",
        "outcome": "breach",
        "value": 0.91,
        "value_text": "91 %",
        "go": "> 99.9%",
        "rollback": "< 95%",
        "reason": "91 % < 95 % (rollback: < 95%)",
        "dry_run": False,
        "baseline": None,
        "baseline_text": None,
    }
    latency = gates["portal"]["criteria"][1]
    assert (latency["value_text"], latency["rollback"]) == ("350 ms", None)
    [check] = body["checks"]
    assert check["id"] == "c-42"
    assert check["created_at"] == "2026-11-24T10:00:00Z"
    assert check["decision"] == "no_go"
    assert check["missing_signoffs"] == ["uat", "clinical-safety"]


async def test_a_gate_not_sampled_yet_is_no_go_with_its_criteria_pending() -> None:
    catalog = FakeCatalog([FakeLoaded(make_gate("fresh"))])
    async with client_for(status_app(catalog, FakeScheduler())) as client:
        [gate] = (await client.get("/status.json")).json()["gates"]
    assert gate["decision"] == "no_go"
    assert gate["reasons"] == ["no sample yet"]
    assert gate["evaluated_at"] is None
    assert [c["outcome"] for c in gate["criteria"]] == ["pending", "pending"]
    assert gate["criteria"][0]["go"] == "> 99.9%"
    assert gate["criteria"][0]["rollback"] == "< 95%"


class Landmarks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


async def test_page_shows_each_decision_as_text_in_an_accessible_layout() -> None:
    catalog, scheduler = three_gates()
    async with client_for(status_app(catalog, scheduler, FakeChecks([CHECK]))) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    cards = re.findall(r'<article class="gate decision-(\w+)" data-gate="([\w-]+)"', html)
    assert sorted(cards) == [("go", "portal"), ("no_go", "billing"), ("rollback", "records")]
    for label in ("GO", "NO GO", "ROLLBACK"):
        assert f'<span class="decision-text">{label}</span>' in html
    assert "steady 1/3" in html
    assert "91 %" in html and "91 % &lt; 95 % (rollback: &lt; 95%)" in html
    assert "uat, clinical-safety" in html and "2.4.1" in html

    parser = Landmarks()
    parser.feed(html)
    tags = parser.tags
    assert ("html", {"lang": "en"}) in tags
    assert any(tag == "main" for tag, _ in tags)
    assert any(attrs.get("role") == "banner" for _, attrs in tags)
    assert any(attrs.get("role") == "contentinfo" for _, attrs in tags)
    assert any(attrs.get("aria-live") == "polite" for _, attrs in tags)
    assert any(attrs.get("name") == "viewport" for tag, attrs in tags if tag == "meta")
    # No CDN: every script and stylesheet comes from this server.
    for tag, attrs in tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            if tag in {"script", "link"} and value:
                assert value.startswith("/"), value


async def test_gate_text_is_escaped() -> None:
    hostile = make_gate("evil", description='<script>alert("x")</script>')
    async with client_for(
        status_app(FakeCatalog([FakeLoaded(hostile)]), FakeScheduler())
    ) as client:
        html = (await client.get("/")).text
    assert '<script>alert("x")</script>' not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


async def test_empty_service_says_so() -> None:
    async with client_for(status_app(FakeCatalog([]), FakeScheduler())) as client:
        html = (await client.get("/")).text
        body = (await client.get("/status.json")).json()
    assert "No gates are defined" in html and "No checks are running." in html
    assert body["gates"] == [] and body["checks"] == []


@pytest.mark.parametrize(
    ("name", "media_type", "marker"),
    [("status.css", "text/css", "--rollback"), ("status.js", "text/javascript", "/status.json")],
)
async def test_static_files_are_served(name: str, media_type: str, marker: str) -> None:
    async with client_for(status_app(FakeCatalog([]), FakeScheduler())) as client:
        response = await client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert marker in response.text


@pytest.mark.parametrize(
    "path",
    ["/static/nope.js", "/static/..%2Fstatus_page.py", "/static/%2E%2E%2F%2E%2E%2Fpyproject.toml"],
)
async def test_only_known_static_files_are_served(path: str) -> None:
    async with client_for(status_app(FakeCatalog([]), FakeScheduler())) as client:
        response = await client.get(path)
    assert response.status_code == 404
    assert "import" not in response.text


async def test_unknown_check_decision_falls_back_to_no_go() -> None:
    odd = {"id": 7, "gate": "portal", "version": "1", "created_at": "2026-11-24T10:00:00Z"}
    async with client_for(
        status_app(FakeCatalog([]), FakeScheduler(), FakeChecks([odd]))
    ) as client:
        [check] = (await client.get("/status.json")).json()["checks"]
    assert check["decision"] == "no_go"
    assert check["id"] == "7"
    assert check["missing_signoffs"] == []


async def test_the_unit_key_decides_how_the_status_page_shows_a_value() -> None:
    gate = Gate.model_validate(
        {
            "name": "counted",
            "probes": {"prom": ProbeConfig(type="prometheus")},
            "criteria": [
                {"name": "restarts", "probe": "prom", "query": "r", "go": "< 5", "unit": "count"},
                {"name": "ratio", "probe": "prom", "query": "a", "go": "> 99%", "unit": "ratio"},
                {"name": "plain", "probe": "prom", "query": "p", "go": "< 5"},
            ],
        }
    )
    results = tuple(
        judge(c, Measurement.ok(value, T0))
        for c, value in zip(gate.criteria, (12345678.0, 0.9997, 12345678.0), strict=True)
    )
    decided = Verdict("counted", Decision.NO_GO, T0, ("x",), Steady(0, 3), results)
    catalog, scheduler = FakeCatalog([FakeLoaded(gate)]), FakeScheduler({"counted": decided})
    async with client_for(status_app(catalog, scheduler)) as client:
        [shown] = (await client.get("/status.json")).json()["gates"]
    texts = {c["name"]: (c["value_text"], c["value"]) for c in shown["criteria"]}
    assert texts == {
        "restarts": ("12345678", 12345678.0),
        "ratio": ("0.9997", 0.9997),
        "plain": ("1.23457e+07", 12345678.0),
    }
