"""Reading and validating gate definitions: YAML files, or YAML/JSON bodies of
``PUT /gates/{name}`` (SPEC §2).

Every problem is reported, not just the first, each with its file, line and column, its
place in the gate (``criteria[1].go``) and a hint. The text is *composed* into YAML nodes
rather than loaded, so every value keeps its position and a duplicated key is an error:
a plain YAML load silently keeps the last of two ``go:`` keys, which for a gate could turn
a strict condition into a lax one without anyone noticing.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, ValidationError

from gates.conditions import placeholder_names
from gates.errors import GateFileError, GateProblem, Loc, format_loc
from gates.model import GATE_NAME, Criterion, Gate, MinVolume, Notify, Signoff
from probes.base import ProbeConfig, ProbeFactory
from probes.registry import UnknownProbeType, probe_type

GATE_FILE_SUFFIXES = (".yaml", ".yml")
MAX_DEFINITION_CHARS = 1_000_000
# Placeholders every check can fill; anything else must have a default under ``vars``.
CHECK_PLACEHOLDERS = ("version", "environment", "stage")

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
_MAX_NODES = 100_000
_MAX_DEPTH = 64
_BAD_PLACEHOLDER = re.compile(r"\$\{(?![A-Za-z_][A-Za-z0-9_]*\})[^}]*\}")

_CONDITION_HINT = "write it in quotes, e.g. go: '> 99.9%', or a list of them to AND"
_DURATION_HINT = "a duration is a number with a unit: 500ms, 30s, 5m, 1h30m"
_NAME_HINT = "use lowercase letters, digits and '-', starting with a letter or digit"
_FIELD_HINTS = {
    "go": _CONDITION_HINT,
    "rollback": _CONDITION_HINT,
    "interval": "the time between samples, at least 1s: e.g. 30s, 5m",
    "initial_delay": _DURATION_HINT,
    "timeout": _DURATION_HINT,
    "window": _DURATION_HINT,
    "steady_for": "the number of consecutive all-pass samples needed for go, 1 or more",
    "rollback_after": "the number of consecutive breaches needed for rollback, 1 or more",
    "no_data": "one of inconclusive, pass, fail",
    "name": _NAME_HINT,
    "id": _NAME_HINT,
}


class CheckedGate(NamedTuple):
    """A gate definition after validation: the gate when valid, and every problem."""

    gate: Gate | None
    problems: list[GateProblem]


Mark = tuple[int, int]


@dataclass
class _Document:
    """Plain data from the YAML, with the position of every value and every key."""

    data: Any
    values: dict[Loc, Mark] = field(default_factory=dict)
    keys: dict[Loc, Mark] = field(default_factory=dict)


class _Problems:
    def __init__(self, file: str, document: _Document | None = None) -> None:
        self.file = file
        self.document = document
        self.items: list[GateProblem] = []

    def add(
        self, location: Loc, message: str, hint: str | None = None, *, at_key: bool = False
    ) -> None:
        mark = self._mark(location, at_key=at_key)
        line, col = mark if mark is not None else (None, None)
        self.items.append(GateProblem(self.file, line, col, location, message, hint))

    def at(self, mark: Mark | None, location: Loc, message: str, hint: str | None = None) -> None:
        line, col = mark if mark is not None else (None, None)
        self.items.append(GateProblem(self.file, line, col, location, message, hint))

    def _mark(self, location: Loc, *, at_key: bool) -> Mark | None:
        if self.document is None:
            return None
        if at_key and location in self.document.keys:
            return self.document.keys[location]
        # A missing key has no position of its own: point at the mapping that lacks it.
        for end in range(len(location), -1, -1):
            mark = self.document.values.get(location[:end])
            if mark is not None:
                return mark
        return None

    def sorted(self) -> list[GateProblem]:
        return sorted(self.items, key=lambda p: (p.line or 0, p.col or 0))


# -- YAML → data with positions ----------------------------------------------------------


def _mark_of(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Converter:
    def __init__(self, problems: _Problems, document: _Document) -> None:
        self._problems = problems
        self._document = document
        self._constructor = yaml.constructor.SafeConstructor()
        self._nodes = 0

    def convert(self, node: yaml.Node, location: Loc, depth: int = 0) -> Any:
        self._document.values.setdefault(location, _mark_of(node))
        self._nodes += 1
        if depth > _MAX_DEPTH or self._nodes > _MAX_NODES:
            raise _TooLarge(_mark_of(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                return self._constructor.construct_object(node, deep=True)
            except yaml.YAMLError as bad:
                self._problems.at(_mark_of(node), location, f"bad value: {_yaml_problem(bad)}")
                return None
        if isinstance(node, yaml.SequenceNode):
            return [
                self.convert(item, (*location, index), depth + 1)
                for index, item in enumerate(node.value)
            ]
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, location, depth)
        self._problems.at(_mark_of(node), location, "unsupported YAML node")
        return None

    def _mapping(self, node: yaml.MappingNode, location: Loc, depth: int) -> dict[str, Any]:
        own_keys = {id(key) for key, _ in node.value}
        try:
            # YAML merge keys (<<: *defaults) are handy for sharing probe settings.
            self._constructor.flatten_mapping(node)
        except yaml.YAMLError as bad:
            self._problems.at(_mark_of(node), location, f"bad merge: {_yaml_problem(bad)}")
        result: dict[str, Any] = {}
        first_seen: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._problems.at(_mark_of(key_node), location, "a key must be plain text")
                continue
            # The raw text, not the YAML 1.1 value: a key ``on`` or ``no`` stays a string.
            key = str(key_node.value)
            child = (*location, key)
            if id(key_node) in own_keys:
                if key in first_seen:
                    self._problems.at(
                        _mark_of(key_node),
                        child,
                        f"duplicate key {key!r} (first at line {first_seen[key][0]})",
                        "YAML would silently keep only the last one; remove one of them",
                    )
                    continue
                first_seen[key] = _mark_of(key_node)
            self._document.keys[child] = _mark_of(key_node)
            self._document.values[child] = _mark_of(value_node)
            result[key] = self.convert(value_node, child, depth + 1)
        return result


class _TooLarge(Exception):
    def __init__(self, mark: Mark) -> None:
        self.mark = mark


def _yaml_problem(error: yaml.YAMLError) -> str:
    if not isinstance(error, yaml.MarkedYAMLError):
        return str(error)
    context = error.context
    opened, found = error.context_mark, error.problem_mark
    if context and opened is not None and found is not None and opened.line != found.line:
        context += f" (opened at line {opened.line + 1})"
    return "; ".join(p for p in (context, error.problem) if p) or str(error)


def _compose(text: str, problems: _Problems) -> _Document | None:
    if text.lstrip().startswith("{"):
        # JSON body: JSON allows tabs as whitespace, YAML does not; tabs inside JSON
        # strings must be escaped, so replacing raw ones changes no value.
        text = text.replace("\t", " ")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as bad:
        mark = bad.problem_mark or bad.context_mark
        position = (mark.line + 1, mark.column + 1) if mark is not None else None
        problems.at(position, (), f"YAML syntax error: {_yaml_problem(bad)}")
        return None
    except yaml.YAMLError as bad:
        problems.at(None, (), f"not readable as YAML: {bad}")
        return None
    if root is None:
        problems.at(
            None,
            (),
            "the gate definition is empty",
            "a gate needs at least probes: and criteria:",
        )
        return None
    document = _Document(data=None)
    problems.document = document
    try:
        document.data = _Converter(problems, document).convert(root, ())
    except _TooLarge as large:
        problems.at(large.mark, (), "the definition is nested too deeply or has too many values")
        return None
    return document


# -- checks --------------------------------------------------------------------------------


def _did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


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
    problems: _Problems,
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
        suggestion = _did_you_mean(key, known)
        hint = (
            f"did you mean {suggestion!r}?"
            if suggestion
            else f"known keys: {', '.join(sorted(known))}"
        )
        problems.add((*location, key), f"unknown key {key!r}", hint, at_key=True)


def _check_inline_secrets(raw: Mapping[str, Any], location: Loc, problems: _Problems) -> None:
    """Secrets in a probe whose type is unknown: its other keys cannot be judged."""
    secret_keys = {key: None for key in raw if key.lower() in _SECRET_KEYS}
    _check_keys(secret_keys, ProbeConfig, location, problems, secrets=True)
    _check_headers(raw.get("headers"), (*location, "headers"), problems)


def _check_headers(raw: Any, location: Loc, problems: _Problems) -> None:
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


def _pydantic_message(error: Mapping[str, Any]) -> str:
    if error["type"] == "missing":
        return f"{error['loc'][-1]} is required"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _add_validation_errors(
    invalid: ValidationError,
    location: Loc,
    problems: _Problems,
    *,
    skip: Callable[[Loc], bool] = lambda _: False,
    hints: Mapping[str, str] = _FIELD_HINTS,
) -> None:
    for error in invalid.errors():
        if error["type"] == "extra_forbidden":
            continue  # reported by _check_keys, with a hint
        inner = tuple(part for part in error["loc"] if isinstance(part, int | str))
        if skip(inner):
            continue
        field_name = next((p for p in reversed(inner) if isinstance(p, str)), "")
        problems.add((*location, *inner), _pydantic_message(error), hints.get(field_name))


@dataclass
class _Probes:
    configs: dict[str, ProbeConfig] = field(default_factory=dict)
    factories: dict[str, ProbeFactory] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    # False when probes: itself is malformed: references to probes cannot be judged then.
    readable: bool = True


def _factory(type_name: str, location: Loc, problems: _Problems) -> ProbeFactory | None:
    try:
        factory = probe_type(type_name)
    except UnknownProbeType as unknown:
        suggestion = _did_you_mean(type_name, unknown.known)
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


def _check_no_probe_placeholders(raw: Any, at: Loc, problems: _Problems) -> None:
    """A probe's connection is built once per gate and shared by every check, so its
    settings cannot follow a check's values: a ``${name}`` there would be sent as is."""
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            _check_no_probe_placeholders(value, (*at, key), problems)
    elif isinstance(raw, list):
        for index, value in enumerate(raw):
            _check_no_probe_placeholders(value, (*at, index), problems)
    elif isinstance(raw, str) and "${" in raw:
        problems.add(
            at,
            "placeholders are not filled in probe settings",
            "a probe's connection is shared by every check of the gate; put ${...} in the"
            " criterion's query, matchers, params or path instead",
        )


