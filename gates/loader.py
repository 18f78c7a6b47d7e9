"""Reading and validating gate definitions: YAML files, or YAML/JSON bodies of
``PUT /gates/{name}`` (the rules for gate definitions are in docs/decisions.md).

Every problem is reported, not just the first, each with its file, line and column, its
place in the gate (``criteria[1].go``) and a hint. Composing the text with positions is
in ``gates.yaml_source``, collecting the problems in ``gates.problems`` and the
placeholder checks in ``gates.placeholders``; this module checks the gate's keys, probes
and criteria and is the entry point.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from gates.conditions import UnfilledPlaceholder, placeholder_names
from gates.errors import GateFileError, GateProblem, Loc, format_loc
from gates.model import (
    GATE_NAME,
    BurnWindow,
    Compare,
    Criterion,
    ErrorBudget,
    Gate,
    MinVolume,
    Notify,
    Signoff,
    Slo,
    history_problems,
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
from gates.problems import NAME_HINT, Problems, add_validation_errors, did_you_mean
from gates.templates import (
    TEMPLATE_DIR,
    Template,
    load_template_dir,
    resolve,
    resolved_text,
    uses_templates,
)
from gates.yaml_source import MAX_DEFINITION_CHARS, collector_paused, compose, too_large
from probes.base import ProbeConfig, ProbeFactory, QuoteRefused, quoter_of, range_reader_of
from probes.registry import UnknownProbeType, probe_type

GATE_FILE_SUFFIXES = (".yaml", ".yml")

# Keys that would hold a secret in the file itself instead of naming an env variable.
_SECRET_KEYS = frozenset(
    {
        "token",
        "api_key",
        "apikey",
        "app_key",
        "application_key",
        "password",
        "secret",
        "access_token",
        "auth_token",
        "bearer",
        "client_secret",
        "private_key",
    }
)
_SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "dd-api-key",
        "dd-application-key",
        "private-token",
        "x-auth-token",
    }
)


@dataclass(frozen=True)
class EnvPolicy:
    """Which environment variables a gate's ``*_env`` keys may name (docs/operations.md).

    ``allow`` holds names or globs (``GONOGO_PROBE_*``); ``reserved`` the service's own
    settings, which no gate may read whatever ``allow`` says. Names are compared without
    regard to case, as the settings themselves are read.
    """

    allow: tuple[str, ...] = ("GONOGO_PROBE_*", "GONOGO_NOTIFY_*")
    reserved: frozenset[str] = frozenset(
        {"GONOGO_TOKENS", "GONOGO_DATABASE_URL", "GONOGO_ENV_ALLOW"}
    )
    setting: str = "GONOGO_ENV_ALLOW"

    def refusal(self, name: str) -> str | None:
        """Why a gate may not read the variable ``name``; ``None`` when it may."""
        upper = name.upper()
        if upper in {r.upper() for r in self.reserved}:
            return f"{name} is one of gonogo's own settings; a gate may never read it"
        if any(fnmatch.fnmatchcase(upper, pattern.upper()) for pattern in self.allow):
            return None
        allowed = ", ".join(self.allow) or "nothing"
        return f"{name} is not allowed by {self.setting} (it allows {allowed})"


DEFAULT_ENV_POLICY = EnvPolicy()


class CheckedGate(NamedTuple):
    """A gate definition after validation: the gate when valid, and every problem."""

    gate: Gate | None
    problems: list[GateProblem]


# -- checks --------------------------------------------------------------------------------


def _env_field_for(secret_key: str, fields: Iterable[str]) -> str:
    names = list(fields)
    wanted = f"{secret_key}_env"
    if wanted in names:
        return wanted
    env_fields = [n for n in names if n.endswith("_env")]
    return env_fields[0] if env_fields else wanted


def _check_keys(
    raw: Mapping[str, Any],
    model: type[BaseModel],
    location: Loc,
    problems: Problems,
    *,
    secrets: bool = False,
) -> None:
    known = list(model.model_fields)
    open_model = model.model_config.get("extra") == "allow"
    for key in raw:
        if key in known:
            continue
        if open_model and not (secrets and key.lower() in _SECRET_KEYS):
            continue
        if secrets and key.lower() in _SECRET_KEYS:
            env_field = _env_field_for(key.lower(), known)
            problems.add(
                (*location, key),
                f"{key!r} would hold a secret; secrets never go in gate files",
                f"set {env_field}: NAME, the environment variable that holds it",
                at_key=True,
            )
            continue
        suggestion = did_you_mean(key, known)
        hint = (
            f"did you mean {suggestion!r}?"
            if suggestion
            else f"known keys: {', '.join(sorted(known))}"
        )
        problems.add((*location, key), f"unknown key {key!r}", hint, at_key=True)


def _check_inline_secrets(raw: Mapping[str, Any], location: Loc, problems: Problems) -> None:
    """Secrets in a probe whose type is unknown: its other keys cannot be judged."""
    secret_keys = {key: None for key in raw if key.lower() in _SECRET_KEYS}
    _check_keys(secret_keys, ProbeConfig, location, problems, secrets=True)
    _check_headers(raw.get("headers"), (*location, "headers"), problems)


def _check_headers(raw: Any, location: Loc, problems: Problems) -> None:
    if not isinstance(raw, Mapping):
        return
    for header in raw:
        if str(header).lower() in _SECRET_HEADERS:
            problems.add(
                (*location, header),
                f"header {header!r} would hold a secret; secrets never go in gate files",
                "set token_env: NAME (or the probe's other *_env key) instead",
                at_key=True,
            )


def _check_env_names(raw: Any, location: Loc, policy: EnvPolicy, problems: Problems) -> None:
    """Every ``*_env`` key under ``raw`` (a probe or a notify target) names a variable
    ``policy`` allows: a gate that could name any variable could send the server's own
    secrets to a URL of its choosing."""
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            at: Loc = (*location, str(key))
            if str(key).endswith("_env") and isinstance(value, str):
                refusal = policy.refusal(value)
                if refusal is not None:
                    example = "GONOGO_PROBE_" if location[:1] == ("probes",) else "GONOGO_NOTIFY_"
                    problems.add(
                        at,
                        refusal,
                        f"name a variable {policy.setting} allows, e.g. {example}"
                        f"{str(key).removesuffix('_env').upper()}",
                    )
            else:
                _check_env_names(value, at, policy, problems)
    elif isinstance(raw, list):
        for index, item in enumerate(raw):
            _check_env_names(item, (*location, index), policy, problems)


@dataclass
class _Probes:
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


def _check_probes(raw: Any, problems: Problems) -> _Probes:
    found = _Probes()
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
            _check_inline_secrets(entry, at, problems)
            continue
        factory = _factory(type_name, (*at, "type"), problems)
        if factory is None:
            _check_inline_secrets(entry, at, problems)
            continue
        _check_keys(entry, factory.config_model, at, problems, secrets=True)
        _check_headers(entry.get("headers"), (*at, "headers"), problems)
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


def _check_criteria(
    raw: Any, probes: _Probes, declared_vars: Sequence[str], problems: Problems
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
        _check_keys(entry, Criterion, at, problems)
        if isinstance(entry.get("min_volume"), Mapping):
            _check_keys(entry["min_volume"], MinVolume, (*at, "min_volume"), problems)
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
        _check_keys(entry["compare"], Compare, (*at, "compare"), problems)
    slo = entry.get("slo")
    if not isinstance(slo, Mapping):
        return
    _check_keys(slo, Slo, (*at, "slo"), problems)
    if isinstance(slo.get("budget"), Mapping):
        _check_keys(slo["budget"], ErrorBudget, (*at, "slo", "budget"), problems)
    if isinstance(slo.get("windows"), list):
        for index, pair in enumerate(slo["windows"]):
            if isinstance(pair, Mapping):
                _check_keys(pair, BurnWindow, (*at, "slo", "windows", index), problems)


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
    if criterion.compare is not None and range_reader_of(factory) is None:
        problems.add(
            (*at, "compare"),
            f"probe type {type_name!r} cannot read a series of points (no measure_range),"
            " which compare: needs",
            "use a probe of a type with range reads (prometheus, datadog, newrelic)",
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


def _check_dry_run_only(criteria: Sequence[Criterion], problems: Problems) -> None:
    if criteria and all(c.dry_run for c in criteria):
        problems.add(
            ("criteria",),
            "every criterion is dry_run, so none decides and the gate could never be judged",
            "set dry_run: false (or remove it) on at least one criterion",
        )


def _check_list_items(
    raw: Any, key: str, model: type[BaseModel], problems: Problems, *, secrets: bool = False
) -> None:
    if not isinstance(raw, list):
        return
    for index, entry in enumerate(raw):
        if isinstance(entry, Mapping):
            _check_keys(entry, model, (key, index), problems, secrets=secrets)


def _check_signoff_ids(raw: Any, problems: Problems) -> None:
    if not isinstance(raw, list):
        return
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        signoff_id = entry.get("id") if isinstance(entry, Mapping) else None
        if isinstance(signoff_id, str):
            if signoff_id in seen:
                problems.add(("signoffs", index, "id"), f"duplicate sign-off id {signoff_id!r}")
            seen.add(signoff_id)


def _validate(data: Any, name: str, policy: EnvPolicy, problems: Problems) -> Gate | None:
    if not isinstance(data, Mapping):
        kind = "a list" if isinstance(data, list) else f"a single value ({type(data).__name__})"
        problems.add(
            (),
            f"a gate definition is a mapping of keys (probes:, criteria:, ...), not {kind}",
        )
        return None
    if not GATE_NAME.match(name):
        problems.at(
            None,
            (),
            f"gate name {name!r} is not valid",
            NAME_HINT + ", at most 63 characters (a gate file's name is its stem)",
        )
    given_name = data.get("name")
    if given_name is not None and given_name != name:
        problems.add(
            ("name",),
            f"name {given_name!r} does not match the gate name {name!r}",
            "the file name (or the API path) names the gate; remove name:",
        )
    _check_keys(data, Gate, (), problems)
    declared_vars = (
        [k for k in data.get("vars") or {} if isinstance(k, str)]
        if isinstance(data.get("vars"), Mapping)
        else []
    )
    probes = _check_probes(data.get("probes"), problems)
    _check_env_names(data.get("probes"), ("probes",), policy, problems)
    _check_env_names(data.get("notify"), ("notify",), policy, problems)
    criteria = _check_criteria(data.get("criteria"), probes, declared_vars, problems)
    _check_dry_run_only(criteria, problems)
    _check_list_items(data.get("signoffs"), "signoffs", Signoff, problems)
    _check_list_items(data.get("notify"), "notify", Notify, problems, secrets=True)
    _check_signoff_ids(data.get("signoffs"), problems)

    fields = {k: v for k, v in data.items() if k not in ("probes", "criteria", "name")}
    fields.update(name=name, probes=probes.configs, criteria=criteria)
    try:
        gate = Gate.model_validate(fields)
    except ValidationError as invalid:
        # Probes, criteria and the name were checked above entry by entry, and the
        # model's cross-checks (loc ()) repeat them; report those only as a last resort.
        add_validation_errors(
            invalid,
            (),
            problems,
            skip=lambda at: not at or at[0] in ("probes", "criteria", "name"),
        )
        if not problems.items:
            add_validation_errors(invalid, (), problems)
        return None
    for location, message, hint in history_problems(gate):
        problems.add(location, message, hint)
    for location, number in _non_finite_numbers(gate.model_dump(by_alias=True), ()):
        problems.add(
            location,
            f"{number!r} is not a finite number",
            "every number in a gate is finite; write one within range",
        )
    return gate if not problems.items else None


def _non_finite_numbers(value: Any, location: Loc) -> Iterable[tuple[Loc, float]]:
    """Where the validated gate holds infinity or NaN, whatever the field's type (a probe
    type's own settings included): such a number means nothing in a gate, and a
    definition holding one could not be shown back as JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        yield location, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _non_finite_numbers(item, (*location, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _non_finite_numbers(item, (*location, index))


# -- public API ----------------------------------------------------------------------------


class ResolvedGate(NamedTuple):
    """A gate definition after validation, with what its version is rebuilt from: ``text``
    is the definition itself when it uses no template, and the definition with every
    template filled in when it does (``templates`` names them)."""

    gate: Gate | None
    problems: list[GateProblem]
    text: str
    templates: frozenset[str]


Templates = Mapping[str, Template]


def check_gate_definition(
    text: str,
    *,
    name: str,
    source: str,
    env_policy: EnvPolicy = DEFAULT_ENV_POLICY,
    templates: Templates | None = None,
) -> ResolvedGate:
    """Validate a gate definition (YAML, or JSON) whose criteria may use ``templates``.

    ``name`` is the gate's name (a file's stem, or the API path); ``source`` names the
    text in problems (a file path, or e.g. ``gate portal``); ``env_policy`` says which
    variables its ``*_env`` keys may name (the service passes the operator's).
    """
    with collector_paused():
        # The document is freed when _check returns, before the collector resumes: it
        # would otherwise walk every node of it at once.
        return _check(text, name, source, env_policy, templates or {})


def check_gate_text(
    text: str,
    *,
    name: str,
    source: str,
    env_policy: EnvPolicy = DEFAULT_ENV_POLICY,
    templates: Templates | None = None,
) -> CheckedGate:
    """Validate a gate definition (YAML, or JSON) and return the gate and every problem
    (``check_gate_definition`` without the resolved text)."""
    checked = check_gate_definition(
        text, name=name, source=source, env_policy=env_policy, templates=templates
    )
    return CheckedGate(checked.gate, checked.problems)


def _check(
    text: str, name: str, source: str, env_policy: EnvPolicy, templates: Templates
) -> ResolvedGate:
    problems = Problems(source)
    document = compose(text, problems)
    if document is None:
        return ResolvedGate(None, problems.sorted(), text, frozenset())
    if not uses_templates(document.data):
        gate = _validate(document.data, name, env_policy, problems)
        return ResolvedGate(gate, problems.sorted(), text, frozenset())
    return _check_resolved(document.data, name, source, env_policy, templates, problems)


def _check_resolved(
    data: Mapping[str, Any],
    name: str,
    source: str,
    env_policy: EnvPolicy,
    templates: Templates,
    problems: Problems,
) -> ResolvedGate:
    """A definition that uses templates: resolved, validated with each problem placed in
    the file that holds it, and turned into text that reads back as the same gate."""
    resolution = resolve(data, templates, problems)
    routed = resolution.problems
    gate = _validate(resolution.data, name, env_policy, routed)
    if gate is None:
        return ResolvedGate(None, routed.sorted(), "", resolution.used)
    text = resolved_text(resolution.data)
    if too_large(text):
        problems.add(
            (),
            f"the gate with its templates filled in is larger than {MAX_DEFINITION_CHARS}"
            " characters",
            "use fewer or smaller templates, or split the gate",
        )
        return ResolvedGate(None, routed.sorted(), "", resolution.used)
    again = _check(text, name, f"{source} (templates filled in)", env_policy, {})
    if again.gate != gate:
        found = "; ".join(str(p) for p in again.problems) or "it reads as another definition"
        problems.add((), f"the gate with its templates filled in does not read back: {found}")
        return ResolvedGate(None, routed.sorted(), "", resolution.used)
    return ResolvedGate(gate, [], text, resolution.used)


def templates_beside(path: Path | str) -> Path:
    """The templates folder a gate file or gate directory uses: ``templates/`` in the
    directory (for a file, in the directory that holds it)."""
    path = Path(path)
    return (path if path.is_dir() else path.parent) / TEMPLATE_DIR


def check_gate_file(
    path: Path | str,
    *,
    env_policy: EnvPolicy = DEFAULT_ENV_POLICY,
    templates: Templates | None = None,
) -> CheckedGate:
    """Validate one gate file; the gate is named after the file's stem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as bad:
        return CheckedGate(
            None, [GateProblem(str(path), None, None, (), f"not UTF-8 text: {bad.reason}")]
        )
    except OSError as unreadable:
        reason = unreadable.strerror or type(unreadable).__name__
        return CheckedGate(None, [GateProblem(str(path), None, None, (), f"cannot read: {reason}")])
    return check_gate_text(
        text, name=path.stem, source=str(path), env_policy=env_policy, templates=templates
    )


def gate_file_problems(
    path: Path | str, *, env_policy: EnvPolicy = DEFAULT_ENV_POLICY
) -> list[GateProblem]:
    """Every problem of one gate file (empty when it is valid)."""
    return check_gate_file(path, env_policy=env_policy).problems


def load_gate_text(
    text: str,
    *,
    name: str,
    source: str,
    env_policy: EnvPolicy = DEFAULT_ENV_POLICY,
    templates: Templates | None = None,
) -> Gate:
    """The gate defined by ``text``; raises ``GateFileError`` listing every problem."""
    gate, problems = check_gate_text(
        text, name=name, source=source, env_policy=env_policy, templates=templates
    )
    if gate is None or problems:
        raise GateFileError(problems or [GateProblem(source, None, None, (), "invalid gate")])
    return gate


def load_gate_definition(
    text: str,
    *,
    name: str,
    source: str,
    env_policy: EnvPolicy = DEFAULT_ENV_POLICY,
    templates: Templates | None = None,
) -> ResolvedGate:
    """``check_gate_definition`` for a definition that must be valid: raises
    ``GateFileError`` listing every problem."""
    checked = check_gate_definition(
        text, name=name, source=source, env_policy=env_policy, templates=templates
    )
    if checked.gate is None or checked.problems:
        raise GateFileError(
            checked.problems or [GateProblem(source, None, None, (), "invalid gate")]
        )
    return checked


def load_gate_file(path: Path | str, *, env_policy: EnvPolicy = DEFAULT_ENV_POLICY) -> Gate:
    """The gate in one file; raises ``GateFileError`` listing every problem."""
    gate, problems = check_gate_file(path, env_policy=env_policy)
    if gate is None or problems:
        raise GateFileError(problems or [GateProblem(str(path), None, None, (), "invalid gate")])
    return gate


def gate_files(directory: Path) -> list[Path]:
    """The gate files of a directory (``*.yaml``, ``*.yml``; hidden files skipped), sorted."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in GATE_FILE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def load_gate_dir(
    directory: Path | str, *, env_policy: EnvPolicy = DEFAULT_ENV_POLICY
) -> tuple[dict[str, Gate], list[GateProblem]]:
    """Every valid gate of a directory by name, and every problem of every file."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}, [GateProblem(str(directory), None, None, (), "not a directory")]
    templates, problems = load_template_dir(directory / TEMPLATE_DIR)
    gates: dict[str, Gate] = {}
    sources: dict[str, Path] = {}
    for path in gate_files(directory):
        if path.stem in sources:
            problems.append(
                GateProblem(
                    str(path),
                    None,
                    None,
                    (),
                    f"gate {path.stem!r} is also defined by {sources[path.stem].name}",
                    "keep one file per gate",
                )
            )
            continue
        sources[path.stem] = path
        gate, found = check_gate_file(path, env_policy=env_policy, templates=templates)
        problems.extend(found)
        if gate is not None:
            gates[gate.name] = gate
    return gates, problems


__all__ = [
    "CHECK_PLACEHOLDERS",
    "DEFAULT_ENV_POLICY",
    "GATE_FILE_SUFFIXES",
    "MAX_DEFINITION_CHARS",
    "CheckedGate",
    "EnvPolicy",
    "check_gate_file",
    "check_gate_text",
    "format_loc",
    "gate_file_problems",
    "gate_files",
    "load_gate_dir",
    "load_gate_file",
    "load_gate_text",
]
