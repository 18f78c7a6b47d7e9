"""``gonogo replay`` against a real Prometheus holding four hours of backfilled history
(``promtool tsdb create-blocks-from openmetrics``) with one incident: the error rate at
20 % for 20 minutes. The quiet hours replay as ``go``; the incident as ``no_go`` and then
``rollback``, inside its window and nowhere else; the summary agrees with the timeline;
the ``--html`` page renders in Chromium with its charts.

Needs ``prometheus`` and ``promtool`` (and ``chromium`` for the page); skipped without
them, except in CI.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from app.cli import replay as replay_cli
from tests.app.web.test_status_page_browser import CHROMIUM_ARGS, chromium_path, screenshot_dirs
from tests.support import real_prometheus, require_binary

pytestmark = pytest.mark.prometheus

SCRAPE_S = 30
HISTORY = timedelta(hours=4)
END = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
START = END - HISTORY
INCIDENT_START = END - timedelta(hours=2)
INCIDENT_END = INCIDENT_START + timedelta(minutes=20)
RATE_WINDOW = timedelta(minutes=2)
PER_SECOND = 50.0

GATE = """\
interval: 1m
steady_for: 3
rollback_after: 3
probes:
  prom: {type: prometheus, url: "URL"}
criteria:
  - name: error-rate
    probe: prom
    query: 'sum(rate(http_requests_total{code="500"}[2m])) / sum(rate(http_requests_total[2m]))'
    go: "< 1%"
    rollback: "> 5%"
  - name: latency
    probe: prom
    query: 'max(latency_seconds)'
    go: "< 500ms"