def _check_probes(raw: Any, problems: _Problems) -> _Probes:
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
        _check_no_probe_placeholders(entry, at, problems)
        try:
            config = factory.config_model.model_validate(dict(entry))
        except ValidationError as invalid:
            # Each probe type documents its own keys; the gate-level hints would mislead.
            _add_validation_errors(invalid, at, problems, hints={})
            continue
        found.configs[name] = config
        found.factories[name] = factory
    return found


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


def _check_placeholders(
    raw: Mapping[str, Any], at: Loc, declared: Sequence[str], problems: _Problems
) -> None:
    known = [*CHECK_PLACEHOLDERS, *declared]
    for location, text in _placeholder_strings(raw, at):
        for bad in _BAD_PLACEHOLDER.finditer(text):
            problems.add(
                location,
                f"malformed placeholder {bad.group(0)!r}",
                "a placeholder is ${name}: letters, digits and _, no spaces",
            )
        for name in sorted(placeholder_names(text) - set(known)):
            suggestion = _did_you_mean(name, known)
            problems.add(
                location,
                f"placeholder ${{{name}}} is not version, environment, stage or a key of vars",
                f"did you mean ${{{suggestion}}}?"
                if suggestion
                else "declare it under vars: with a default (a check's vars still override it)",
            )


def _check_query(factory: ProbeFactory, criterion: Criterion, at: Loc, problems: _Problems) -> None:
    check = getattr(factory, "check_query", None)
    if check is None:
        return
    try:
        found: Sequence[tuple[str, str]] = check(criterion.probe_query())
    except Exception as broken:  # a plugin's bug is reported, not raised
        problems.add(
            at, f"probe type could not check this query: {type(broken).__name__}: {broken}"
        )
        return
    for field_name, message in found:
        problems.add((*at, field_name) if field_name else at, message)


