"""Quoting as the sampler and the loader apply it: provenance of values, refusals that
become inconclusive outcomes, and gates refused at load (docs/decisions.md, "Placeholders
and quoting")."""

from __future__ import annotations

import textwrap
from datetime import datetime
from typing import Any, ClassVar

import pytest

import gates.criteria_checks
from gates.engine import CriterionOutcome, Decision, decide
from gates.loader import check_gate_text
from gates.model import Criterion, Gate
from gates.sampler import placeholder_values, take_sample
from probes.base import Measurement, ProbeConfig, ProbeContext, ProbeQuery, QuoteContext
from probes.quoting import quote_promql
from probes.registry import probe_type
from probes.sentry import SentryConfig, SentryProbe
from tests.fakeprobe import FakeProbe


class PromQLRecorder(FakeProbe):
    """Records what it is asked, quoting as the prometheus type does."""

    def quote(self, value: str, context: QuoteContext) -> str:
        return quote_promql(value, context)


class Unquoting:
    """A third-party probe instance with no ``quote``."""

    type_name: ClassVar[str] = "plain"
    config_model: ClassVar[type[ProbeConfig]] = ProbeConfig

    def __init__(self) -> None:
        self.config = ProbeConfig(type="plain")
        self.asked: list[ProbeQuery] = []

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        self.asked.append(query)
        return Measurement.ok(0.0, ctx.now)

    async def aclose(self) -> None:
        return None


ERROR_RATE = (
    'sum(rate(http_requests_total{code=~"5..",version=~"${version}"}[5m]))'
    ' / sum(rate(http_requests_total{version=~"${version}"}[5m]))'
)


def gate(**criterion: Any) -> Gate:
    return Gate(
        name="portal",
        steady_for=1,
        vars={"version": ".+"},
        probes={"p": ProbeConfig(type="prometheus")},
        criteria=[Criterion(probe="p", name="error-rate", go="< 1%", **criterion)],
    )


@pytest.mark.parametrize("version", [".+", "1.4.+", "1.4.2", "..", "+"])
async def test_a_check_version_is_quoted_and_the_gate_default_is_not(
    now: datetime, version: str
) -> None:
    portal = gate(
        query=ERROR_RATE,
        min_volume={"query": 'sum(increase(x{version=~"${version}"}[5m]))', "at_least": 0},
    )
    probe = PromQLRecorder(0.0)
    await take_sample(portal, {"p": probe}, now=now, values=placeholder_values(portal))
    await take_sample(
        portal, {"p": probe}, now=now, values=placeholder_values(portal, version=version)
    )
    sent = sorted(c.query.query or "" for c in probe.calls)
    escaped = version.replace(".", "\\\\.").replace("+", "\\\\+")
    assert sent == sorted(
        [
            ERROR_RATE.replace("${version}", ".+"),
            'sum(increase(x{version=~".+"}[5m]))',
            ERROR_RATE.replace("${version}", escaped),
            f'sum(increase(x{{version=~"{escaped}"}}[5m]))',
        ]
    )


async def test_check_vars_are_quoted_too(now: datetime) -> None:
    portal = gate(query='x{ring=~"${ring}"}').model_copy(update={"vars": {"ring": ".+"}})
    probe = PromQLRecorder(0.0)
    values = placeholder_values(portal, check_vars={"ring": "ring.1+x"})
    await take_sample(portal, {"p": probe}, now=now, values=values)
    assert probe.calls[0].query.query == 'x{ring=~"ring\\\\.1\\\\+x"}'


async def test_a_refused_value_is_inconclusive_with_its_reason_and_never_go(
    now: datetime,
) -> None:
    portal = gate(query="sum(rate(x[${version}]))")
    probe = PromQLRecorder(0.0)
    sample = await take_sample(
        portal, {"p": probe}, now=now, values=placeholder_values(portal, version="5m")
    )
    result = sample.results[0]
    assert result.outcome is CriterionOutcome.INCONCLUSIVE
    assert result.reason.startswith("${version} in query: it is in no quoted string")
    assert probe.calls == []
    assert decide(portal, [sample]).decision is Decision.NO_GO


@pytest.mark.parametrize("version", ['1.4.2"}) or vector(0) #', "1.4.1|1.4.2", "", "x" * 129])
async def test_a_value_outside_the_rule_is_inconclusive_whoever_let_it_through(
    now: datetime, version: str
) -> None:
    portal = gate(query=ERROR_RATE)
    probe = PromQLRecorder(0.0)
    sample = await take_sample(
        portal, {"p": probe}, now=now, values=placeholder_values(portal, version=version)
    )
    assert sample.results[0].outcome is CriterionOutcome.INCONCLUSIVE
    assert "the value a check supplied" in sample.results[0].reason
    assert probe.calls == []


