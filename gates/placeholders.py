"""``${name}`` placeholders: the checks of a gate definition, the rule for values a check
supplies, and filling a query with values that keep track of where they came from.

A criterion's query strings may use the placeholders every check fills
(``CHECK_PLACEHOLDERS``) and the keys of the gate's ``vars``; a probe's settings may use
none, since its connection is shared by every check of the gate. Values the gate's own
``vars`` give are written by the gate's author and inserted as they are; values a check
supplies are quoted by the probe for its query language (docs/decisions.md, "Placeholders
and quoting").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gates.conditions import Placeholders, UnfilledPlaceholder, placeholder_names
from gates.errors import Loc
from gates.model import Baseline, Criterion, Gate
from gates.problems import Problems, did_you_mean
from probes.base import QuoteContext, QuoteRefused, quoter_of

# Placeholders every check can fill; anything else must have a default under ``vars``.
CHECK_PLACEHOLDERS = ("version", "environment", "stage")

# Names gonogo fills itself; a check may not set them.
RESERVED_NAMES = ("window",)
RESERVED_PREFIXES = ("baseline_",)

# What a check may supply as a value (version, environment, stage, vars values) and as a
# vars key: enough for versions, image tags, regions and ring names, nothing that any
# query language reads as syntax once the probe has quoted it.
CHECK_VALUE_CHARS = "A-Z a-z 0-9 . _ : @ + / = -"
CHECK_VALUE_MAX = 128
_CHECK_VALUE = re.compile(r"[A-Za-z0-9._:@+/=-]{1,128}")

Quote = Callable[[str, QuoteContext], str]
# string.Template compiles its pattern (verbosely) when the class is made; reuse it.
_PLACEHOLDER: re.Pattern[str] = re.compile(Placeholders.pattern)


def check_value_problem(value: str) -> str | None:
    """Why ``value`` may not be supplied by a check, or None when it may."""
    if _CHECK_VALUE.fullmatch(value):
        return None
    if not value:
        return "must not be empty"
    if len(value) > CHECK_VALUE_MAX:
        return f"at most {CHECK_VALUE_MAX} characters, got {len(value)}"
    bad = next(ch for ch in value if not _CHECK_VALUE.fullmatch(ch))
    return f"{bad!r} is not allowed: use 1-{CHECK_VALUE_MAX} characters of {CHECK_VALUE_CHARS}"


def reserved_name_problem(name: str) -> str | None:
    """Why a check may not set the placeholder ``name`` (gonogo fills it), or None."""
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        return f"${{{name}}} is filled by gonogo itself; a check cannot set it"
    return None


@dataclass(frozen=True, eq=False)
class PlaceholderValues(Mapping[str, str]):
    """Values for ``${name}`` that remember who supplied them.

    ``check`` (a check's version, environment, stage and vars, or ``--var`` options)
    wins over ``gate`` (the gate's ``vars``, its author's defaults). Only ``check``
    values are quoted by the probe.
    """

    gate: Mapping[str, str] = field(default_factory=dict)
    check: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, values: Mapping[str, str]) -> PlaceholderValues:
        """``values`` as they are; a plain mapping is taken as supplied by a check, since
        nothing says an author wrote it (quoting a value is never unsafe)."""
        return values if isinstance(values, PlaceholderValues) else cls(check=dict(values))

    def supplied(self, name: str) -> bool:
        return name in self.check

    def __getitem__(self, name: str) -> str:
        if name in self.check:
            return self.check[name]
        return self.gate[name]

    def __iter__(self) -> Iterator[str]:
        yield from self.check
        yield from (name for name in self.gate if name not in self.check)

    def __len__(self) -> int:
        return len(set(self.check) | set(self.gate))


def fill_text(text: str, values: PlaceholderValues, *, field: str, quote: Quote | None) -> str:
    """``text`` with every ``${name}`` filled, left to right.

    A check-supplied value goes through ``quote`` with the text filled so far, so the
    probe sees where it stands; raises ``UnfilledPlaceholder`` for a name without a value
    and ``QuoteRefused`` for a value that cannot be placed there.
    """

    def place(name: str, before: str, after: str) -> str:
        value = values[name]
        if not values.supplied(name):
            return value
        problem = check_value_problem(value)
        if problem is not None:
            raise QuoteRefused(f"${{{name}}}: the value a check supplied {problem}")
        if quote is None:
            raise QuoteRefused(
                f"${{{name}}} in {field}: this probe type cannot quote a value a check supplies"
            )
        return quote(value, QuoteContext(name=name, field=field, before=before, after=after))

    return _substitute(text, values, place)


def baseline_values(values: PlaceholderValues, baseline: Baseline) -> PlaceholderValues:
    """The values a criterion's baseline run fills its query with: ``values``, with each
    name of ``baseline.vars`` set to that var's text, its own placeholders filled from
    ``values``. A var that takes any value from a check stays check-supplied, so the probe
    quotes it like the canary's; one its author wrote out is inserted as it is. Raises
    ``UnfilledPlaceholder`` for a name without a value."""
    gate = dict(values.gate)
    check = dict(values.check)
    for name, text in baseline.vars.items():
        filled, from_check = _fill_unquoted(text, values)
        gate.pop(name, None)
        check.pop(name, None)
        (check if from_check else gate)[name] = filled
    return PlaceholderValues(gate=gate, check=check)


def _fill_unquoted(text: str, values: PlaceholderValues) -> tuple[str, bool]:
    """``text`` with its placeholders filled as they are, and whether a check supplied any."""
    supplied: list[str] = []

    def place(name: str, _before: str, _after: str) -> str:
        if values.supplied(name):
            supplied.append(name)
        return values[name]

    return _substitute(text, values, place), bool(supplied)


def _substitute(text: str, values: PlaceholderValues, place: Callable[[str, str, str], str]) -> str:
    """``text`` with each ``${name}`` replaced by ``place(name, filled so far, rest)`` and
    each ``$$`` by ``$``; raises ``UnfilledPlaceholder`` for a name without a value."""
    out: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        out.append(text[position : match.start()])
        position = match.end()
        if match["escaped"] is not None:
            out.append("$")
            continue
        name = match["braced"]
        if name is None:
            raise UnfilledPlaceholder(match.group(0))
        if name not in values:
            raise UnfilledPlaceholder(name)
        out.append(place(name, "".join(out), text[position:]))
    out.append(text[position:])
    return "".join(out)


_BAD_PLACEHOLDER = re.compile(r"\$\{(?![A-Za-z_][A-Za-z0-9_]*\})[^}]*\}")


def _field_name(location: Loc, at: Loc) -> str:
    """``query``, ``min_volume.query``, ``matchers`` or ``params.<key>``: as probes see it."""
    inside = location[len(at) :]
    if inside and inside[0] == "matchers":
        return "matchers"
    return ".".join(str(step) for step in inside)


def _placeholder_strings(raw: Mapping[str, Any], at: Loc) -> list[tuple[Loc, str]]:
    strings: list[tuple[Loc, str]] = []
    for key in ("query", "metric", "path", "field"):
        if isinstance(raw.get(key), str):
            strings.append(((*at, key), raw[key]))
    matchers = raw.get("matchers")
    if isinstance(matchers, list):
        strings.extend(
            ((*at, "matchers", i), m) for i, m in enumerate(matchers) if isinstance(m, str)
        )
    params = raw.get("params")
    if isinstance(params, Mapping):
        strings.extend(((*at, "params", k), v) for k, v in params.items() if isinstance(v, str))
    min_volume = raw.get("min_volume")
    if isinstance(min_volume, Mapping) and isinstance(min_volume.get("query"), str):
        strings.append(((*at, "min_volume", "query"), min_volume["query"]))
    return strings


def check_placeholders(
    raw: Mapping[str, Any], at: Loc, declared: Sequence[str], problems: Problems
) -> None:
    """Malformed or unknown placeholders in the criterion ``raw`` (``declared``: vars keys)."""
    known = [*CHECK_PLACEHOLDERS, *declared]
    for location, text in _placeholder_strings(raw, at):
        for bad in _BAD_PLACEHOLDER.finditer(text):
            problems.add(
                location,
                f"malformed placeholder {bad.group(0)!r}",
                "a placeholder is ${name}: letters, digits and _, no spaces",
            )
        for name in sorted(placeholder_names(text) - set(known)):
            suggestion = did_you_mean(name, known)
            problems.add(
                location,
                f"placeholder ${{{name}}} is not version, environment, stage or a key of vars",
                f"did you mean ${{{suggestion}}}?"
                if suggestion
                else "declare it under vars: with a default (a check's vars still override it)",
            )


def _query_placeholders(criterion: Criterion) -> set[str]:
    """Every ``${name}`` the criterion's query keys use (its baseline's vars aside)."""
    query = criterion.probe_query()
    texts = [query.query, query.metric, query.path, query.field, *query.matchers]
    texts.extend(query.params.values())
    if criterion.min_volume is not None:
        texts.append(criterion.min_volume.query)
    if criterion.slo is not None:
        texts.extend((criterion.slo.errors, criterion.slo.total))
    if criterion.baseline is not None:
        texts.extend(criterion.baseline.vars.values())
    return set().union(*(placeholder_names(t) for t in texts if t is not None))


def criterion_placeholders(criterion: Criterion) -> set[str]:
    """Every ``${name}`` the criterion's query keys and its baseline's vars use."""
    names = _query_placeholders(criterion)
    if criterion.baseline is not None:
        names |= set().union(*(placeholder_names(t) for t in criterion.baseline.vars.values()))
    return names


def check_baseline(
    raw: Mapping[str, Any], at: Loc, declared: Sequence[str], problems: Problems
) -> None:
    """The ``baseline.vars`` of the criterion ``raw``: each names a placeholder its query
    uses (else the baseline run would ask the canary's question), none that gonogo fills
    itself, and each value uses only placeholders that have a value."""
    baseline = raw.get("baseline")
    variables = baseline.get("vars") if isinstance(baseline, Mapping) else None
    if not isinstance(variables, Mapping):
        return
    known = [*CHECK_PLACEHOLDERS, *declared]
    used = set().union(*(placeholder_names(text) for _, text in _placeholder_strings(raw, at)))
    for name, text in variables.items():
        location: Loc = (*at, "baseline", "vars", name)
        if reserved_name_problem(str(name)) is not None:
            problems.add(
                location,
                f"${{{name}}} is reserved: gonogo fills it itself, so a baseline cannot set it",
                "a baseline sets placeholders its query uses, such as version",
                at_key=True,
            )
        elif name not in used:
            suggestion = did_you_mean(str(name), sorted(used))
            problems.add(
                location,
                f"the query does not use ${{{name}}}, so the baseline would ask the same"
                " question as the criterion",
                f"did you mean {suggestion!r}?"
                if suggestion
                else f"set a placeholder the query uses ({', '.join(sorted(used)) or 'none'})",
                at_key=True,
            )
        if not isinstance(text, str):
            continue
        for bad in _BAD_PLACEHOLDER.finditer(text):
            problems.add(
                location,
                f"malformed placeholder {bad.group(0)!r}",
                "a placeholder is ${name}: letters, digits and _, no spaces",
            )
        for missing in sorted(placeholder_names(text) - set(known)):
            suggestion = did_you_mean(missing, known)
            problems.add(
                location,
                f"placeholder ${{{missing}}} has no value: it is not version, environment,"
                " stage or a key of vars",
                f"did you mean ${{{suggestion}}}?"
                if suggestion
                else f"declare it under vars: with a default (e.g. vars: {{{missing}: stable}});"
                " a check's vars still override it",
            )


def gate_placeholders(gate: Gate) -> set[str]:
    """Every ``${name}`` any criterion of ``gate`` uses: the names a check may set."""
    return set().union(*(criterion_placeholders(c) for c in gate.criteria))


def check_no_probe_placeholders(raw: Any, at: Loc, problems: Problems) -> None:
    """A probe's connection is built once per gate and shared by every check, so its
    settings cannot follow a check's values: a ``${name}`` there would be sent as is."""
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            check_no_probe_placeholders(value, (*at, key), problems)
    elif isinstance(raw, list):
        for index, value in enumerate(raw):
            check_no_probe_placeholders(value, (*at, index), problems)
    elif isinstance(raw, str) and "${" in raw:
        problems.add(
            at,
            "placeholders are not filled in probe settings",
            "a probe's connection is shared by every check of the gate; put ${...} in the"
            " criterion's query, matchers, params or path instead",
        )


def check_quoting(raw: Mapping[str, Any], at: Loc, probe_type: object, problems: Problems) -> None:
    """Placeholders a check may set, in the criterion ``raw`` of a probe of ``probe_type``.

    A probe type without ``quote`` cannot take them at all. With one, a ``version``,
    ``environment`` or ``stage`` placeholder where the probe would refuse every value
    (outside a string literal, say) is reported now rather than found inconclusive later.
    """
    quote = quoter_of(probe_type)
    type_name = getattr(probe_type, "type_name", "?")
    for location, text in _placeholder_strings(raw, at):
        names = sorted(n for n in placeholder_names(text) if reserved_name_problem(n) is None)
        if not names:
            continue
        if quote is None:
            problems.add(
                location,
                f"probe type {type_name!r} cannot quote values a check supplies, and a check"
                f" may set {', '.join(f'${{{n}}}' for n in names)}",
                "use a probe type with quote(value, context), or write the value into the"
                " query itself",
            )
            continue
        trial = PlaceholderValues(
            gate={n: "" for n in placeholder_names(text)},
            check={n: "x" for n in names if n in CHECK_PLACEHOLDERS},
        )
        try:
            fill_text(text, trial, field=_field_name(location, at), quote=quote)
        except (QuoteRefused, UnfilledPlaceholder) as refused:
            problems.add(location, str(refused), "see docs/probes.md for where a value may go")
        except Exception as broken:  # a plugin's bug is reported, not raised
            problems.add(location, f"probe type could not quote: {type(broken).__name__}: {broken}")
