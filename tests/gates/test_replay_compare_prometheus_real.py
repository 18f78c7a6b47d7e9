"""A ``compare:`` criterion replayed against a real Prometheus holding two hours of
backfilled history (``promtool tsdb create-blocks-from openmetrics``): a canary whose
latency doubles for 20 minutes breaches inside that stretch (and the comparison window
after it, which still holds its points) and nowhere else; two range reads cover it all.

Needs ``prometheus`` and ``promtool``; skipped without them, except in CI.
"""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gates.engine import CriterionOutcome, Decision
from gates.loader import load_gate_text
from gates.replay import Replay, replay
from gates.sampler import placeholder_values
from probes.prometheus import PrometheusConfig, PrometheusProbe
from tests.support import real_prometheus, require_binary

pytestmark = pytest.mark.prometheus

SCRAPE_S = 15
END = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
START = END - timedelta(hours=2)
DIVERGES_FROM = START + timedelta(minutes=50)
DIVERGES_TO = DIVERGES_FROM + timedelta(minutes=20)
WINDOW = timedelta(minutes=10)

GATE = """\
    interval: 1m
    steady_for: 2
    rollback_after: 2
    vars: {baseline: stable, version: canary}
    probes:
      prom: {type: prometheus, url: "URL"}
    criteria:
      - name: latency-vs-stable
        probe: prom
        query: 'latency_seconds{version="${version}"}'
        baseline: {vars: {version: "${baseline}"}}
        compare: {test: mann_whitney, window: 10m, step: 30s, confidence: 98%, effect: 10%,
                  rollback_effect: 50%, direction: increase}
    """


def openmetrics() -> str:
    lines = ["# TYPE latency_seconds gauge"]
    count = int((END - START).total_seconds()) // SCRAPE_S + 1
    for version in ("canary", "stable"):
        for index in range(count):
            at = START + timedelta(seconds=SCRAPE_S * index)
            value = 0.200 + 0.01 * (index * 7 % 11)
            if version == "canary" and DIVERGES_FROM <= at < DIVERGES_TO:
                value *= 2
            lines.append(
                f'latency_seconds{{version="{version}"}} {value:.3f} {int(at.timestamp())}'
            )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


async def replayed(url: str) -> Replay:
    g = load_gate_text(
        textwrap.dedent(GATE).replace("URL", url), name="release", source="release.yaml"
    )
    config = g.probes["prom"]
    assert isinstance(config, PrometheusConfig)
    probe = PrometheusProbe(config, name="prom")
    try:
        return await replay(
            g,
            {"prom": probe},
            values=placeholder_values(g),
            start=START + WINDOW,
            end=END,
            step=timedelta(minutes=1),
        )
    finally:
        await probe.aclose()


def test_a_diverging_canary_breaches_inside_its_stretch_only(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    (tmp_path / "history.om").write_text(openmetrics())
    (tmp_path / "data").mkdir()
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "history.om", "data"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120,
    )
    with real_prometheus(tmp_path, "http://127.0.0.1:9") as url:
        result = asyncio.run(replayed(url))
    (report,) = result.criteria
    assert report.replayable and report.reads == 2 and not report.failed_reads, report
    outcomes = {s.at: s.verdict.criteria[0].outcome for s in result.steps}
    breaches = [at for at, o in outcomes.items() if o is CriterionOutcome.BREACH]
    assert breaches and all(DIVERGES_FROM < at < DIVERGES_TO + WINDOW for at in breaches)
    assert any(at < DIVERGES_TO for at in breaches)
    quiet = [at for at in outcomes if at < DIVERGES_FROM or at >= DIVERGES_TO + WINDOW]
    assert all(outcomes[at] is CriterionOutcome.PASS for at in quiet)
    rollbacks = [s.at for s in result.steps if s.verdict.decision is Decision.ROLLBACK]
    assert rollbacks and all(DIVERGES_FROM < at < DIVERGES_TO + WINDOW for at in rollbacks)