async def test_a_probe_without_quote_is_never_given_a_check_value(now: datetime) -> None:
    portal = gate(query=ERROR_RATE)
    probe = Unquoting()
    sample = await take_sample(
        portal, {"p": probe}, now=now, values=placeholder_values(portal, version="1.4.2")
    )
    assert sample.results[0].outcome is CriterionOutcome.INCONCLUSIVE
    assert "cannot quote" in sample.results[0].reason
    assert probe.asked == []
    # The gate's own defaults still reach it: its author wrote them.
    sample = await take_sample(portal, {"p": probe}, now=now, values=placeholder_values(portal))
    assert sample.results[0].outcome is CriterionOutcome.PASS


# -- at load --------------------------------------------------------------------------------


def load(text: str) -> list[str]:
    return [str(p) for p in check_gate_text(textwrap.dedent(text), name="g", source="g.yaml")[1]]


def test_a_probe_type_without_quote_refuses_placeholders_a_check_may_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = probe_type

    def types(name: str) -> Any:
        return Unquoting if name == "plain" else real(name)

    monkeypatch.setattr(gates.criteria_checks, "probe_type", types)
    problems = load(
        """\
        vars: {region: eu}
        probes:
          x: {type: plain}
        criteria:
          - name: a
            probe: x
            query: 'thing{v="${version}", r="${region}"}'
            go: "> 0"
          - {name: b, probe: x, query: "thing", go: "> 0"}
        """
    )
    assert problems == [
        "g.yaml:7:12: criteria[0].query: probe type 'plain' cannot quote values a check"
        " supplies, and a check may set ${region}, ${version} (hint: use a probe type with"
        " quote(value, context), or write the value into the query itself)"
    ]


def test_a_check_placeholder_where_the_probe_refuses_every_value_is_refused_at_load() -> None:
    problems = load(
        """\
        probes:
          prom: {type: prometheus, url: "http://prometheus:9090"}
        criteria:
          - name: a
            probe: prom
            query: 'sum(rate(x{version=~${version}}[5m]))'
            go: "> 0"
        """
    )
    assert len(problems) == 1
    assert problems[0].startswith("g.yaml:6:12: criteria[0].query: ${version} in query:")
    assert "quoted label value" in problems[0]


def test_an_authors_var_outside_a_string_still_loads() -> None:
    assert (
        load(
            """\
            vars: {range: 5m}
            probes:
              prom: {type: prometheus, url: "http://prometheus:9090"}
            criteria:
              - {name: a, probe: prom, query: 'sum(rate(x[${range}]))', go: "> 0"}
            """
        )
        == []
    )


def test_the_readme_criteria_load_with_the_real_types() -> None:
    assert (
        load(
            """\
            vars: {environment: production, version: ".+"}
            probes:
              prom: {type: prometheus, url: "http://prometheus:9090"}
              alerts: {type: alertmanager, url: "http://alertmanager:9093"}
              dd: {type: datadog, api_key_env: GONOGO_PROBE_DD, app_key_env: GONOGO_PROBE_DDA}
              nr: {type: newrelic, account_id: 1, api_key_env: GONOGO_PROBE_NR}
              errors: {type: sentry, org: o, project: p, token_env: GONOGO_PROBE_SENTRY}
            criteria:
              - name: error-rate
                probe: prom
                query: 'sum(rate(x{environment="${environment}",version=~"${version}"}[5m]))'
                go: "< 1%"
              - {name: alerts, probe: alerts, matchers: ['version="${version}"'], go: "== 0"}
              - {name: dd, probe: dd, query: 'avg:errors{version:${version}}', go: "< 1"}
              - name: nr
                probe: nr
                query: "SELECT count(*) FROM T WHERE appVersion = '${version}'"
                go: "< 1"
              - name: fatal
                probe: errors
                metric: new_issues
                params: {query: "release:${version} level:fatal"}
                go: "== 0"
            """
        )
        == []
    )


async def test_a_release_sentry_cannot_write_is_an_error_measurement_not_a_raise(
    now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GONOGO_PROBE_SENTRY_TOKEN", "t")
    config = SentryConfig(
        type="sentry", org="o", project="1", token_env="GONOGO_PROBE_SENTRY_TOKEN"
    )
    probe = SentryProbe(config, name="s")
    try:
        answer = await probe.measure(
            ProbeQuery(metric="crash_free_rate"),
            ProbeContext(now=now, variables={"version": "a\\b"}),
        )
    finally:
        await probe.aclose()
    assert answer.status.value == "error"
    assert "cannot be written as a Sentry search value" in answer.detail
