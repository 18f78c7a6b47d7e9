"""A check's loop never dies, its deadline holds, and a sign-off never turns it go on a
stale sample or after its deadline (docs/decisions.md, "Checks past their deadline").

Database faults are injected where the runner writes (``app.checks.repository``), on
SQLite and PostgreSQL; ``tests/app/test_database_faults.py`` does it with a real server.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from app.checks import repository as repo
from app.gates import repository as gate_repo
from tests.app.conftest import Service


class Outage:
    """Make one repository function fail like an unreachable or locked database."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.down = True
        self.failures = 0
        real = getattr(repo, name)

        async def faulty(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                self.failures += 1
                raise OperationalError("UPDATE checks", {}, Exception("database is locked"))
            return await real(*args, **kwargs)

        monkeypatch.setattr(repo, name, faulty)


async def test_a_check_survives_failed_sample_writes_and_still_reaches_go(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    outage = Outage(monkeypatch, "update_running_verdict")
    check = await service.start_check()  # portal: interval 10s, steady_for 2, timeout 60s
    await service.advance(10)
    await service.until(lambda: _failed(outage, 1))
    await service.advance(5)  # the backoff of the supervised loop; it tries again
    await service.until(lambda: _failed(outage, 2))
    assert (await service.check(check["id"]))["state"] == "running"

    outage.down = False
    for _ in range(4):
        await service.advance(10)
    final = await service.final(check["id"])
    assert final["state"] == "final" and final["decision"] == "go"


async def test_a_fault_after_healthy_samples_is_retried_at_the_first_backoff(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backoff grows while faults follow one another; once the loop has recorded a
    sample again, the next fault is a new one, retried after the first backoff (not after
    the grown one, which would leave the check unsampled for up to 10 s)."""
    outage = Outage(monkeypatch, "update_running_verdict")
    check = await service.start_check()  # portal: interval 10s, first sample at once
    await service.until(lambda: _failed(outage, 1))  # t=0
    for backoff, failures in ((0.5, 2), (1, 3), (2, 4), (4, 5), (8, 6)):
        await service.advance(backoff)
        await service.until(lambda n=failures: _failed(outage, n))  # t=15.5: backoff 10
    outage.down = False
    await service.advance(10)  # t=25.5: the retry samples and records
    await service.samples_reach(check["id"], 1)
    outage.down = True
    await service.advance(4.5)  # t=30: the next tick, a new fault
    await service.until(lambda: _failed(outage, 7))
    await service.advance(0.5)  # t=30.5: retried at the first backoff
    await service.until(lambda: _failed(outage, 8), seconds=3)
    assert outage.failures == 8


async def test_samples_whose_commit_failed_never_count_toward_go(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sample whose transaction did not commit was never stored: it must not stay in
    the run's history, or the retries (half a second apart) would build a steady run of
    samples nobody can see and go long before two intervals have passed."""
    failing = {"left": 2, "failures": 0}
    poisoned: set[int] = set()
    real_add, real_commit = gate_repo.add_sample, AsyncSession.commit

    async def add_sample(session: Any, *args: Any, **kwargs: Any) -> Any:
        if failing["left"] > 0:
            failing["left"] -= 1
            poisoned.add(id(session))
        return await real_add(session, *args, **kwargs)

    async def commit(self: AsyncSession) -> None:
        if id(self) in poisoned:
            poisoned.discard(id(self))
            failing["failures"] += 1
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))
        await real_commit(self)

    monkeypatch.setattr(gate_repo, "add_sample", add_sample)
    monkeypatch.setattr(AsyncSession, "commit", commit)
    check = await service.start_check()  # portal: interval 10s, steady_for 2
    await service.until(lambda: _count(failing, 1))  # t=0
    await service.advance(0.5)
    await service.until(lambda: _count(failing, 2))  # t=0.5
    await service.advance(1)  # t=1.5: the retry's sample commits
    await service.samples_reach(check["id"], 1)
    await service.advance(5)  # t=6.5: still before the second tick
    body = await service.check(check["id"])
    assert body["state"] == "running", body
    assert body["steady"]["passes"] == 1, body["steady"]
    await service.advance(3.5)  # t=10: the second stored sample, two in a row
    final = await service.final(check["id"])
    assert final["decision"] == "go"
    assert len(set(final["deciding_samples"])) == 2, final["deciding_samples"]


async def _count(failing: dict[str, int], times: int) -> bool:
    return failing["failures"] >= times


async def test_the_deadline_is_enforced_as_soon_as_gonogo_can_write(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.bench.answers["p"] = 0.97  # fails go (> 99%), no breach: stays no_go
    check = await service.start_check()  # deadline: 60s after creation
    samples = Outage(monkeypatch, "update_running_verdict")
    finals = Outage(monkeypatch, "finish_check")
    for _ in range(8):  # 80s: the deadline passes while nothing can be written
        await service.advance(10)
    await service.until(lambda: _failed(finals, 1))
    assert (await service.check(check["id"]))["state"] == "running"

    samples.down = finals.down = False
    await service.advance(10)  # the next retry writes the timeout
    final = await service.final(check["id"])
    assert final["decision"] == "no_go"
    assert final["reasons"][-1] == "timed out after 1m without a go decision"


async def test_a_signoff_past_the_deadline_is_refused_with_409(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = await service.start_check("signed")  # timeout 120s
    finals = Outage(monkeypatch, "finish_check")  # the runner cannot end it in time
    for _ in range(13):
        await service.advance(10)
    await service.until(lambda: _failed(finals, 1))
    assert (await service.check(check["id"]))["state"] == "running"

    late = await service.post(
        f"/api/v1/checks/{check['id']}/signoffs", "approver", json={"signoff": "uat"}
    )
    assert late.status_code == 409, late.text
    assert late.headers["content-type"].startswith("application/problem+json")
    assert "passed its deadline" in late.json()["detail"]
    signoffs = (await service.check(check["id"]))["signoffs"]
    assert signoffs == []


async def test_a_signoff_on_a_stale_sample_is_recorded_and_the_go_waits_for_a_fresh_one(
    service: Service,
) -> None:
    check = await service.start_check("signed")  # interval 10s, steady_for 1: bound 30s
    await service.advance(10)
    await service.samples_reach(check["id"], 1)
    service.probe("q").hang()  # the loop stalls on its next sample
    await service.clock.advance(40)

    path = f"/api/v1/checks/{check['id']}/signoffs"
    assert (await service.post(path, "approver", json={"signoff": "uat"})).status_code == 201
    assert (await service.post(path, "admin", json={"signoff": "cso"})).status_code == 201

    async def redecided() -> bool:  # the sign-off's re-decision has run
        return not service.app.state.checks._background

    await service.until(redecided)
    current = await service.check(check["id"])
    assert current["state"] == "running"  # the only sample is 40s old: no go on it
    assert {s["signoff"] for s in current["signoffs"]} == {"uat", "cso"}

    service.probe("q").release()  # the hung sample answers; a fresh sample decides
    service.probe("q").answer = 1.0
    await service.clock.settle()
    await service.advance(10)
    final = await service.final(check["id"])
    assert final["decision"] == "go"


async def _failed(outage: Outage, times: int) -> bool:
    return outage.failures >= times
