"""Quoting check-supplied values for each query language (the rules are in docs/probes.md).

A value a check supplies (its ``version``, ``environment``, ``stage`` or ``vars``) is
data: once inserted into a query it must select exactly what its literal text names. It
can never close a string, add a term, a wildcard or a regex alternative, or change the
query's structure. Each function here is given the value and a ``QuoteContext`` (which
query field, the text before the placeholder with earlier placeholders already filled,
and the unfilled text after it), works out where in the language the placeholder sits,
and returns the text to insert, or raises ``QuoteRefused`` saying why the value cannot be
placed there safely. The built-in probe types' ``quote`` methods delegate here.

Refusing is always safe: the criterion is then inconclusive, never ``go``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from probes.base import QuoteContext, QuoteRefused

# Characters Go's regexp.QuoteMeta escapes: with these escaped, an RE2 pattern (Prometheus,
# Alertmanager and NRQL RLIKE all use RE2, fully anchored by the first two) matches only
# the value's literal text.
_REGEX_SPECIAL = frozenset(r"\.+*?()|[]{}^$")
_REGEX_OPERATORS = ("=~", "!~")
# Criterion keys that name what is measured rather than filter it: a check cannot choose.
_NAME_FIELDS = ("metric", "field")


def regex_escape(value: str) -> str:
    """``value`` as an RE2 pattern that matches exactly that text."""
    return "".join("\\" + ch if ch in _REGEX_SPECIAL else ch for ch in value)


def _refuse(context: QuoteContext, why: str) -> QuoteRefused:
    return QuoteRefused(f"${{{context.name}}} in {context.field}: {why}")


def _refuse_names(context: QuoteContext) -> None:
    if context.field in _NAME_FIELDS:
        raise _refuse(
            context,
            f"{context.field}: names what is measured; a check-supplied value cannot choose it",
        )


def _escape_in_quotes(value: str, quote: str) -> str:
    """Backslash escapes for a Go-style quoted string (PromQL, Alertmanager matchers)."""
    out = []
    for ch in value:
        if ch in ("\\", quote):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _Position:
    """Where the end of a text leaves a lexer: inside a string (and which quote), or not."""

    quote: str | None  # the open string's quote character, None outside any string
    regex: bool = False  # the open string is a regex (it follows =~ or !~)
    comment: bool = False  # the text ends inside a comment
    opener: str = ""  # the text before the open string's quote


# -- PromQL and Alertmanager matchers -----------------------------------------------------


def _promql_position(text: str) -> _Position:
    quote: str | None = None
    opener = ""
    index = 0
    while index < len(text):
        ch = text[index]
        if quote is not None:
            if ch == "\\" and quote != "`":
                index += 2
                continue
            if ch == quote:
                quote = None
        elif ch == "#":
            end = text.find("\n", index)
            if end < 0:
                return _Position(None, comment=True)
            index = end
        elif ch in "\"'`":
            quote = ch
            opener = text[:index]
        index += 1
    if quote is None:
        return _Position(None)
    return _Position(quote, regex=opener.rstrip().endswith(_REGEX_OPERATORS), opener=opener)


def _promql_string_value(value: str, context: QuoteContext, language: str) -> str:
    position = _promql_position(context.before)
    if position.quote is None:
        where = "a comment" if position.comment else "no quoted string"
        raise _refuse(
            context,
            f"it is in {where}; in {language} a check-supplied value must sit inside a quoted"
            f' label value, e.g. version="${{{context.name}}}"',
        )
    text = regex_escape(value) if position.regex else value
    if position.quote == "`":
        if "`" in text:
            raise _refuse(context, "a `raw string` cannot hold a backtick")
        return text
    return _escape_in_quotes(text, position.quote)


def quote_promql(value: str, context: QuoteContext) -> str:
    """PromQL: only inside a quoted string; escaped for it, and regex-escaped after =~/!~."""
    _refuse_names(context)
    return _promql_string_value(value, context, "PromQL")


def quote_alertmanager(value: str, context: QuoteContext) -> str:
    """Alertmanager matchers: as PromQL label matchers (``name="value"``, ``name=~"re"``)."""
    _refuse_names(context)
    if context.field != "matchers":
        raise _refuse(context, "alertmanager reads only matchers:")
    return _promql_string_value(value, context, "an Alertmanager matcher")


# -- NRQL ---------------------------------------------------------------------------------

_LIKE = re.compile(r"(?:^|\s)(NOT\s+)?(?P<op>R?LIKE)\s*$", re.IGNORECASE)


def _nrql_position(text: str) -> _Position:
    quote: str | None = None
    opener = ""
    index = 0
    while index < len(text):
        ch = text[index]
        if quote is not None:
            if ch == "\\" and quote == "'":
                index += 2
                continue
            if ch == quote:
                quote = None
        elif text.startswith(("--", "//"), index):
            end = text.find("\n", index)
            if end < 0:
                return _Position(None, comment=True)
            index = end
        elif text.startswith("/*", index):
            end = text.find("*/", index + 2)
            if end < 0:
                return _Position(None, comment=True)
            index = end + 1
        elif ch in "'`\"":
            quote = ch
            opener = text[:index]
        index += 1
    return _Position(quote, opener=opener) if quote is not None else _Position(None)


def quote_nrql(value: str, context: QuoteContext) -> str:
    """NRQL: only inside a '...' string literal; LIKE refuses %, RLIKE regex-escapes."""
    _refuse_names(context)
    position = _nrql_position(context.before)
    if position.quote != "'":
        what = {
            None: "a comment" if position.comment else "no string literal",
            "`": "a `quoted identifier`",
            '"': 'a "double-quoted" text, which NRQL does not read as a string',
        }[position.quote]
        raise _refuse(
            context,
            f"it is in {what}; in NRQL a check-supplied value must sit inside a"
            f" '...' string literal, e.g. appVersion = '${{{context.name}}}'",
        )
    like = _LIKE.search(position.opener)
    text = value
    if like is not None and like["op"].upper() == "RLIKE":
        text = regex_escape(value)
    elif like is not None and "%" in value:
        raise _refuse(context, "% is the LIKE wildcard; a check-supplied value cannot hold it")
    out = []
    for ch in text:
        if ch in ("\\", "'"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise _refuse(context, "control characters cannot be written in an NRQL string")
        else:
            out.append(ch)
    return "".join(out)


# -- Datadog metric queries ---------------------------------------------------------------

_DATADOG_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.:/-]+$")
_DATADOG_TAG_KEY = re.compile(r"(?:^|[{,\s(!])[A-Za-z][A-Za-z0-9_./-]*:$")
_DATADOG_VALUE_END = re.compile(r"^(?:$|[,}\s)])")


def quote_datadog(value: str, context: QuoteContext) -> str:
    """Datadog: only as a whole tag value (``{key:${name}}``), of tag characters only."""
    _refuse_names(context)
    before = context.before
    scope = before.rfind("{")
    if scope < 0 or "}" in before[scope:]:
        raise _refuse(
            context,
            "it is outside a {...} scope; in a Datadog query a check-supplied value must be"
            f" a tag value, e.g. {{version:${{{context.name}}}}}",
        )
    if not _DATADOG_TAG_KEY.search(before[scope:]) or not _DATADOG_VALUE_END.match(context.after):
        raise _refuse(
            context,
            "it must be a whole tag value right after key: (e.g. {version:${"
            f"{context.name}}},env:prod}})",
        )
    if not _DATADOG_TAG_VALUE.match(value):
        raise _refuse(
            context,
            "a Datadog tag value holds only letters, digits and _ . : / -,"
            f" so {value!r} could not match any tag",
        )
    return value


# -- Sentry search ------------------------------------------------------------------------

_SENTRY_BARE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+/-]*$")
_SENTRY_KEY = re.compile(r"(?:^|[\s(!])[A-Za-z0-9_.\[\]-]+:$")
_SENTRY_TERM_START = re.compile(r"(?:^|[\s(])$")
_SENTRY_TERM_END = re.compile(r"^(?:$|[\s)])")


def sentry_search_value(value: str) -> str:
    """``value`` as one search value: bare when it cannot mean anything else, else quoted.

    Bare values are letters, digits and ``_ . @ + / -``, starting with a letter or digit
    (no wildcard, operator, colon, space or quote); anything else is written in double
    quotes, where only ``\\"`` is an escape, so a backslash cannot be written.
    """
    if _SENTRY_BARE.match(value):
        return value
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise QuoteRefused(
            f"{value!r} cannot be written as a Sentry search value (backslash or control character)"
        )
    return '"' + value.replace('"', '\\"') + '"'


def quote_sentry(value: str, context: QuoteContext) -> str:
    """Sentry: a whole search value (``release:${version}``) or a whole free-text term."""
    _refuse_names(context)
    if context.field == "params.release":
        return value  # a release name, not search syntax: the probe writes it as a value
    if context.field != "params.query":
        raise _refuse(context, "sentry reads check-supplied values only in params")
    before = context.before
    open_quotes = before.count('"') - before.count('\\"')
    if open_quotes % 2 == 1:
        raise _refuse(
            context,
            'it is inside a "quoted value"; write key:${name} without quotes and gonogo quotes it',
        )
    whole_value = _SENTRY_KEY.search(before) or _SENTRY_TERM_START.search(before)
    if not whole_value or not _SENTRY_TERM_END.match(context.after):
        raise _refuse(
            context,
            f"it must be a whole value (release:${{{context.name}}}) or a whole term,"
            " not part of one",
        )
    try:
        return sentry_search_value(value)
    except QuoteRefused as refused:
        raise _refuse(context, str(refused)) from None


# -- json and http ------------------------------------------------------------------------


def quote_json(value: str, context: QuoteContext) -> str:
    """json: a value in ``path`` is one step of the dotted path; ``params`` are data."""
    _refuse_names(context)
    if context.field == "path":
        if "." in value or not value:
            raise _refuse(
                context,
                f"{value!r} would not be one step of the dotted path (a step holds no .)",
            )
        return value
    if context.field.startswith("params."):
        return value
    raise _refuse(context, "the json probe reads only path:")


def quote_http(value: str, context: QuoteContext) -> str:
    """http: its criterion keys name what to measure; a check-supplied value has no place."""
    raise _refuse(context, "the http probe takes no check-supplied values")
