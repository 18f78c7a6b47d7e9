"""History through the real service: a check started, sampled and finished by gonogo
itself shows on its own page and in the recent checks; the gate's stored continuous
samples draw its timeline."""

from __future__ import annotations

import re

from tests.app.conftest import Service


async def test_a_finished_check_has_its_page_and_is_listed_with_the_gate_timeline(
    service: Service,
) -> None:
    check = await service.start_check("portal", version="3.1.4", metadata={"ticket": "CHG-secret"})
    await service.samples_reach(check["id"], 1)
    running = (await service.client.get(f"/checks/{check['id']}.json")).json()
    assert running["state"] == "running" and running["time_left"] == "1m"
    await service.advance(10)
    final = await service.final(check["id"])
    assert final["decision"] == "go"

    page = await service.client.get(f"/checks/{check['id']}")  # no token: public, as is /
    assert page.status_code == 200
    assert "3.1.4" in page.text and "CHG-secret" not in page.text
    data = (await service.client.get(f"/checks/{check['id']}.json")).json()
    assert (data["decision"], data["decided_by"], data["time_left"]) == ("go", "engine", None)
    assert [s["decision"] for s in data["samples"]] == ["go", "no_go"]
    # Its criteria in their unit (go: "> 99%"), the raw value kept beside.
    [availability] = data["criteria"]
    assert (availability["value"], availability["value_text"]) == (1.0, "100 %")
    assert '<td class="value">100 %</td>' in page.text
    assert availability["reason"].startswith("100 % > 99 % ")
    kinds = [e["kind"] for e in data["events"]]
    assert (kinds[0], kinds[-1]) == ("created", "final")

    status = (await service.client.get("/")).text
    recent = re.search(r'<section id="recent".*?</section>', status, re.S)
    assert recent is not None and f'href="/checks/{check["id"]}"' in recent.group(0)
    assert "CHG-secret" not in status
    history = re.search(r'data-history="portal".*?</section>', status, re.S)
    assert history is not None
    assert re.findall(r'<rect class="span span-(\w+)"', history.group(0))[0] == "gap"
    assert "<polyline" in history.group(0)