def _check_criteria(
    raw: Any, probes: _Probes, declared_vars: Sequence[str], problems: _Problems
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
            suggestion = _did_you_mean(reference, probes.names)
            known = ", ".join(probes.names) or "none defined"
            problems.add(
                (*at, "probe"),
                f"unknown probe {reference!r}",
                f"did you mean {suggestion!r}?"
                if suggestion
                else f"define it under probes: (defined: {known})",
            )
        _check_placeholders(entry, at, declared_vars, problems)
        try:
            criterion = Criterion.model_validate(dict(entry))
        except ValidationError as invalid:
            _add_validation_errors(invalid, at, problems)
            continue
        factory = probes.factories.get(criterion.probe)
        if factory is not None:
            _check_query(factory, criterion, at, problems)
        valid.append(criterion)
    return valid


def _check_list_items(
    raw: Any, key: str, model: type[BaseModel], problems: _Problems, *, secrets: bool = False
) -> None:
    if not isinstance(raw, list):
        return
    for index, entry in enumerate(raw):
        if isinstance(entry, Mapping):
            _check_keys(entry, model, (key, index), problems, secrets=secrets)


def _check_signoff_ids(raw: Any, problems: _Problems) -> None:
    if not isinstance(raw, list):
        return
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        signoff_id = entry.get("id") if isinstance(entry, Mapping) else None
        if isinstance(signoff_id, str):
            if signoff_id in seen:
                problems.add(("signoffs", index, "id"), f"duplicate sign-off id {signoff_id!r}")
            seen.add(signoff_id)


def _validate(data: Any, name: str, problems: _Problems) -> Gate | None:
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
            _NAME_HINT + ", at most 63 characters (a gate file's name is its stem)",
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
    criteria = _check_criteria(data.get("criteria"), probes, declared_vars, problems)
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
        _add_validation_errors(
            invalid,
            (),
            problems,
            skip=lambda at: not at or at[0] in ("probes", "criteria", "name"),
        )
        if not problems.items:
            _add_validation_errors(invalid, (), problems)
        return None
    return gate if not problems.items else None


# -- public API ----------------------------------------------------------------------------


def check_gate_text(text: str, *, name: str, source: str) -> CheckedGate:
    """Validate a gate definition (YAML, or JSON) and return the gate and every problem.

    ``name`` is the gate's name (a file's stem, or the API path); ``source`` names the
    text in problems (a file path, or e.g. ``gate portal``).
    """
    problems = _Problems(source)
    if len(text) > MAX_DEFINITION_CHARS:
        problems.at(None, (), f"the definition is larger than {MAX_DEFINITION_CHARS} characters")
        return CheckedGate(None, problems.sorted())
    document = _compose(text, problems)
    if document is None:
        return CheckedGate(None, problems.sorted())
    gate = _validate(document.data, name, problems)
    return CheckedGate(gate, problems.sorted())


def check_gate_file(path: Path | str) -> CheckedGate:
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
    return check_gate_text(text, name=path.stem, source=str(path))


def gate_file_problems(path: Path | str) -> list[GateProblem]:
    """Every problem of one gate file (empty when it is valid)."""
    return check_gate_file(path).problems


def load_gate_text(text: str, *, name: str, source: str) -> Gate:
    """The gate defined by ``text``; raises ``GateFileError`` listing every problem."""
    gate, problems = check_gate_text(text, name=name, source=source)
    if gate is None or problems:
        raise GateFileError(problems or [GateProblem(source, None, None, (), "invalid gate")])
    return gate


def load_gate_file(path: Path | str) -> Gate:
    """The gate in one file; raises ``GateFileError`` listing every problem."""
    gate, problems = check_gate_file(path)
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


def load_gate_dir(directory: Path | str) -> tuple[dict[str, Gate], list[GateProblem]]:
    """Every valid gate of a directory by name, and every problem of every file."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}, [GateProblem(str(directory), None, None, (), "not a directory")]
    gates: dict[str, Gate] = {}
    problems: list[GateProblem] = []
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
        gate, found = check_gate_file(path)
        problems.extend(found)
        if gate is not None:
            gates[gate.name] = gate
    return gates, problems


__all__ = [
    "CHECK_PLACEHOLDERS",
    "GATE_FILE_SUFFIXES",
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
