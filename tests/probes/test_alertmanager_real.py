"""The alertmanager probe against a real Alertmanager (Debian ``prometheus-alertmanager``).

Alerts are posted through Alertmanager's own API v2 and silenced with ``amtool``, as an
operator would; the probe must count exactly the firing, unsilenced alerts its matchers
select, and a security/data-corruption alert must breach the README's rollback criterion.
Skipped without the binaries, except in CI (CI=true), where their absence is a failure.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from gates.engine import CriterionOutcome
from gates.model import Gate
from gates.sampler import take_sample
from probes.alertmanager import AlertmanagerConfig, AlertmanagerProbe
from probes.base import MeasurementStatus, ProbeContext, ProbeQuery
from tests.support import free_port, require_binary, server_process

SELECTED = 'alertname=~"SecurityBreach|DataCorruption"'
VISIBLE_DEADLINE = 20.0


@dataclass
class RealAlertmanager:
    url: str
    amtool: str


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealAlertmanager]:
    binary = require_binary("prometheus-alertmanager", "alertmanager")
    amtool = require_binary("amtool")
    work = tmp_path_factory.mktemp("alertmanager")
    config = work / "alertmanager.yml"
    config.write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with server_process(argv, ready_url=f"{url}/-/ready", log_path=work / "am.log"):
        yield RealAlertmanager(url, amtool)


def post_alert(am: RealAlertmanager, name: str, **labels: str) -> None:
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": name, "service": "portal", **labels},
        "startsAt": (now - timedelta(minutes=1)).isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }
    httpx.post(f"{am.url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()


def silence(am: RealAlertmanager, matcher: str) -> str:
    result = subprocess.run(
        [
            am.amtool,
            f"--alertmanager.url={am.url}",
            "silence",
            "add",
            matcher,
            "--comment=known during the change",
            "--author=on-call",
            "--duration=1h",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture
async def probe(alertmanager: RealAlertmanager) -> AsyncIterator[AlertmanagerProbe]:
    config = AlertmanagerConfig(type="alertmanager", url=alertmanager.url, timeout=5, retries=1)
    built = AlertmanagerProbe(config, name="alerts")
    yield built
    await built.aclose()


async def count_until(probe: AlertmanagerProbe, wanted: float) -> float | None:
    """The firing count once it equals ``wanted`` (Alertmanager applies a silence or a new
    alert within moments); the last count seen if it never does within the deadline."""
    give_up = time.monotonic() + VISIBLE_DEADLINE
    value = None
    while time.monotonic() < give_up:
        answer = await probe.measure(
            ProbeQuery(matchers=(SELECTED,)), ProbeContext(now=datetime.now(UTC))
        )
        assert answer.status is MeasurementStatus.OK, answer.detail
        value = answer.value
        if value == wanted:
            return value
        await asyncio.sleep(0.2)  # bounded poll of an external server's state
    return value


def rollback_gate(probe: AlertmanagerProbe) -> Gate:
    return Gate.model_validate(
        {
            "name": "real-alertmanager",
            "probes": {"alerts": probe.config},
            "criteria": [
                {
                    "name": "security-or-corruption",
                    "probe": "alerts",
                    "matchers": [SELECTED],
                    "go": "== 0",
                    "rollback": "> 0",
                    "rollback_after": 1,
                }
            ],
        }
    )


async def test_firing_alerts_breach_and_silences_with_amtool_stop_counting(
    alertmanager: RealAlertmanager, probe: AlertmanagerProbe
) -> None:
    post_alert(alertmanager, "SecurityBreach", severity="critical")
    post_alert(alertmanager, "DataCorruption", severity="critical")
    post_alert(alertmanager, "DiskAlmostFull", severity="warning")  # not selected
    assert await count_until(probe, 2) == 2

    sample = await take_sample(
        rollback_gate(probe), {"alerts": probe}, now=datetime.now(UTC), values={}
    )
    (result,) = sample.results
    assert result.outcome is CriterionOutcome.BREACH
    assert result.value == 2

    silence(alertmanager, 'alertname="SecurityBreach"')
    assert await count_until(probe, 1) == 1
    silence(alertmanager, 'alertname="DataCorruption"')
    assert await count_until(probe, 0) == 0
    sample = await take_sample(
        rollback_gate(probe), {"alerts": probe}, now=datetime.now(UTC), values={}
    )
    assert sample.results[0].outcome is CriterionOutcome.PASS


async def test_a_matcher_alertmanager_refuses_is_inconclusive_with_its_words(
    probe: AlertmanagerProbe,
) -> None:
    answer = await probe.measure(
        ProbeQuery(matchers=('alertname=~"(unclosed"',)),
        ProbeContext(now=datetime.now(UTC)),
    )
    assert answer.status is MeasurementStatus.ERROR
    assert "400" in answer.detail
    assert answer.value is None
