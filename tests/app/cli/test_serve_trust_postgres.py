"""``gonogo serve`` on a PostgreSQL that is SIGSTOPped (hung) and then stopped: the
decision turns stale ``no_go`` within its bounds each time, no read says ``go`` on the old
sample, and the gate recovers to ``go`` once the database answers again.

The cluster is the throwaway one of ``tests/app/test_database_faults.py`` (never the shared
test server). The server runs with its default database timeouts (5 s per statement, a
10 s write budget), so the bounds below are those plus the gate's 10 s freshness bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.cli.serve_support import ScriptedPrometheus, Serve, serving, steady, wait_for
from tests.app.test_database_faults import Cluster

pytestmark = [pytest.mark.postgres]

# Freshness bound (10 s) after the first unstored sample, plus a hung write's budget.
STALE_WITHIN = 30.0
RECOVER_WITHIN = 30.0
GATE = """\
interval: 1s
steady_for: 2
timeout: 5m
vars: {version: all}
probes:
  prom: {type: prometheus, url: "URL", timeout: 2, retries: 0}
criteria:
  - {name: rate, probe: prom, query: 'pg{version="${version}"}', go: "< 1%"}
"""

FLAGGER_CANARY = {"name": "w", "namespace": "p", "checksum": "r1", "metadata": {"version": "all"}}


@pytest.fixture
def server(pg_cluster: Cluster, tmp_path: Path) -> Iterator[Serve]:
    with ScriptedPrometheus().running() as source:
        source.script('pg{version="all"}', steady(0.001))
        gates = tmp_path / "gates"
        gates.mkdir()
        (gates / "pg.yaml").write_text(GATE.replace("URL", source.url))
        with serving(gates, pg_cluster.url, tmp_path / "serve.log") as up:
            yield up


def stale(server: Serve) -> bool:
    body = server.decision("pg")
    return body["decision"] == "no_go" and body["reasons"][0].startswith("stale since")


def go(server: Serve) -> bool:
    return server.decision("pg")["decision"] == "go"


def no_go_until_stale(server: Serve, seconds: float) -> None:
    """Every read until the decision is stale is either the fresh go seen before the
    fault (within its bound) or the stale no_go; then it stays no_go while it lasts."""
    wait_for(lambda: stale(server), seconds, "stale no_go while PostgreSQL is away")
    flagger = server.call(  # a canary's check: never promoted on what gonogo cannot trust
        "POST", "/integrations/flagger/pg", "pipeline", json=FLAGGER_CANARY
    )
    assert flagger.status_code in (403, 503), flagger.text
    page = server.get("/status.json").json()
    assert [g["decision"] for g in page["gates"]] == ["no_go"], page
    metrics = server.get("/metrics").text
    assert 'gonogo_gate_decision{decision="no_go",gate="pg"} 1.0' in metrics


def test_a_hung_then_a_stopped_postgresql_never_serves_a_stale_go_and_recovers(
    server: Serve, pg_cluster: Cluster
) -> None:
    wait_for(lambda: go(server), 20, "go before the faults")
    pg_cluster.freeze()
    try:
        no_go_until_stale(server, STALE_WITHIN)
        ready = server.get("/readyz")
        assert ready.status_code == 200 and ready.json()["database"] is False, ready.text
    finally:
        pg_cluster.thaw()
    wait_for(lambda: go(server), RECOVER_WITHIN, "go again once PostgreSQL answers")

    pg_cluster.stop()
    try:
        no_go_until_stale(server, STALE_WITHIN)
        assert server.process is not None and server.process.poll() is None
    finally:
        pg_cluster.start()
    wait_for(lambda: go(server), RECOVER_WITHIN, "go again once PostgreSQL is back")
