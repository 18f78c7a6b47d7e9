"""Trying to make a real ``gonogo serve`` say ``go`` wrongly: crafted versions and vars
against a real Prometheus, an uncovered window, a flaky probe between breaches, a NaN
volume, a slow source, and a redefinition during a check; and the honest case, a healthy
release, still goes.

One server runs every scenario here, each on its own gate (1 s intervals), on SQLite.
The real Prometheus scrapes a target with a broken canary ``1.4.2`` beside busy healthy
versions (see ``tests/probes/test_quoting_prometheus_real.py``); every other source is a
scripted Prometheus query API whose answers the test decides by query text.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.app.cli.serve_support import (
    Answer,
    ScriptedPrometheus,
    Serve,
    serving,
    steady,
    wait_for,
)
from tests.probes.test_quoting_prometheus_real import ERROR_RATE

pytestmark = pytest.mark.prometheus

FINAL_SECONDS = 30.0

FLAGGER_CANARY = {"name": "w", "namespace": "p", "checksum": "r1", "metadata": {"version": "all"}}


def scripted_gate(name: str, url: str, **fields: Any) -> str:
    query = f'{name}{{version="${{version}}"}}'
    default = f'{{name: rate, probe: prom, query: \'{query}\', go: "< 1%", rollback: "> 5%"}}'
    criterion = fields.pop("criterion", default)
    settings = {"interval": "1s", "steady_for": 2, "rollback_after": 2, "timeout": "20s"}
    settings.update(fields)
    lines = [f"{key}: {value}" for key, value in settings.items()]
    return (
        "\n".join(
            [
                *lines,
                "vars: {version: all}",
                "probes:",
                f'  prom: {{type: prometheus, url: "{url}", timeout: 3, retries: 0}}',
                "criteria:",
                f"  - {criterion}",
            ]
        )
        + "\n"
    )


def crafted_gate(url: str) -> str:
    return (
        "interval: 1s\nsteady_for: 1\nrollback_after: 1\ntimeout: 4s\n"
        'vars: {version: ".+"}\n'
        f'probes:\n  prom: {{type: prometheus, url: "{url}", timeout: 3, retries: 0}}\n'
        "criteria:\n"
        f"  - name: error-rate\n    probe: prom\n    query: '{ERROR_RATE}'\n"
        '    go: "< 1%"\n    rollback: "> 5%"\n'
    )


@pytest.fixture(scope="module")
def source() -> Iterator[ScriptedPrometheus]:
    with ScriptedPrometheus().running() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    source: ScriptedPrometheus, real_prometheus: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Serve]:
    root = tmp_path_factory.mktemp("serve-trust")
    gates = root / "gates"
    gates.mkdir()
    url = source.url
    (gates / "healthy.yaml").write_text(scripted_gate("healthy", url))
    (gates / "flaky.yaml").write_text(scripted_gate("flaky", url, timeout="30s"))
    (gates / "slow.yaml").write_text(scripted_gate("slow", url, steady_for=1, timeout="5s"))
    (gates / "nanvol.yaml").write_text(
        scripted_gate(
            "nanvol",
            url,
            steady_for=1,
            timeout="5s",
            criterion="{name: rate, probe: prom, query: 'nanvol{version=\"${version}\"}',"
            ' go: "< 1%", min_volume: {query: \'volume{version="${version}"}\', at_least: 100}}',
        )
    )
    (gates / "window.yaml").write_text(
        "interval: 1s\nsteady_for: 1\ntimeout: 30s\n"
        f'probes:\n  health: {{type: http, url: "{url}/health", timeout: 2, retries: 0}}\n'
        "criteria:\n"
        '  - {name: availability, probe: health, metric: availability, window: 6s, go: "> 99%"}\n'
    )
    (gates / "crafted.yaml").write_text(crafted_gate(real_prometheus))
    for query in ("healthy", "nanvol"):
        for version in ("all", "1.0"):
            source.script(f'{query}{{version="{version}"}}', steady(0.001))
    for version in ("all", "1.0"):
        source.script(f'volume{{version="{version}"}}', steady(math.nan))
    with serving(gates, f"sqlite+aiosqlite:///{root / 'gonogo.db'}", root / "serve.log") as up:
        yield up


def sample_events(server: Serve, check_id: str) -> list[dict[str, Any]]:
    return [e for e in server.events(check_id) if e["kind"] == "sample"]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_healthy_release_goes(server: Serve) -> None:
    check = server.start_check("healthy", version="1.0")
    final = server.final(check["id"], FINAL_SECONDS)
    assert (final["state"], final["decision"]) == ("final", "go"), final
    assert final["gate_version"] == check["gate_version"]


CRAFTED = (".+", "1.4..", "1+4+2", "..4.2", "1.+")


def test_crafted_versions_against_a_real_prometheus_never_go(server: Serve) -> None:
    # All at once: each runs to its 4 s deadline.
    checks = {version: server.start_check("crafted", version=version) for version in CRAFTED}
    for version, check in checks.items():
        final = server.final(check["id"], FINAL_SECONDS)
        assert final["decision"] == "no_go", (version, final)
        assert any("timed out" in reason for reason in final["reasons"]), final["reasons"]
        assert all(e["data"]["decision"] != "go" for e in sample_events(server, check["id"]))


def test_the_canarys_own_version_rolls_back_against_a_real_prometheus(server: Serve) -> None:
    check = server.start_check("crafted", version="1.4.2")
    final = server.final(check["id"], FINAL_SECONDS)
    assert final["decision"] == "rollback", final


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"version": "1.4.1|1.4.2"}, ["body", "version"]),
        ({"version": '1.4.2"}[5m])) > 200 or vector(0) #'}, ["body", "version"]),
        ({"version": "1.4.2", "environment": 'prod"}'}, ["body", "environment"]),
        ({"version": "1.4.2", "vars": {"version2": "x"}}, ["body", "vars", "version2"]),
        ({"version": "1.4.2", "vars": {"window": "5m"}}, ["body", "vars", "window"]),
    ],
    ids=["alternation", "injection", "environment", "unused var", "reserved var"],
)
def test_crafted_values_are_refused_with_the_field_named(
    server: Serve, body: dict[str, Any], loc: list[str]
) -> None:
    response = server.call("POST", "/gates/crafted/checks", "pipeline", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any(error["loc"][: len(loc)] == loc for error in response.json()["errors"]), (
        response.json()
    )


def test_a_flaky_probe_between_breaches_rolls_back(
    server: Serve, source: ScriptedPrometheus
) -> None:
    # breach, error, breach, error, ...: the errors neither extend nor break the run.
    source.script('flaky{version="2.0"}', lambda call: Answer(0.5 if call % 2 == 0 else None))
    check = server.start_check("flaky", version="2.0")
    final = server.final(check["id"], FINAL_SECONDS)
    assert final["decision"] == "rollback", final
    reasons = [e["data"]["reasons"][0] for e in sample_events(server, check["id"])]
    assert reasons[-1].endswith("[breach 2/2]"), reasons
    assert any("scripted outage" in reason for reason in reasons), reasons


def test_a_nan_volume_never_goes(server: Serve) -> None:
    check = server.start_check("nanvol", version="1.0")
    final = server.final(check["id"], FINAL_SECONDS)
    assert final["decision"] == "no_go", final
    events = sample_events(server, check["id"])
    assert events and all(e["data"]["decision"] == "no_go" for e in events)
    assert any("nan" in reason.lower() for reason in events[-1]["data"]["reasons"]), events[-1]
    continuous = server.decision("nanvol")
    assert continuous["decision"] == "no_go", continuous


def test_a_slow_source_never_makes_a_go(server: Serve, source: ScriptedPrometheus) -> None:
    # Healthy numbers, but each answer takes longer than the gate's 1 s interval.
    source.script('slow{version="1.0"}', lambda _call: Answer(0.001, delay=2.5))
    check = server.start_check("slow", version="1.0")
    final = server.final(check["id"], FINAL_SECONDS)
    assert final["decision"] == "no_go", final
    assert all(e["data"]["decision"] != "go" for e in sample_events(server, check["id"]))


def test_an_uncovered_window_never_goes_and_a_covered_one_does(server: Serve) -> None:
    check = server.start_check("window", version="1.0")
    final = server.final(check["id"], FINAL_SECONDS)
    events = sample_events(server, check["id"])
    assert final["decision"] == "go", final
    first = instant(events[0]["at"])
    for event in events:
        covered = (instant(event["at"]) - first).total_seconds() >= 6 - 1
        if not covered:
            assert event["data"]["decision"] == "no_go", event
            assert "needs history" in event["data"]["reasons"][0], event
    deciding = instant(events[-1]["at"])
    assert (deciding - first).total_seconds() >= 5, [e["at"] for e in events]


def put_gate(server: Serve, name: str, text: str) -> str:
    response = server.call(
        "PUT", f"/gates/{name}", content=text, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code in (200, 201), response.text
    version: str = response.json()["version"]
    return version


def samples_after_redefinition(server: Serve, check_id: str) -> int:
    events = server.events(check_id)
    marks = [n for n, e in enumerate(events) if e["kind"] == "gate_redefined"]
    return sum(1 for e in events[marks[0] :] if e["kind"] == "sample") if marks else 0


def test_a_redefinition_during_a_check_changes_neither_its_criteria_nor_its_signoffs(
    server: Serve, source: ScriptedPrometheus
) -> None:
    strict = scripted_gate("redef", source.url, steady_for=1, timeout="60s")
    signed = strict + "signoffs:\n  - {id: uat, role: admin}\n"
    source.script('redef{version="all"}', steady(0.02))
    source.script('redef{version="5.0"}', steady(0.02))  # 2 %: fails go: < 1 %
    pinned = put_gate(server, "redef", signed)
    check = server.start_check("redef", version="5.0")
    wait_for(lambda: server.events(check["id"])[-1]["kind"] == "sample", 20, "first sample")
    # The new version would pass the value and needs no sign-off at all.
    lenient = strict.replace('go: "< 1%"', 'go: "< 5%"')
    current = put_gate(server, "redef", lenient)
    assert current != pinned
    wait_for(lambda: server.decision("redef")["decision"] == "go", 20, "continuous go on v2")
    wait_for(lambda: samples_after_redefinition(server, check["id"]) >= 2, 20, "pinned samples")
    body = server.check(check["id"])
    assert (body["state"], body["decision"], body["gate_version"]) == (
        "running",
        "no_go",
        pinned,
    ), body
    assert "missing sign-off: uat" in body["reasons"], body["reasons"]
    # The source heals: the pinned criteria pass, but the pinned sign-off still binds.
    source.script('redef{version="5.0"}', steady(0.001))
    refused = server.call(
        "POST", f"/checks/{check['id']}/signoffs", "approver", json={"signoff": "uat"}
    )
    assert refused.status_code == 403, refused.text
    wait_for(
        lambda: server.check(check["id"])["reasons"] == ["missing sign-off: uat"],
        20,
        "only the sign-off missing",
    )
    assert server.check(check["id"])["state"] == "running"
    signed_off = server.call("POST", f"/checks/{check['id']}/signoffs", json={"signoff": "uat"})
    assert signed_off.status_code == 201, signed_off.text
    final = server.final(check["id"], FINAL_SECONDS)
    assert (final["decision"], final["gate_version"]) == ("go", pinned), final
    redefined = [e for e in server.events(check["id"]) if e["kind"] == "gate_redefined"]
    assert [(e["data"]["pinned"], e["data"]["current"]) for e in redefined] == [(pinned, current)]


def test_a_redefined_gate_serves_no_go_of_its_old_definition(
    server: Serve, source: ScriptedPrometheus
) -> None:
    # The new version's source answers slowly: its first sample takes 2 s.
    source.script('loose{version="all"}', steady(0.001))
    source.script('tight{version="all"}', lambda _call: Answer(0.02, delay=2))
    loose = scripted_gate("loose", source.url, interval="5s", steady_for=1)
    put_gate(server, "tighten", loose)
    wait_for(lambda: server.decision("tighten")["decision"] == "go", 20, "go on the old version")
    version = put_gate(server, "tighten", loose.replace("loose{", "tight{"))
    for read in (
        server.decision("tighten"),
        server.call("GET", "/gates/tighten", "viewer").json()["decision"],
    ):
        assert read["decision"] == "no_go", read
        assert read["reasons"][0].startswith("gate redefined at "), read["reasons"]
        assert f"version {version} has no sample yet" in read["reasons"][0], read["reasons"]
    flagger = server.call(  # a canary's check: never promoted on what gonogo cannot trust
        "POST", "/integrations/flagger/tighten", "pipeline", json=FLAGGER_CANARY
    )
    assert flagger.status_code in (403, 503), flagger.text
    wait_for(
        lambda: server.decision("tighten")["reasons"][0].startswith("rate: 2 % "),
        20,
        "the new version's own sample",
    )
    assert server.decision("tighten")["decision"] == "no_go"
