"""What every probe gets from the sampler and the shared client, whoever wrote it:

- one scrubber: the probe's declared secrets, in every encoded form, never leave a
  measurement (successful ones included);
- credentials never in a probe URL, and never shown in a header's value;
- a sample's time is capped at the gate's interval, all tries included, and the client's
  retries stop at that deadline;
- a gate cannot starve another that shares its source: no pool-wide cap that stuck gates
  fill, and a bound on each sample's requests to one probe.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.gates.catalog import GateCatalog
from gates.engine import CriterionOutcome
from gates.loader import check_gate_text
from gates.model import Criterion, Gate
from gates.sampler import MAX_REQUESTS_PER_PROBE, take_sample
from probes.base import Measurement, ProbeConfig, ProbeContext, ProbeQuery, declared_secrets
from probes.client import ProbeFailure, SourceClient, deadline_in, is_sensitive_header, scrubber
from probes.registry import probe_type
from tests.fakeprobe import HANG, FakeProbe
from tests.fakes import Reply
from tests.fakes.jsonapi import JsonApiFake
from tests.fakes.prometheus import PrometheusFake, vector

SECRET = "s3cr3t/t0ken+with=odd&chars"

# -- one scrubber ---------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


ENCODINGS = {
    "raw": lambda s: s,
    "percent": lambda s: quote(s, safe=""),
    "percent-lower-hex": lambda s: re.sub(
        r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(s, safe="")
    ),
    "form": quote_plus,
    "basic-header": lambda s: "Basic " + _b64(f"someone:{s}"),
    "base64": _b64,
    "base64-urlsafe": lambda s: base64.urlsafe_b64encode(s.encode()).decode(),
    "base64-inside": lambda s: _b64(f"x{s}y"),
    "json-escaped": lambda s: json.dumps(s)[1:-1],
    "html-escaped": html.escape,
}

secrets = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters="\\"),
    min_size=12,
    max_size=48,
)
around = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@settings(max_examples=60, deadline=None)
@given(secret=secrets, before=around, after=around)
def test_every_form_of_a_secret_is_scrubbed_wherever_it_sits(
    encoding: str, secret: str, before: str, after: str
) -> None:
    encoded = ENCODINGS[encoding](secret)
    cleaned = scrubber((secret,)).text(f"{before}{encoded}{after}")
    assert secret not in cleaned
    if encoding == "basic-header" or encoding == "base64-inside":
        core = encoded.removeprefix("Basic ")[4:-4]
        assert core not in cleaned
    else:
        assert encoded not in cleaned


@settings(max_examples=100, deadline=None)
@given(secret=secrets, keep=st.integers(min_value=8, max_value=48), after=around)
def test_a_long_secret_cut_short_still_shows_nothing(secret: str, keep: int, after: str) -> None:
    cut = secret[: min(keep, len(secret) - 1)]
    cleaned = scrubber((secret,)).text(f"token {cut}… {after}")
    assert cut not in cleaned


def test_text_without_a_secret_is_left_alone() -> None:
    text = "prometheus: HTTP 503 service unavailable after 3 tries; check token_env PROM"
    assert scrubber(("abcdefgh12345678",)).text(text) == text


class _LeakyConfig(ProbeConfig):
    pass


class _LeakyProbe:
    """A third-party probe that declares its secret and then puts it everywhere."""

    type_name: ClassVar[str] = "leaky"
    config_model: ClassVar[type[ProbeConfig]] = _LeakyConfig

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.config = _LeakyConfig(type="leaky", timeout=1, retries=0)

    def secrets(self) -> list[str]:
        return [SECRET]

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        if self.answer == "raise":
            raise RuntimeError(f"could not use {SECRET}")
        if self.answer == "ok":
            return Measurement.ok(1.0, ctx.now, detail=f"ok for {SECRET}", extra={SECRET: 1.0})
        return Measurement.error(f"source said {quote(SECRET, safe='')}", ctx.now)

    async def aclose(self) -> None:
        return None


def _gate(*criteria: dict[str, Any], interval: float = 30) -> Gate:
    probes = {c["probe"]: ProbeConfig(type="fake") for c in criteria}
    return Gate(
        name="g",
        interval=interval,
        probes=probes,
        criteria=[Criterion(**c) for c in criteria],
    )


@pytest.mark.parametrize("answer", ["ok", "error", "raise"])
async def test_the_sampler_scrubs_every_probe_including_third_party_ones(
    now: datetime, answer: str
) -> None:
    gate = _gate({"name": "c", "probe": "p", "go": "> 0"})
    sample = await take_sample(gate, {"p": _LeakyProbe(answer)}, now=now, values={})
    [result] = sample.results
    assert SECRET not in json.dumps(result.as_dict())
    assert quote(SECRET, safe="") not in json.dumps(result.as_dict())
    measurement = result.as_measurement()
    if measurement is not None:
        assert SECRET not in measurement.detail and SECRET not in "".join(measurement.extra)


async def test_a_probe_whose_secrets_cannot_be_read_shows_nothing_it_said(now: datetime) -> None:
    class Broken(_LeakyProbe):
        def secrets(self) -> list[str]:
            raise RuntimeError(SECRET)

    gate = _gate({"name": "c", "probe": "p", "go": "> 0"})
    sample = await take_sample(gate, {"p": Broken("ok")}, now=now, values={})
    [result] = sample.results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert result.reason == "probe failed to declare its secrets: RuntimeError"


def test_a_built_in_probe_declares_what_its_client_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW", "hunter2-but-longer")
    config = probe_type("prometheus").config_model.model_validate(
        {"type": "prometheus", "url": "http://p:9090", "username": "u", "password_env": "PW"}
    )
    probe = probe_type("prometheus")(config, name="p")
    declared = declared_secrets(probe)
    assert "hunter2-but-longer" in declared
    assert _b64("u:hunter2-but-longer") in declared  # the whole Basic credential too


# -- credentials in URLs and headers -------------------------------------------------------------

_TYPES: dict[str, dict[str, Any]] = {
    "prometheus": {},
    "http": {},
    "json": {},
    "alertmanager": {},
    "datadog": {"api_key_env": "A", "app_key_env": "B"},
    "newrelic": {"account_id": 1, "api_key_env": "A"},
    "sentry": {"org": "o", "project": "p", "token_env": "A"},
}


@pytest.mark.parametrize("type_name", sorted(_TYPES))
@pytest.mark.parametrize(
    "url", ["http://user:pass@host:9090", "https://token@host/x", "http://:pw@host"]
)
def test_every_probe_type_refuses_credentials_in_its_url(type_name: str, url: str) -> None:
    model = probe_type(type_name).config_model
    with pytest.raises(ValueError, match="credentials in the URL") as refused:
        model.model_validate({"type": type_name, "url": url, **_TYPES[type_name]})
    assert "password_env" in str(refused.value) and "token_env" in str(refused.value)


@pytest.mark.parametrize("url", ["http://host:9090/a@b", "http://host/?q=@x", "http://host#@"])
def test_an_at_sign_after_the_host_is_not_userinfo(url: str) -> None:
    config = probe_type("prometheus").config_model.model_validate(
        {"type": "prometheus", "url": url}
    )
    assert config.url == url


def test_a_gate_file_with_credentials_in_a_url_is_a_located_error() -> None:
    text = (
        "probes:\n"
        "  prom: {type: prometheus, url: 'http://admin:hunter2@prom:9090'}\n"
        "criteria:\n"
        "  - {name: c, probe: prom, query: up, go: '> 0'}\n"
    )
    checked = check_gate_text(text, name="g", source="g.yaml")
    assert checked.gate is None
    [problem] = checked.problems
    assert (problem.file, problem.line) == ("g.yaml", 2)
    assert "credentials in the URL" in problem.message
    assert "hunter2" not in str(problem)


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        ("Authorization", True),
        ("proxy-authorization", True),
        ("Cookie", True),
        ("Set-Cookie", True),
        ("X-Api-Key", True),
        ("DD-API-KEY", True),
        ("DD-APPLICATION-KEY", True),
        ("API-Key", True),
        ("X-Session-Token", True),
        ("X-Client-Secret", True),
        ("X-Auth-User", True),
        ("Accept", False),
        ("X-Scope-OrgID", False),
        ("User-Agent", False),
    ],
)
def test_sensitive_header_names(name: str, sensitive: bool) -> None:
    assert is_sensitive_header(name) is sensitive


# -- time caps ---------------------------------------------------------------------------------


@pytest.fixture
async def hanging_prometheus() -> AsyncIterator[PrometheusFake]:
    fake = PrometheusFake()
    fake.results["ok"] = vector(0.5)
    async with fake.serving():
        yield fake


async def test_a_hanging_source_with_long_timeouts_and_many_retries_is_cut_at_the_interval(
    hanging_prometheus: PrometheusFake, now: datetime
) -> None:
    hanging_prometheus.script(*(Reply(hang=True) for _ in range(20)))
    config = probe_type("prometheus").config_model.model_validate(
        {"type": "prometheus", "url": hanging_prometheus.url, "timeout": 120, "retries": 10}
    )
    probe = probe_type("prometheus")(config, name="p")
    gate = _gate({"name": "c", "probe": "p", "query": "up", "go": "> 0"}, interval=1)
    started = time.monotonic()
    try:
        sample = await asyncio.wait_for(take_sample(gate, {"p": probe}, now=now, values={}), 10)
    finally:
        await probe.aclose()
    took = time.monotonic() - started
    [result] = sample.results
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert "timed out" in result.reason, result.reason  # the client's own words, in time
    assert took < 1.5  # the gate's interval, not 120 s x 11 tries


async def test_a_probe_that_ignores_the_deadline_is_still_cut_at_the_interval(
    now: datetime,
) -> None:
    probe = FakeProbe(HANG, timeout=120, retries=10)
    gate = _gate({"name": "c", "probe": "p", "go": "> 0"}, interval=1)
    started = time.monotonic()
    sample = await asyncio.wait_for(take_sample(gate, {"p": probe}, now=now, values={}), 10)
    assert time.monotonic() - started < 1.5
    [result] = sample.results
    assert result.reason == "no answer within 1s"
    assert probe.cancelled == 1


async def test_the_client_stops_retrying_at_the_measurement_deadline() -> None:
    fake = JsonApiFake()
    fake.script(*(Reply(status=503, json={"error": "down"}) for _ in range(11)))
    async with fake.serving():
        client = SourceClient(base_url=fake.url, timeout=120, retries=10)
        started = time.monotonic()
        try:
            with deadline_in(1.0), pytest.raises(ProbeFailure) as failed:
                await client.get_json("/x")
        finally:
            await client.aclose()
    assert time.monotonic() - started < 1.2
    assert "HTTP 503" in failed.value.detail
    assert len(fake.requests) < 11  # the retries ended at the deadline, not at 10


async def test_a_try_is_shortened_to_the_time_left() -> None:
    fake = JsonApiFake()
    fake.script(Reply(hang=True))
    async with fake.serving():
        client = SourceClient(base_url=fake.url, timeout=60, retries=0)
        started = time.monotonic()
        try:
            with deadline_in(0.3), pytest.raises(ProbeFailure) as failed:
                await client.get_json("/x")
        finally:
            await client.aclose()
    assert time.monotonic() - started < 1.0
    assert failed.value.detail == "timed out after 0.3s"


# -- no gate starves another ---------------------------------------------------------------------

PROM_GATE = """\
interval: 30s
probes:
  prom: {{type: prometheus, url: '{url}', timeout: 10, retries: 0}}
