"""Values a check supplies are data: each probe type quotes them for its query language so
that they select exactly their literal text (docs/decisions.md, "Placeholders and
quoting"; docs/probes.md).

Each language has a tiny reader here, written apart from ``probes/quoting.py``, that takes
the filled query back apart: the property is that it finds the value, exactly, at the
placeholder's spot, and the rest of the query unchanged.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gates.placeholders import CHECK_VALUE_MAX, PlaceholderValues, check_value_problem, fill_text
from probes.alertmanager import AlertmanagerProbe
from probes.base import QuoteContext, QuoteRefused, QuotingProbe, quoter_of
from probes.datadog import DatadogProbe
from probes.http import HttpProbe
from probes.json_api import JsonProbe
from probes.newrelic import NewRelicProbe
from probes.prometheus import PrometheusProbe
from probes.quoting import quote_promql, regex_escape
from probes.sentry import SentryProbe

ALLOWED = string.ascii_letters + string.digits + "._:@+/=-"
allowed_values = st.text(alphabet=ALLOWED, min_size=1, max_size=CHECK_VALUE_MAX)

# Values a crafty pipeline might send. Those outside the allowed characters never get past
# the API (tests/app/checks/test_check_values.py); the quoting must hold for every one
# anyway, since a value can reach a probe by another road (a check stored before the rule).
INJECTIONS = [
    '1.4.2"}[5m])) > 200 or vector(0) #',
    "1.4.2'}[5m])) > 200 or vector(0) #",
    "1.4.2`) or vector(0) #",
    ".*",
    ".+",
    "1.4.1|1.4.2",
    "1.4.+",
    "(1.4.2)",
    "[0-9]+",
    "^1",
    "1$",
    "}",
    ")",
    "|",
    "#",
    "a\nb",
    "a\rb",
    "tab\there",
    "ünïcødé",
    "a\x00b",
    "\\",
    "\\\\",
    '\\"',
    '"',
    "'",
    "`",
    "*",
    "%",
    "?",
    "1.4.2 OR appName LIKE '%'",
    "1.4.2' OR '1'='1",
    "x' -- ",
    "1.4.2,env:*",
    "1.4.2}.rollup(sum)",
    "release:* level:fatal",
    "a b",
    "!release:1",
    "${version}",
    "$$",
    "x" * (CHECK_VALUE_MAX + 1),
    "1.4.2",
    "portal@2.4.0",
    "a=b",
    "a:b:c",
    "/api/v1",
    "-1",
    "+",
    ".",
    "=~",
    "x" * CHECK_VALUE_MAX,
    "1.4.2:rc1/build=7@x+y",
    "..",
]
ALLOWED_INJECTIONS = [v for v in INJECTIONS if check_value_problem(v) is None]


def test_the_corpus_has_values_on_both_sides_of_the_rule() -> None:
    assert len(ALLOWED_INJECTIONS) >= 12
    assert len(INJECTIONS) - len(ALLOWED_INJECTIONS) >= 30


# -- tiny readers ---------------------------------------------------------------------------

_GO_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


def read_go_string(text: str, start: int) -> tuple[str, int]:
    """The Go/PromQL string literal at ``text[start]`` (its quote) and the index after it."""
    quote = text[start]
    out = []
    index = start + 1
    while True:
        ch = text[index]
        if quote != "`" and ch == "\\":
            nxt = text[index + 1]
            if nxt == "x":
                out.append(chr(int(text[index + 2 : index + 4], 16)))
                index += 4
                continue
            assert nxt in _GO_ESCAPES, f"invalid escape \\{nxt} in {text!r}"
            out.append(_GO_ESCAPES[nxt])
            index += 2
            continue
        if ch == quote:
            return "".join(out), index + 1
        assert ch != "\n" or quote == "`", f"raw newline in {text!r}"
        out.append(ch)
        index += 1


def read_nrql_string(text: str, start: int) -> tuple[str, int]:
    assert text[start] == "'"
    out = []
    index = start + 1
    while text[index] != "'":
        if text[index] == "\\":
            index += 1
        out.append(text[index])
        index += 1
    return "".join(out), index + 1


_RE2_SPECIAL = set(r"\.+*?()|[]{}^$")


def regex_literal(pattern: str) -> str:
    """The one text an RE2 pattern matches, asserting it has no operator at all."""
    out = []
    index = 0
    while index < len(pattern):
        ch = pattern[index]
        if ch == "\\":
            assert pattern[index + 1] in _RE2_SPECIAL, f"needless escape in {pattern!r}"
            out.append(pattern[index + 1])
            index += 2
            continue
        assert ch not in _RE2_SPECIAL, f"unescaped {ch!r} in {pattern!r}"
        out.append(ch)
        index += 1
    return "".join(out)


def fill(probe: type[Any], template: str, value: str, field: str = "query") -> str:
    values = PlaceholderValues(gate={"ring": ".+"}, check={"version": value})
    return fill_text(template, values, field=field, quote=quoter_of(probe))


# -- PromQL ---------------------------------------------------------------------------------

PROMQL = 'sum(rate(http_requests_total{ring=~"${ring}", version="${version}"}[5m]))'
PROMQL_RE = "sum(rate(http_requests_total{version=~'${version}', code=~\"5..\"}[5m]))"


def promql_selects(template: str, value: str) -> tuple[str, str]:
    """(label value the query selects, the query with that literal cut out)."""
    filled = fill(PrometheusProbe, template, value)
    start = template.index("${version}") - 1
    prefix = fill(PrometheusProbe, template[:start], value)
    literal, end = read_go_string(filled, len(prefix))
    return literal, filled[: len(prefix)] + filled[end:]


@given(allowed_values)
def test_promql_string_values_read_back_exactly(value: str) -> None:
    literal, rest = promql_selects(PROMQL, value)
    assert literal == value
    assert rest == 'sum(rate(http_requests_total{ring=~".+", version=}[5m]))'


@given(allowed_values)
def test_promql_regex_matchers_match_only_the_literal_text(value: str) -> None:
    pattern, rest = promql_selects(PROMQL_RE, value)
    assert regex_literal(pattern) == value
    assert re.fullmatch(pattern, value)
    assert rest == 'sum(rate(http_requests_total{version=~, code=~"5.."}[5m]))'


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("template", [PROMQL, PROMQL_RE, "up{version=~`${version}`}"])
def test_promql_injections_are_literal_or_refused(template: str, value: str) -> None:
    try:
        literal, _ = promql_selects(template, value)
    except QuoteRefused:
        assert check_value_problem(value) is not None
        return
    selected = regex_literal(literal) if "version=~" in template else literal
    assert selected == value


def test_quoting_itself_neutralises_every_injection_in_every_promql_string() -> None:
    """Below the value rule: whatever the text, a string stays one string."""
    for value in INJECTIONS:
        for quote in "\"'":
            for before in (f"up{{v={quote}", f"up{{v=~{quote}"):
                quoted = quote_promql(value, QuoteContext("v", "query", before))
                literal, end = read_go_string(before + quoted + quote + "}", len(before) - 1)
                assert end == len(before) + len(quoted) + 1
                assert (regex_literal(literal) if "~" in before else literal) == value


@pytest.mark.parametrize(
    "template",
    [
        "sum(rate(x{version=~${version}}[5m]))",
        "x > ${version}",
        "rate(x[${version}])",
        'x{a="b"} # "${version}"',
    ],
)
def test_promql_refuses_a_value_outside_any_string(template: str) -> None:
    with pytest.raises(QuoteRefused, match=r"\$\{version\} in query"):
        fill(PrometheusProbe, template, "5m")


def test_promql_after_a_string_with_escaped_quotes_still_knows_where_it_is() -> None:
    template = r'x{a="say \"hi\"", b=~"${version}"}'
    assert fill(PrometheusProbe, template, "1.4.2") == r'x{a="say \"hi\"", b=~"1\\.4\\.2"}'


def test_the_gate_authors_own_values_are_inserted_as_they_are() -> None:
    values = PlaceholderValues(gate={"version": ".+"})
    filled = fill_text(
        'x{version=~"${version}"}', values, field="query", quote=PrometheusProbe.quote
    )
    assert filled == 'x{version=~".+"}'


def test_a_plain_mapping_counts_as_check_supplied() -> None:
    filled = fill_text(
        'x{version=~"${version}"}',
        PlaceholderValues.of({"version": ".+"}),
        field="query",
        quote=PrometheusProbe.quote,
    )
    assert filled == 'x{version=~"\\\\.\\\\+"}'


# -- Alertmanager matchers ------------------------------------------------------------------


@given(allowed_values, st.sampled_from(["=", "!=", "=~", "!~"]))
def test_alertmanager_matchers_read_back_exactly(value: str, op: str) -> None:
    template = f'version{op}"${{version}}"'
    filled = fill(AlertmanagerProbe, template, value, field="matchers")
    literal, end = read_go_string(filled, len(f"version{op}"))
    assert end == len(filled)
    assert (regex_literal(literal) if "~" in op else literal) == value


@pytest.mark.parametrize("value", INJECTIONS)
def test_alertmanager_injections_are_literal_or_refused(value: str) -> None:
    try:
        filled = fill(AlertmanagerProbe, 'version=~"${version}"', value, field="matchers")
    except QuoteRefused:
        assert check_value_problem(value) is not None
        return
    literal, end = read_go_string(filled, len("version=~"))
    assert (regex_literal(literal), end) == (value, len(filled))


def test_alertmanager_refuses_an_unquoted_matcher_value() -> None:
    with pytest.raises(QuoteRefused, match="quoted"):
        fill(AlertmanagerProbe, "version=${version}", "1.4.2", field="matchers")


# -- NRQL -----------------------------------------------------------------------------------

NRQL = "SELECT count(*) FROM Transaction WHERE appVersion = '${version}' SINCE 5 minutes ago"


def nrql_selects(template: str, value: str) -> tuple[str, str]:
    filled = fill(NewRelicProbe, template, value)
    start = template.index("'")
    literal, end = read_nrql_string(filled, start)
    return literal, filled[:start] + filled[end:]


@given(allowed_values)
def test_nrql_string_literals_read_back_exactly(value: str) -> None:
    literal, rest = nrql_selects(NRQL, value)
    assert literal == value
    assert rest == "SELECT count(*) FROM Transaction WHERE appVersion =  SINCE 5 minutes ago"


@given(allowed_values)
def test_nrql_rlike_patterns_match_only_the_literal_text(value: str) -> None:
    literal, _ = nrql_selects("SELECT count(*) FROM T WHERE appVersion RLIKE '${version}'", value)
    assert regex_literal(literal) == value


@given(allowed_values)
def test_nrql_like_keeps_only_the_authors_wildcards(value: str) -> None:
    literal, _ = nrql_selects("SELECT count(*) FROM T WHERE name LIKE '%${version}%'", value)
    assert literal == f"%{value}%"


@pytest.mark.parametrize("value", INJECTIONS)
def test_nrql_injections_are_literal_or_refused(value: str) -> None:
    try:
        literal, rest = nrql_selects(NRQL, value)
    except QuoteRefused:
        assert check_value_problem(value) is not None
        return
    assert literal == value
    assert rest.endswith("=  SINCE 5 minutes ago")


@pytest.mark.parametrize(
    "template",
    [
        "SELECT count(*) FROM T WHERE appVersion = ${version}",
        "SELECT count(*) FROM T WHERE `${version}` = 1",
        'SELECT count(*) FROM T WHERE appVersion = "${version}"',
        "SELECT count(*) FROM T -- '${version}'",
        "SELECT count(*) FROM T WHERE name LIKE '${version}' /* '${version}' */",
    ],
)
def test_nrql_refuses_a_value_outside_a_string_literal(template: str) -> None:
    with pytest.raises(QuoteRefused, match="NRQL"):
        fill(NewRelicProbe, template, "1.4.2")


# -- Datadog --------------------------------------------------------------------------------

DATADOG = "sum:trace.http.request.errors{service:web,version:${version}}.as_count()"


def datadog_tags(query: str) -> list[str]:
    scope = re.fullmatch(r"sum:trace\.http\.request\.errors\{([^{}]*)\}\.as_count\(\)", query)
    assert scope is not None, query
    return scope.group(1).split(",")


@given(allowed_values)
def test_datadog_tag_values_are_one_whole_tag_or_refused(value: str) -> None:
    try:
        filled = fill(DatadogProbe, DATADOG, value)
    except QuoteRefused as refused:
        assert re.search(r"[@+=]", value)
        assert "tag value" in str(refused)
        return
    assert datadog_tags(filled) == ["service:web", f"version:{value}"]


@pytest.mark.parametrize("value", INJECTIONS)
def test_datadog_injections_are_one_tag_or_refused(value: str) -> None:
    try:
        filled = fill(DatadogProbe, DATADOG, value)
    except QuoteRefused:
        return
    assert check_value_problem(value) is None
    assert datadog_tags(filled) == ["service:web", f"version:{value}"]


@pytest.mark.parametrize(
    "template",
    [
        "sum:${version}{*}",
        "sum:errors{${version}}",
        "sum:errors{version:v${version}}",
        "sum:errors{version:${version}*}",
        "sum:errors{env:prod}.rollup(${version})",
    ],
)
def test_datadog_refuses_a_value_that_is_not_a_whole_tag_value(template: str) -> None:
    with pytest.raises(QuoteRefused):
        fill(DatadogProbe, template, "1.4.2")


# -- Sentry ---------------------------------------------------------------------------------

_SENTRY_TERM = re.compile(r'(?P<key>[a-zA-Z.]+:)?(?P<value>"(?:\\"|[^"])*"|[^\s"]+)')


def sentry_terms(search: str) -> list[tuple[str, str]]:
    terms = []
    for match in _SENTRY_TERM.finditer(search):
        value = match["value"]
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"')
        else:
            assert not re.search(r"[*:=<>!]", value), f"bare value {value!r} has an operator"
        terms.append((match["key"] or "", value))
    assert "".join(m.group(0) + " " for m in _SENTRY_TERM.finditer(search)).strip() == search
    return terms


@given(allowed_values)
def test_sentry_search_values_are_one_term_with_exactly_that_value(value: str) -> None:
    filled = fill(SentryProbe, "release:${version} level:fatal", value, field="params.query")
    assert sentry_terms(filled) == [("release:", value), ("level:", "fatal")]


@given(allowed_values)
def test_sentry_free_text_is_one_term(value: str) -> None:
    filled = fill(SentryProbe, "is:unresolved ${version}", value, field="params.query")
    assert sentry_terms(filled) == [("is:", "unresolved"), ("", value)]


@pytest.mark.parametrize("value", INJECTIONS)
def test_sentry_injections_are_one_term_or_refused(value: str) -> None:
    try:
        filled = fill(SentryProbe, "release:${version} level:fatal", value, field="params.query")
    except QuoteRefused:
        assert check_value_problem(value) is not None
        return
    assert sentry_terms(filled) == [("release:", value), ("level:", "fatal")]


@pytest.mark.parametrize(
    "template", ['release:"${version}"', "release:v${version}", "release:${version}*"]
)
def test_sentry_refuses_part_of_a_value(template: str) -> None:
    with pytest.raises(QuoteRefused):
        fill(SentryProbe, template, "1.4.2", field="params.query")


def test_sentry_release_params_are_a_release_name_the_probe_quotes_itself() -> None:
    assert fill(SentryProbe, "${version}", "a:b", field="params.release") == "a:b"


@pytest.mark.parametrize("field", ["query", "min_volume.query", "path", "matchers"])
def test_sentry_refuses_values_in_keys_it_does_not_read(field: str) -> None:
    with pytest.raises(QuoteRefused, match="only in params"):
        fill(SentryProbe, "release:${version}", "1.4.2", field=field)


# -- json, http, names ----------------------------------------------------------------------


@given(allowed_values)
def test_json_path_values_are_exactly_one_step(value: str) -> None:
    try:
        filled = fill(JsonProbe, "releases.${version}.rate", value, field="path")
    except QuoteRefused:
        assert "." in value
        return
    assert filled.split(".") == ["releases", value, "rate"]


def test_http_takes_no_check_supplied_value() -> None:
    with pytest.raises(QuoteRefused, match="http"):
        fill(HttpProbe, "${version}", "up", field="metric")


@pytest.mark.parametrize(
    "probe", [PrometheusProbe, AlertmanagerProbe, DatadogProbe, NewRelicProbe, SentryProbe]
)
@pytest.mark.parametrize("field", ["metric", "field"])
def test_a_check_cannot_choose_what_is_measured(probe: type[Any], field: str) -> None:
    with pytest.raises(QuoteRefused, match="names what is measured"):
        fill(probe, "${version}", "events", field=field)


BUILT_IN = [
    PrometheusProbe,
    AlertmanagerProbe,
    DatadogProbe,
    NewRelicProbe,
    SentryProbe,
    JsonProbe,
    HttpProbe,
]


@pytest.mark.parametrize("probe", BUILT_IN)
def test_every_built_in_type_quotes(probe: type[Any]) -> None:
    assert quoter_of(probe) is not None
    assert isinstance(probe.__new__(probe), QuotingProbe)


@pytest.mark.parametrize("probe", BUILT_IN)
@pytest.mark.parametrize("value", [v for v in INJECTIONS if check_value_problem(v) is not None])
def test_values_outside_the_rule_never_reach_any_probe(probe: type[Any], value: str) -> None:
    seen: list[str] = []

    def spy(text: str, context: QuoteContext) -> str:
        seen.append(text)
        quote: Callable[[str, QuoteContext], str] = probe.quote
        return quote(text, context)

    with pytest.raises(QuoteRefused, match="the value a check supplied"):
        fill_text(
            'x{v="${version}"}',
            PlaceholderValues(check={"version": value}),
            field="query",
            quote=spy,
        )
    assert seen == []


def test_regex_escape_is_what_re2_needs() -> None:
    assert regex_escape("1.4.2+build|x") == r"1\.4\.2\+build\|x"