"""


def failing_share(at: datetime) -> float:
    return 0.20 if INCIDENT_START <= at < INCIDENT_END else 0.001


def openmetrics() -> str:
    instants = [
        START + timedelta(seconds=SCRAPE_S * i)
        for i in range(int(HISTORY.total_seconds()) // SCRAPE_S + 1)
    ]
    lines = ["# TYPE latency_seconds gauge"]
    lines += [f"latency_seconds 0.120 {int(at.timestamp())}" for at in instants]
    lines.append("# TYPE http_requests counter")
    for code in ("200", "500"):
        total = 0.0
        for at in instants:
            share = failing_share(at)
            total += PER_SECOND * SCRAPE_S * (share if code == "500" else 1 - share)
            lines.append(f'http_requests_total{{code="{code}"}} {total:.3f} {int(at.timestamp())}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], Path]]:
    promtool = require_binary("promtool")
    work = tmp_path_factory.mktemp("prometheus-replay")
    (work / "history.om").write_text(openmetrics())
    (work / "data").mkdir()
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(work / "history.om"), "data"],
        cwd=work,
        check=True,
        capture_output=True,
        timeout=120,
    )
    with real_prometheus(work, "http://127.0.0.1:9") as url:
        gate_file = work / "release.yaml"
        gate_file.write_text(GATE.replace("URL", url))
        page = work / "replay.html"
        cli = typer.Typer()
        cli.callback()(lambda: None)  # a group, so that "replay" names the command
        replay_cli.register(cli)
        result = CliRunner().invoke(
            cli,
            [
                "replay",
                str(gate_file),
                "--from",
                (START + timedelta(minutes=10)).isoformat(),
                "--to",
                END.isoformat().replace("+00:00", "Z"),
                "--json",
                "--html",
                str(page),
            ],
        )
    assert result.exit_code == 0, result.output
    yield json.loads(result.stdout), page


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_quiet_hours_go_and_the_incident_no_go_then_rollback_inside_its_window(
    replayed: tuple[dict[str, Any], Path],
) -> None:
    body, _ = replayed
    timeline = body["timeline"]
    assert len(timeline) == 231  # 3h50m at 1m, both ends included
    # The 2m rate sees the incident for up to its window after it ends; then the steady
    # run of 3 takes 2 more steps.
    settled = INCIDENT_END + RATE_WINDOW + timedelta(minutes=3)
    first_steps = {timeline[0]["at"], timeline[1]["at"]}  # steady 1/3, 2/3
    for step in timeline:
        moment = at(step["at"])
        if step["decision"] == "rollback":
            assert INCIDENT_START <= moment <= INCIDENT_END + RATE_WINDOW, step["at"]
        elif step["decision"] == "no_go":
            assert step["at"] in first_steps or INCIDENT_START <= moment <= settled, step
        if moment < INCIDENT_START and step["at"] not in first_steps:
            assert step["decision"] == "go", step
        if moment > settled:
            assert step["decision"] == "go", step
    decisions = [s["decision"] for s in timeline if INCIDENT_START <= at(s["at"]) < INCIDENT_END]
    first_rollback = decisions.index("rollback")
    assert first_rollback >= 2 and decisions[first_rollback - 1] == "no_go"
    rolled = [s for s in timeline if s["decision"] == "rollback"]
    assert len(rolled) >= 15  # most of the 20 minutes
    assert any("error-rate" in r and "breach 3/3" in r for r in rolled[0]["reasons"])
    errors = {c["name"]: c["value"] for c in rolled[5]["criteria"]}  # the value is the source's own
    assert errors["error-rate"] == pytest.approx(0.20, rel=0.01)
    assert body["criteria"][0] == {
        "name": "error-rate",
        "replayable": True,
        "reason": None,
        "reads": 1,
        "failed_reads": [],
    }


def test_the_summary_counts_match_the_timeline(replayed: tuple[dict[str, Any], Path]) -> None:
    body, _ = replayed
    timeline, summary, spans = body["timeline"], body["summary"], body["spans"]
    decisions = [s["decision"] for s in timeline]
    changes = sum(1 for a, b in itertools.pairwise(decisions) if a != b)
    assert summary["changes"] == changes == len(spans) - 1
    assert summary["rollbacks"] == 1 == sum(1 for s in spans if s["decision"] == "rollback")
    for decision in ("go", "no_go", "rollback"):
        assert summary["seconds_in"][decision] == 60 * decisions.count(decision)
    longest = max((s for s in spans if s["decision"] == "no_go"), key=lambda s: s["seconds"])
    assert summary["longest_no_go"] == longest
    assert sum(s["seconds"] for s in spans) == 60 * len(timeline)


@pytest.mark.chromium
async def test_the_html_page_renders_its_band_and_charts_in_chromium(
    replayed: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    body, page_file = replayed
    text = page_file.read_text()
    assert "<script" not in text and "<link" not in text  # self-contained
    executable = chromium_path()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(page_file.as_uri())
            found = await page.evaluate(
                """() => ({
                  bands: document.querySelectorAll('svg.band').length,
                  spans: document.querySelectorAll('svg.band rect').length,
                  charts: document.querySelectorAll('svg.chart').length,
                  lines: document.querySelectorAll('svg.chart polyline.value').length,
                  go: document.querySelectorAll('svg.chart line.threshold.go').length,
                  rollback: document.querySelectorAll('svg.chart line.threshold.rollback').length,
                  moments: document.querySelectorAll('svg.chart line.rollback-moment').length,
                  chartWidth: document.querySelector('svg.chart').getBoundingClientRect().width,
                })"""
            )
            shot = tmp_path / "replay.png"
            for directory in screenshot_dirs(tmp_path):
                await page.screenshot(path=str(directory / "replay.png"), full_page=True)
        finally:
            await browser.close()
    assert errors == []
    assert found["bands"] == 1 and found["spans"] == len(body["spans"])
    # Two criteria: two value lines; go thresholds for both, a rollback one for the first;
    # the one rollback moment marked on each chart.
    assert (found["charts"], found["lines"], found["go"], found["rollback"]) == (2, 2, 2, 1)
    assert found["moments"] == 2
    assert found["chartWidth"] > 500
    header = shot.read_bytes()[:24]  # PNG: the IHDR chunk holds width and height
    width, height = int.from_bytes(header[16:20]), int.from_bytes(header[20:24])
    assert width == 1100 and height > 2 * 160 + 36