criteria:
  - {{name: c, probe: prom, query: {query}, go: '> 0'}}
"""


async def test_a_healthy_gate_is_on_time_beside_40_gates_hanging_on_the_same_source(
    hanging_prometheus: PrometheusFake, now: datetime
) -> None:
    hanging_prometheus.script(*(Reply(hang=True) for _ in range(40)))
    catalog = GateCatalog(gates_dir=None)
    try:
        stuck = [
            catalog.put_api_gate(
                f"stuck-{i}", PROM_GATE.format(url=hanging_prometheus.url, query="up")
            )
            for i in range(40)
        ]
        healthy = catalog.put_api_gate(
            "healthy", PROM_GATE.format(url=hanging_prometheus.url, query="ok")
        )
        shared = {id(loaded.probes["prom"]) for loaded in [*stuck, healthy]}
        assert len(shared) == 1  # one probe instance, one pool, for all 41 gates
        hanging = [
            asyncio.create_task(take_sample(g.gate, g.probes, now=now, values={})) for g in stuck
        ]

        async def all_hanging() -> None:
            while len(hanging_prometheus.requests) < 40:
                await asyncio.sleep(0.01)  # bounded below; the fake records each request

        await asyncio.wait_for(all_hanging(), 10)
        started = time.monotonic()
        sample = await asyncio.wait_for(
            take_sample(healthy.gate, healthy.probes, now=now, values={}), 5
        )
        took = time.monotonic() - started
        assert [r.outcome for r in sample.results] == [CriterionOutcome.PASS]
        assert took < 1.0, f"the healthy gate waited {took:.2f}s for a connection"
        for task in hanging:
            task.cancel()
        await asyncio.gather(*hanging, return_exceptions=True)
    finally:
        await catalog.aclose()


async def test_one_sample_has_a_bounded_number_of_requests_in_flight_to_one_probe(
    now: datetime,
) -> None:
    in_flight = 0
    most = 0
    release = asyncio.Event()

    class Counting(FakeProbe):
        async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                await release.wait()
            finally:
                in_flight -= 1
            return Measurement.ok(1.0, ctx.now)

    probe = Counting()
    criteria = [
        {"name": f"c{i}", "probe": "p", "go": "> 0"} for i in range(3 * MAX_REQUESTS_PER_PROBE)
    ]
    gate = _gate(*criteria)
    task = asyncio.create_task(take_sample(gate, {"p": probe}, now=now, values={}))

    async def saturated() -> None:
        while in_flight < MAX_REQUESTS_PER_PROBE:
            await asyncio.sleep(0)

    await asyncio.wait_for(saturated(), 5)
    for _ in range(20):
        await asyncio.sleep(0)  # give the other criteria every chance to start
    assert most == MAX_REQUESTS_PER_PROBE
    release.set()
    sample = await asyncio.wait_for(task, 5)
    assert all(r.outcome is CriterionOutcome.PASS for r in sample.results)
