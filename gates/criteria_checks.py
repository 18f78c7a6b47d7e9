"""The checks of a gate's ``probes:`` and ``criteria:`` (docs/decisions.md): each
probe's type and config, and each criterion's probe, conditions, placeholders, quoting,
baseline, comparison and SLO keys. ``gates.loader`` runs them on a whole definition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gates.conditions import UnfilledPlaceholder, placeholder_names
from gates.errors import Loc
from gates.model import (
    BurnWindow,
    Compare,
    Criterion,
    ErrorBudget,
    MinVolume,
    Slo,
)
from gates.placeholders import (
    CHECK_PLACEHOLDERS,
    PlaceholderValues,
    check_baseline,
    check_no_probe_placeholders,
    check_placeholders,
    check_quoting,
    fill_text,
    reserved_name_problem,
)
from gates.problems import Problems, add_validation_errors, did_you_mean
from gates.secret_rules import check_headers, check_inline_secrets, check_keys
from probes.base import (
    ProbeConfig,
    ProbeFactory,
    QuoteRefused,
    quoter_of,
    range_reader_of,
    series_comparable,
)
from probes.registry import UnknownProbeType, probe_type


@dataclass
class Probes:
    configs: dict[str, ProbeConfig] = field(default_factory=dict)
    factories: dict[str, ProbeFactory] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    # False when probes: itself is malformed: references to probes cannot be judged then.
    readable: bool = True


def _factory(type_name: str, location: Loc, problems: Problems) -> ProbeFactory | None:
    try:
        factory = probe_type(type_name)
    except UnknownProbeType as unknown:
        suggestion = did_you_mean(type_name, unknown.known)
        hint = f"did you mean {suggestion!r}? " if suggestion else ""
        problems.add(
            location,
            f"unknown probe type {type_name!r}",
            f"{hint}known types: {', '.join(unknown.known) or 'none installed'}",
        )
        return None
    except Exception as broken:  # a plugin that fails to import must not crash validation
        problems.add(
            location,
            f"probe type {type_name!r} could not be loaded: {type(broken).__name__}: {broken}",
            "is the package that provides it installed and working?",
        )
        return None
    config_model = getattr(factory, "config_model", None)
    if not (isinstance(config_model, type) and issubclass(config_model, ProbeConfig)):
        problems.add(location, f"probe type {type_name!r} has no usable config_model")
        return None
    return factory


def check_probes(raw: Any, problems: Problems) -> Probes:
    found = Probes()
    if raw is None:
        return found
    if not isinstance(raw, Mapping):
        problems.add(
            ("probes",),
            "probes must map each probe name to its config",
            "e.g. probes: {prom: {type: prometheus, url: 'http://prometheus:9090'}}",
        )
        found.readable = False
        return found
    for name, entry in raw.items():
        found.names.append(name)
        at: Loc = ("probes", name)
        if not isinstance(entry, Mapping):
            problems.add(
                at, "a probe is a mapping with at least type:", "e.g. {type: http, url: ...}"
            )
            continue
        type_name = entry.get("type")
        if not isinstance(type_name, str) or not type_name:
            problems.add((*at, "type"), "every probe needs type: (the kind of source)")
            check_inline_secrets(entry, at, problems)
            continue
        factory = _factory(type_name, (*at, "type"), problems)
        if factory is None:
            check_inline_secrets(entry, at, problems)
            continue
        check_keys(entry, factory.config_model, at, problems, secrets=True)
        check_headers(entry.get("headers"), (*at, "headers"), problems)
        check_no_probe_placeholders(entry, at, problems)
        try:
            config = factory.config_model.model_validate(dict(entry))
        except ValidationError as invalid:
            # Each probe type documents its own keys; the gate-level hints would mislead.
            add_validation_errors(invalid, at, problems, hints={})
            continue
        found.configs[name] = config
        found.factories[name] = factory
    return found


def _check_query(factory: ProbeFactory, criterion: Criterion, at: Loc, problems: Problems) -> None:
    check = getattr(factory, "check_query", None)
    if check is None:
        return
    query = criterion.probe_query()
    if criterion.slo is not None:
        # An slo: criterion's queries are its errors: and total:; the probe checks one.
        query = query.model_copy(update={"query": criterion.slo.errors})
    try:
        found: Sequence[tuple[str, str]] = check(query)
    except Exception as broken:  # a plugin's bug is reported, not raised
        problems.add(
            at, f"probe type could not check this query: {type(broken).__name__}: {broken}"
        )
        return
    for field_name, message in found:
        problems.add((*at, field_name) if field_name else at, message)


def check_criteria(
    raw: Any, probes: Probes, declared_vars: Sequence[str], problems: Problems
) -> list[Criterion]:
    if raw is None:
        problems.add(
            (),
            "criteria: is missing; a gate needs at least one criterion",
            "criteria: [{name: availability, probe: health, go: '> 99.9%'}]",
        )
        return []
    if not isinstance(raw, list):
        problems.add(("criteria",), "criteria must be a list (each item starts with '- name:')")
        return []
    if not raw:
        problems.add(("criteria",), "criteria is empty; a gate needs at least one criterion")
        return []
    valid: list[Criterion] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(raw):
        at: Loc = ("criteria", index)
        if not isinstance(entry, Mapping):
            problems.add(at, "a criterion is a mapping with name:, probe: and go:")
            continue
        check_keys(entry, Criterion, at, problems)
        if isinstance(entry.get("min_volume"), Mapping):
            check_keys(entry["min_volume"], MinVolume, (*at, "min_volume"), problems)
        _check_judged_keys(entry, at, problems)
        name = entry.get("name")
        if isinstance(name, str):
            if name in first_index:
                problems.add(
                    (*at, "name"),
                    f"duplicate criterion name {name!r} (also criteria[{first_index[name]}])",
                    "criterion names must be unique within a gate",
                )
            else:
                first_index[name] = index
        reference = entry.get("probe")
        if isinstance(reference, str) and probes.readable and reference not in probes.names:
            suggestion = did_you_mean(reference, probes.names)
            known = ", ".join(probes.names) or "none defined"
            problems.add(
                (*at, "probe"),
                f"unknown probe {reference!r}",
                f"did you mean {suggestion!r}?"
                if suggestion
                else f"define it under probes: (defined: {known})",
            )
        check_placeholders(entry, at, declared_vars, problems)
        check_baseline(entry, at, declared_vars, problems)
        try:
            criterion = Criterion.model_validate(dict(entry))
        except ValidationError as invalid:
            add_validation_errors(invalid, at, problems)
            continue
        _check_relative(entry, criterion, at, problems)
        factory = probes.factories.get(criterion.probe)
        if factory is not None:
            _check_query(factory, criterion, at, problems)
            check_quoting(entry, at, factory, problems)
            _check_judged(criterion, at, factory, declared_vars, problems)
        valid.append(criterion)
    return valid


def _check_judged_keys(entry: Mapping[str, Any], at: Loc, problems: Problems) -> None:
    """Unknown keys inside ``compare:`` and ``slo:`` (and its windows and budget)."""
    if isinstance(entry.get("compare"), Mapping):
        check_keys(entry["compare"], Compare, (*at, "compare"), problems)
    slo = entry.get("slo")
    if not isinstance(slo, Mapping):
        return
    check_keys(slo, Slo, (*at, "slo"), problems)
    if isinstance(slo.get("budget"), Mapping):
        check_keys(slo["budget"], ErrorBudget, (*at, "slo", "budget"), problems)
    if isinstance(slo.get("windows"), list):
        for index, pair in enumerate(slo["windows"]):
            if isinstance(pair, Mapping):
                check_keys(pair, BurnWindow, (*at, "slo", "windows", index), problems)


def _check_judged(
    criterion: Criterion,
    at: Loc,
    factory: ProbeFactory,
    declared_vars: Sequence[str],
    problems: Problems,
) -> None:
    """``compare:`` needs a probe type that reads ranges; ``slo:`` queries may use
    ``${window}``, the placeholders any query may, and values a check supplies only where
    the probe can quote them."""
    type_name = getattr(factory, "type_name", "?")
    if criterion.compare is not None and not series_comparable(factory):
        why = (
            "cannot read a series of points (no measure_range)"
            if range_reader_of(factory) is None
            else "reads counts filled with zeros where nothing happened, so a stopped canary"
            " would pass for a healthy one"
        )
        problems.add(
            (*at, "compare"),
            f"probe type {type_name!r} {why}, and compare: needs real points",
            "use a probe of a type whose range reads compare: may test (prometheus,"
            " datadog, newrelic)",
        )
    if criterion.slo is None:
        return
    known = [*CHECK_PLACEHOLDERS, *declared_vars, "window"]
    quote = quoter_of(factory)
    for key, text in (("errors", criterion.slo.errors), ("total", criterion.slo.total)):
        location: Loc = (*at, "slo", key)
        names = placeholder_names(text)
        for name in sorted(names - set(known)):
            suggestion = did_you_mean(name, known)
            problems.add(
                location,
                f"placeholder ${{{name}}} is not window, version, environment, stage or a key"
                " of vars",
                f"did you mean ${{{suggestion}}}?"
                if suggestion
                else "declare it under vars: with a default",
            )
        supplied = sorted(n for n in names & set(known) if reserved_name_problem(n) is None)
        if not supplied:
            continue
        if quote is None:
            problems.add(
                location,
                f"probe type {type_name!r} cannot quote values a check supplies, and a check"
                f" may set {', '.join(f'${{{n}}}' for n in supplied)}",
                "use a probe type with quote(value, context)",
            )
            continue
        trial = PlaceholderValues(
            gate={**{n: "" for n in names}, "window": "5m"},
            check={n: "x" for n in supplied if n in CHECK_PLACEHOLDERS},
        )
        try:
            fill_text(text, trial, field=f"slo.{key}", quote=quote)
        except (QuoteRefused, UnfilledPlaceholder) as refused:
            problems.add(location, str(refused), "see docs/probes.md for where a value may go")
        except Exception as broken:  # a plugin's bug is reported, not raised
            problems.add(location, f"probe type could not quote: {type(broken).__name__}: {broken}")


def _check_relative(
    raw: Mapping[str, Any], criterion: Criterion, at: Loc, problems: Problems
) -> None:
    """A signed condition (``<= +10%``) is relative to a baseline: without ``baseline:``
    it has nothing to be relative to."""
    if criterion.baseline is not None:
        return
    for key, conditions in (("go", criterion.go), ("rollback", criterion.rollback or ())):
        written = raw.get(key)
        for index, condition in enumerate(conditions):
            if condition.relative is None:
                continue
            absolute = f"{condition.op} {condition.offset.lstrip('+-')}"
            problems.add(
                (*at, key, index) if isinstance(written, list) else (*at, key),
                f"{condition.text!r} is relative (a signed number), and the criterion has"
                " no baseline: to compare with",
                f"drop the sign for an absolute bound ({absolute!r}), or add"
                " baseline: {vars: {...}} to judge it against a baseline",
            )


def check_dry_run_only(criteria: Sequence[Criterion], problems: Problems) -> None:
    if criteria and all(c.dry_run for c in criteria):
        problems.add(
            ("criteria",),
            "every criterion is dry_run, so none decides and the gate could never be judged",
            "set dry_run: false (or remove it) on at least one criterion",
        )
