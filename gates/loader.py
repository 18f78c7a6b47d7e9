"""Reading and validating gate definitions: YAML files, or YAML/JSON bodies of
``PUT /gates/{name}`` (the rules for gate definitions are in docs/decisions.md).

Every problem is reported, not just the first, each with its file, line and column, its
place in the gate (``criteria[1].go``) and a hint. Composing the text with positions is
in ``gates.yaml_source``, collecting the problems in ``gates.problems``, the rules about
secrets and environment variables in ``gates.secret_rules``, the probe and criterion
checks in ``gates.criteria_checks`` and the placeholder checks in ``gates.placeholders``;
this module checks the gate as a whole (keys, sign-offs, templates, numbers) and is the
entry point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from gates.criteria_checks import check_criteria, check_dry_run_only, check_probes
from gates.errors import GateFileError, GateProblem, Loc, format_loc
from gates.model import (
    GATE_NAME,
    Gate,
    Notify,
    Signoff,
    history_problems,
)
from gates.placeholders import (
    CHECK_PLACEHOLDERS,
)
from gates.problems import NAME_HINT, Problems, add_validation_errors
from gates.secret_rules import DEFAULT_ENV_POLICY, EnvPolicy, check_env_names, check_keys
from gates.templates import (
    TEMPLATE_DIR,
    Template,
    load_template_dir,
    resolve,
    resolved_text,
    uses_templates,
)
from gates.yaml_source import MAX_DEFINITION_CHARS, collector_paused, compose, too_large

GATE_FILE_SUFFIXES = (".yaml", ".yml")


class CheckedGate(NamedTuple):
    """A gate definition after validation: the gate when valid, and every problem."""

    gate: Gate | None
    problems: list[GateProblem]


# -- checks --------------------------------------------------------------------------------


def _check_list_items(
    raw: Any, key: str, model: type[BaseModel], problems: Problems, *, secrets: bool = False
) -> None:
    if not isinstance(raw, list):
        return
    for index, entry in enumerate(raw):
        if isinstance(entry, Mapping):
            check_keys(entry, model, (key, index), problems, secrets=secrets)


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
    check_keys(data, Gate, (), problems)
    declared_vars = (
        [k for k in data.get("vars") or {} if isinstance(k, str)]
        if isinstance(data.get("vars"), Mapping)
        else []
    )
    probes = check_probes(data.get("probes"), problems)
    check_env_names(data.get("probes"), ("probes",), policy, problems)
    check_env_names(data.get("notify"), ("notify",), policy, problems)
    criteria = check_criteria(data.get("criteria"), probes, declared_vars, problems)
    check_dry_run_only(criteria, problems)
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
    "GATE_FILE_SUFFIXES",
    "MAX_DEFINITION_CHARS",
    "CheckedGate",
    "check_gate_file",
    "check_gate_text",
    "format_loc",
    "gate_file_problems",
    "gate_files",
    "load_gate_dir",
    "load_gate_file",
    "load_gate_text",
]
