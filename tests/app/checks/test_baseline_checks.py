"""A baseline criterion and a dry-run criterion through the service: the check body and
the continuous decision show the baseline value and vars, each criterion's ``dry_run``
and the dry-run reasons apart; stored samples keep them across a restart; the status page
shows them. A failing dry-run criterion does not keep the check from ``go``."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from app.core.clock import ManualClock
from probes.base import ProbeConfig, ProbeContext, ProbeQuery
from tests.app.conftest import Service, open_service
from tests.app.fakes import ProbeBench
from tests.fakeprobe import Answer, FakeProbe

CANARY = """\
interval: 10s
steady_for: 2
rollback_after: 2
vars: {version: ".+", baseline: stable}
probes:
  p: {type: constant, value: 1}
criteria:
  - name: errors-vs-stable
    probe: p
    query: 'errors{version=~"${version}"}'
    baseline: {vars: {version: "${baseline}"}}
    go: "<= +10%"
    rollback: "> +50%"
  - name: latency-trial
    probe: p
    query: 'latency{version=~"${version}"}'
    go: "< 100ms"
    dry_run: true
"""
ERRORS = {"2.1": 0.0105, "2.2": 0.03, "2.0": 0.01, ".+": 0.0104, "stable": 0.01}


def answer(query: ProbeQuery, ctx: ProbeContext) -> Answer:
    text = query.query or ""
    if text.startswith("latency"):
        return 0.25
    version = text.split('"')[1]
    return ERRORS[version]


class ScriptedBench(ProbeBench):
    def __call__(self, config: ProbeConfig, name: str) -> FakeProbe:
        probe = FakeProbe(script=answer, name=name)
        self.built.append(probe)
        return probe


@asynccontextmanager
async def running(database_url: str, gates_dir: Path, clock: ManualClock) -> AsyncIterator[Service]:
    bench = ScriptedBench()
    app, lifespan = await open_service(database_url, gates_dir, clock, bench)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield Service(app, client, clock, bench, database_url)
    finally:
        await lifespan.__aexit__(None, None, None)


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in body["criteria"]}


DRY_RUN_REASON = "latency-trial: 250 ms >= 100 ms (go: < 100ms) (dry run)"


async def test_a_check_judged_against_its_baseline_goes_with_a_failing_dry_run(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> None:
    (gates_dir / "canary.yaml").write_text(CANARY)
    async with running(database_url, gates_dir, clock) as service:
        created = await service.start_check("canary", version="2.1", vars={"baseline": "2.0"})
        for _ in range(3):
            await service.advance(10)
        final = await service.final(created["id"])
        assert final["decision"] == "go", final["reasons"]
        assert final["reasons"] == []
        assert final["dry_run_reasons"] == [DRY_RUN_REASON]
        errors, trial = by_name(final)["errors-vs-stable"], by_name(final)["latency-trial"]
        assert errors["baseline"] == {"value": 0.01, "vars": {"version": "2.0"}}
        assert errors["reason"] == "0.0105 <= 0.011 (baseline 0.01 +10%; go: <= +10%)"
        assert errors["dry_run"] is False
        assert (trial["dry_run"], trial["outcome"], trial["baseline"]) == (True, "fail", None)

        decision = (await service.get("/api/v1/gates/canary/decision")).json()
        assert decision["decision"] == "go"
        assert by_name(decision)["errors-vs-stable"]["baseline"] == {
            "value": 0.01,
            "vars": {"version": "stable"},
        }
        assert decision["dry_run_reasons"] == [DRY_RUN_REASON]

        status = (await service.client.get("/status.json")).json()
        gate = next(g for g in status["gates"] if g["name"] == "canary")
        shown = {c["name"]: c for c in gate["criteria"]}
        # '<= +10%' is relative: it gives the value no unit.
        assert shown["errors-vs-stable"]["value_text"] == "0.0104"
        assert shown["errors-vs-stable"]["baseline_text"] == "baseline 0.01 (version=stable)"
        assert shown["latency-trial"]["dry_run"] is True
        assert gate["dry_run_reasons"] == [DRY_RUN_REASON]
        metrics = (await service.client.get("/metrics")).text
        assert (
            'gonogo_criterion_outcome{criterion="latency-trial",gate="canary",outcome="fail"} 1.0'
            in metrics
        )
        assert 'gonogo_criterion_value{criterion="latency-trial",gate="canary"} 0.25' in metrics
        page = (await service.client.get("/")).text
        assert "dry run</span>" in page
        assert "baseline 0.01 (version=stable)" in page
        assert html.escape(DRY_RUN_REASON, quote=False) in page

    async with running(database_url, gates_dir, clock) as restarted:
        await restarted.quiet()
        restored = list(restarted.app.state.scheduler.history("canary"))
        assert restored, "the continuous samples were read back"
        errors_result = restored[-1].results[0]
        assert errors_result.baseline is not None
        assert errors_result.baseline.as_dict() == {"value": 0.01, "vars": {"version": "stable"}}
        assert restored[-1].results[1].dry_run is True
        again = await restarted.check(created["id"])
        assert again["dry_run_reasons"] == [DRY_RUN_REASON]
        assert by_name(again)["errors-vs-stable"]["baseline"]["vars"] == {"version": "2.0"}


async def test_a_check_three_times_worse_than_its_baseline_rolls_back(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> None:
    (gates_dir / "canary.yaml").write_text(CANARY)
    async with running(database_url, gates_dir, clock) as service:
        created = await service.start_check("canary", version="2.2", vars={"baseline": "2.0"})
        for _ in range(3):
            await service.advance(10)
        final = await service.final(created["id"])
        assert final["decision"] == "rollback"
        assert final["reasons"] == [
            "errors-vs-stable: 0.03 > 0.015 (baseline 0.01 +50%; rollback: > +50%) [breach 2/2]"
        ]
