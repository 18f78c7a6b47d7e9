"""The fault table's pieces, reusable by every probe type's fault tests.

A ``Fault`` says what the source does (scripted replies on its fake, or an unreachable
URL) and what the criterion's reason must then name. ``judge_fault`` runs one through
the real path, ``gates.sampler.take_sample`` then ``gates.engine.decide``, and returns
the criterion result and the verdict; ``assert_fails_closed`` checks the verdict is
``no_go`` with the cause in the reason and no secret anywhere.

A probe type's fault file needs: its fake, a function from a base URL to its probe
config (``probe_config``), its criterion keys and go condition, and its own rows for
the wrong shapes of its format, added to ``common_faults()``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gates.engine import CriterionOutcome, CriterionResult, Decision, Verdict, decide
from gates.model import Gate
from gates.sampler import take_sample
from probes.registry import probe_type
from tests.fakes import Reply, ScriptedFake
from tests.fakes.server import refused_port

FAULT_TOKEN_ENV = "GONOGO_FAULT_TOKEN"
FAULT_TOKEN_VALUE = "fault-token-s3cret-value"
# Small enough to keep the table fast, large enough for a loopback answer.
FAULT_TIMEOUT = 0.3
FAULT_RETRIES = 1
DNS_FAILURE_HOST = "gonogo-fault.invalid"
TEN_MIB = 10 * 1024 * 1024

Where = Literal["fake", "refused", "dns"]


@dataclass(frozen=True)
class Fault:
    """One row: what the source does, and what the reason must say."""

    id: str
    expect: str
    replies: tuple[Reply, ...] = ()
    where: Where = "fake"
    min_requests: int = 0  # e.g. 2: the probe retried before giving up

    def base_url(self, fake: ScriptedFake) -> str:
        if self.where == "refused":
            return f"http://127.0.0.1:{refused_port()}"
        if self.where == "dns":
            return f"http://{DNS_FAILURE_HOST}:9090"
        return fake.url


def retried(reply: Reply) -> tuple[Reply, ...]:
    """Enough copies of ``reply`` for every try."""
    return (reply,) * (1 + FAULT_RETRIES)


def common_faults(*, invalid_json_expect: str = "invalid JSON") -> list[Fault]:
    """Rows every HTTP-based probe type must survive, whatever its format."""
    html = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    return [
        Fault("connection-refused", "connection refused", where="refused"),
        Fault("dns-failure", f"cannot resolve host {DNS_FAILURE_HOST}", where="dns"),
        Fault("timeout", f"timed out after {FAULT_TIMEOUT:g}s", retried(Reply(hang=True))),
        Fault("http-500", "HTTP 500", retried(Reply(status=500, body=b"internal error"))),
        Fault(
            "http-502-html",
            "HTTP 502",
            retried(Reply(status=502, body=html, content_type="text/html")),
        ),
        Fault(
            "http-429-retry-after",
            "rate limited",
            retried(Reply(status=429, body=b"Too Many Requests\n", headers={"Retry-After": "0"})),
            min_requests=1 + FAULT_RETRIES,
        ),
        Fault(
            "http-401",
            f"check token_env {FAULT_TOKEN_ENV}",
            (Reply(status=401, body=b"Unauthorized\n", headers={"WWW-Authenticate": "Basic"}),),
        ),
        Fault(
            "http-403",
            f"check token_env {FAULT_TOKEN_ENV}",
            (Reply(status=403, json={"detail": "You do not have permission."}),),
        ),
        Fault(
            "invalid-json",
            invalid_json_expect,
            (Reply(body=b'{"status": "succ', content_type="application/json"),),
        ),
        Fault(
            "body-over-10-mib",
            "larger than 10 MiB",
            (Reply(stream_bytes=TEN_MIB + 1024 * 1024),),
        ),
    ]


def shape_fault(fault_id: str, body: Any, expect: str) -> Fault:
    """A 200 answer with valid JSON the probe cannot use."""
    raw = json.dumps(body, allow_nan=True).encode()
    return Fault(fault_id, expect, (Reply(body=raw, content_type="application/json"),))


@dataclass(frozen=True)
class FaultRun:
    result: CriterionResult
    verdict: Verdict
    requests: int
    extra: Mapping[str, Any] = field(default_factory=dict)


async def judge_fault(
    fault: Fault,
    fake: ScriptedFake,
    *,
    probe_config: Callable[[str], dict[str, Any]],
    criterion: dict[str, Any],
    now: datetime,
) -> FaultRun:
    """Script ``fault`` on ``fake`` and judge one sample of a one-criterion gate."""
    fake.queue.clear()
    fake.script(*fault.replies)
    before = len(fake.requests)
    config = {
        "timeout": FAULT_TIMEOUT,
        "retries": FAULT_RETRIES,
        **probe_config(fault.base_url(fake)),
    }
    factory = probe_type(config["type"])
    gate = Gate.model_validate(
        {
            "name": "fault-table",
            "steady_for": 1,
            "probes": {"source": factory.config_model.model_validate(config)},
            "criteria": [{"name": "under-test", "probe": "source", **criterion}],
        }
    )
    probe = factory(gate.probes["source"], name="source")
    try:
        sample = await take_sample(gate, {"source": probe}, now=now, values={})
    finally:
        await probe.aclose()
    verdict = decide(gate, [sample])
    return FaultRun(sample.results[0], verdict, len(fake.requests) - before)


def assert_fails_closed(
    run: FaultRun,
    fault: Fault,
    *,
    outcome: CriterionOutcome = CriterionOutcome.INCONCLUSIVE,
) -> None:
    """No go, the cause named (inconclusive reasons carry it), nothing secret shown."""
    assert run.verdict.decision is Decision.NO_GO, (fault.id, run.verdict)
    assert run.result.outcome is outcome, (fault.id, run.result)
    if outcome is CriterionOutcome.INCONCLUSIVE:
        assert fault.expect in run.result.reason, (fault.id, run.result.reason)
    shown = json.dumps(run.verdict.as_dict())
    assert FAULT_TOKEN_VALUE not in shown, fault.id
    assert run.requests >= fault.min_requests, (fault.id, run.requests)
