"""Shared criterion templates: one criterion with parameters, used by many gates.

A template (``templates/NAME.yaml`` next to the gate files, or ``PUT
/api/v1/templates/{name}``) declares ``params`` and one ``criterion`` whose strings may
hold ``{{ args.NAME }}``. A gate's criterion uses it with ``template: NAME`` and
``args: {...}`` and may override a few keys (``OVERRIDABLE``). Resolution is plain text
substitution into the template's strings before the gate is validated, so every
criterion key (present or future) passes through untouched, and ``${...}`` placeholders
in a template or an argument stay placeholders, filled and quoted later exactly as in a
criterion written out in full (docs/templates.md).

Problems are located in the file that holds the cause: the gate's line for a bad
reference, a missing or unknown argument, a key that may not be overridden; the
template's line for a problem in the template's own criterion, with the gate's line of
the use in the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import ValidationError

from gates.errors import GateProblem, Loc, format_loc
from gates.model import GATE_NAME, Criterion
from gates.problems import NAME_HINT, Problems, add_validation_errors, did_you_mean
from gates.yaml_source import (
    MAX_DEFINITION_CHARS,
    MAX_DEPTH,
    MAX_VALUES,
    Document,
    Mark,
    collector_paused,
    compose,
)

# The folder, next to the gate files, that holds template files.
TEMPLATE_DIR = "templates"
TEMPLATE_FILE_SUFFIXES = (".yaml", ".yml")
# Keys a criterion that uses a template may set besides ``template`` and ``args``.
OVERRIDABLE = ("name", "go", "rollback", "window", "dry_run", "description")
TEMPLATE_KEYS = ("description", "params", "criterion")
PARAM_KEYS = ("name", "default")

# ``{{ args.NAME }}``: braces and ``args.`` cannot occur in a ``${...}`` placeholder, so
# neither syntax can be read as the other.
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
_REFERENCE = re.compile(r"\{\{\s*args\.([A-Za-z_][A-Za-z0-9_-]{0,62})\s*\}\}")
_NEAR_REFERENCE = re.compile(r"\{\{\s*args?\b")


@dataclass(frozen=True)
class Param:
    name: str
    default: str | None


@dataclass(frozen=True, eq=False)
class Template:
    """A template as read and checked on its own; ``document`` keeps every position."""

    name: str
    source: str
    text: str
    description: str
    params: tuple[Param, ...]
    criterion: Mapping[str, Any]
    document: Document = field(repr=False)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def mark(self, location: Loc, *, at_key: bool = False) -> Mark | None:
        """The position of ``location`` (from the template's root) or of its nearest parent."""
        if at_key and location in self.document.keys:
            return self.document.keys[location]
        for end in range(len(location), -1, -1):
            mark = self.document.values.get(location[:end])
            if mark is not None:
                return mark
        return None

    def place(self, location: Loc, *, at_key: bool = False) -> str:
        """``templates/error-rate.yaml:7:10``: where ``location`` is, for messages."""
        mark = self.mark(location, at_key=at_key)
        return self.source if mark is None else f"{self.source}:{mark[0]}:{mark[1]}"


class CheckedTemplate(NamedTuple):
    template: Template | None
    problems: list[GateProblem]


def _as_text(value: Any) -> str | None:
    """An argument or default as text (as gate ``vars`` are); ``None`` if not a scalar."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _strings(value: Any, location: Loc) -> Iterator[tuple[Loc, str]]:
    if isinstance(value, str):
        yield location, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, (*location, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*location, index))


def references(text: str) -> list[str]:
    """The parameter names ``text`` refers to with ``{{ args.NAME }}``."""
    return [match.group(1) for match in _REFERENCE.finditer(text)]


def _malformed(text: str) -> str | None:
    """The first ``{{ args...`` in ``text`` that is not a whole reference, if any."""
    for near in _NEAR_REFERENCE.finditer(text):
        if not _REFERENCE.match(text, near.start()):
            return text[near.start() : near.start() + 40]
    return None


def _check_keys(
    raw: Mapping[str, Any], known: tuple[str, ...], location: Loc, problems: Problems
) -> None:
    for key in raw:
        if key in known:
            continue
        suggestion = did_you_mean(key, known)
        hint = f"did you mean {suggestion!r}?" if suggestion else f"known keys: {', '.join(known)}"
        problems.add((*location, key), f"unknown key {key!r}", hint, at_key=True)


def _check_params(raw: Any, problems: Problems) -> tuple[Param, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.add(("params",), "params must be a list of {name: ..., default: ...}")
        return ()
    params: list[Param] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        at: Loc = ("params", index)
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, Mapping):
            problems.add(
                at, "a param is a mapping: {name: service} or {name: code, default: '5..'}"
            )
            continue
        _check_keys(entry, PARAM_KEYS, at, problems)
        name = entry.get("name")
        if not isinstance(name, str) or not PARAM_NAME.fullmatch(name):
            problems.add(
                (*at, "name"),
                f"bad param name {name!r}" if name is not None else "a param needs name:",
                "letters, digits, '_' and '-', starting with a letter or '_'",
            )
            continue
        if name in seen:
            problems.add((*at, "name"), f"duplicate param {name!r}")
            continue
        seen.add(name)
        default = None
        if "default" in entry:
            default = _as_text(entry["default"])
            if default is None:
                problems.add(
                    (*at, "default"), "a default is a single value (text or a number), not a list"
                )
                continue
        params.append(Param(name, default))
    return tuple(params)


def _check_criterion(raw: Any, params: tuple[Param, ...], problems: Problems) -> None:
    if raw is None:
        problems.add(
            (),
            "criterion: is missing; a template defines one criterion",
            "criterion: {probe: prom, query: ..., go: '< 1%'}",
        )
        return
    if not isinstance(raw, Mapping):
        problems.add(("criterion",), "criterion must be a mapping of criterion keys")
        return
    for key in ("template", "args"):
        if key in raw:
            problems.add(
                ("criterion", key),
                f"a template cannot use another template ({key}: is not allowed here)",
                "write the criterion out in full in this template",
                at_key=True,
            )
    known = tuple(k for k in Criterion.model_fields if k not in ("template", "args"))
    _check_keys(
        {k: v for k, v in raw.items() if k not in ("template", "args")},
        known,
        ("criterion",),
        problems,
    )
    if "probe" not in raw:
        problems.add(
            ("criterion",),
            "probe is required in a template (a gate using it cannot set it)",
            "name a probe the gates using it define, or {{ args.probe }}",
        )
    declared = [p.name for p in params]
    _check_fixed_values(raw, problems)
    for location, text in _strings(raw, ("criterion",)):
        bad = _malformed(text)
        if bad is not None:
            problems.add(
                location,
                f"malformed parameter reference {bad!r}",
                "a reference is {{ args.NAME }}, NAME a declared param",
            )
        for name in references(text):
            if name not in declared:
                suggestion = did_you_mean(name, declared)
                problems.add(
                    location,
                    f"{{{{ args.{name} }}}} refers to no declared param",
                    f"did you mean {{{{ args.{suggestion} }}}}?"
                    if suggestion
                    else f"declare it under params: (declared: {', '.join(declared) or 'none'})",
                )


def _check_fixed_values(raw: Mapping[str, Any], problems: Problems) -> None:
    """The criterion's keys that no argument changes (no ``{{ args.NAME }}`` in them) must
    already be valid: a bad condition is reported when the template is written, not only
    when a gate first uses it. Keys a gate may add (``go``, ...) may be missing."""
    fixed = {
        key
        for key, value in raw.items()
        if not any(_NEAR_REFERENCE.search(text) for _, text in _strings(value, ()))
    }
    trial = {key: value for key, value in raw.items() if key not in ("template", "args")}
    trial.setdefault("name", "trial")
    try:
        Criterion.model_validate(trial)
    except ValidationError as invalid:
        scratch = Problems(problems.file, problems.document)
        add_validation_errors(invalid, ("criterion",), scratch)
        for problem in scratch.items:
            key = problem.loc[1] if len(problem.loc) > 1 else None
            if key not in fixed:
                continue
            problems.items.append(problem)


def check_template_text(text: str, *, name: str, source: str) -> CheckedTemplate:
    """Read and check one template on its own (YAML or JSON), with every problem located.

    What the criterion means for a gate (its probe, its conditions with the arguments
    filled in) is checked when a gate uses it. CPU-bound: the service calls it off the
    event loop; the loader's limits bound the work.
    """
    with collector_paused():
        problems = Problems(source)
        document = compose(text, problems)
        if document is None:
            return CheckedTemplate(None, problems.sorted())
        data = document.data
        if not isinstance(data, Mapping):
            problems.add((), "a template is a mapping with params: and criterion:")
            return CheckedTemplate(None, problems.sorted())
        if not GATE_NAME.match(name):
            problems.at(None, (), f"template name {name!r} is not valid", NAME_HINT)
        _check_keys(data, TEMPLATE_KEYS, (), problems)
        description = data.get("description", "")
        if not isinstance(description, str):
            problems.add(("description",), "description is text")
        params = _check_params(data.get("params"), problems)
        _check_criterion(data.get("criterion"), params, problems)
        if problems.items:
            return CheckedTemplate(None, problems.sorted())
        template = Template(
            name=name,
            source=source,
            text=text,
            description=description if isinstance(description, str) else "",
            params=params,
            criterion=data["criterion"],
            document=document,
        )
        return CheckedTemplate(template, [])


def template_files(directory: Path) -> list[Path]:
    """The template files of a ``templates`` folder (hidden files skipped), sorted."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in TEMPLATE_FILE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def load_template_dir(directory: Path) -> tuple[dict[str, Template], list[GateProblem]]:
    """Every valid template of a folder by name, and every problem (a missing folder has
    no templates and no problem)."""
    templates: dict[str, Template] = {}
    problems: list[GateProblem] = []
    if not directory.is_dir():
        return templates, problems
    for path in template_files(directory):
        if path.stem in templates:
            problems.append(
                GateProblem(str(path), None, None, (), f"template {path.stem!r} is defined twice")
            )
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as unreadable:
            problems.append(GateProblem(str(path), None, None, (), f"cannot read: {unreadable}"))
            continue
        template, found = check_template_text(text, name=path.stem, source=str(path))
        problems.extend(found)
        if template is not None:
            templates[template.name] = template
    return templates, problems


# -- resolution ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateUse:
    """One gate criterion that uses a template: where, which, and what the gate set."""

    index: int
    template: Template
    entry: Mapping[str, Any]

    def from_gate(self, inside: Loc) -> bool:
        """Whether a problem at ``inside`` (below the criterion) lies in the gate's text."""
        if not inside:
            return True
        key = inside[0]
        if key in self.entry:
            return True
        # A key neither sets: a missing overridable key belongs to the gate, others to
        # the template (the gate could not add them).
        return key not in self.template.criterion and key in OVERRIDABLE


class RoutedProblems(Problems):
    """The gate's problems, each placed in the file that holds its cause.

    Problems inside a criterion that uses a template are placed in the template unless
    they concern a key the gate wrote; problems of a criterion whose use is already
    reported (missing argument, unknown template) are left out, since they would only
    repeat it.
    """

    def __init__(self, base: Problems, uses: Mapping[int, TemplateUse], failed: set[int]) -> None:
        super().__init__(base.file, base.document)
        self.items = base.items
        self._uses = uses
        self._failed = failed

    def add(
        self, location: Loc, message: str, hint: str | None = None, *, at_key: bool = False
    ) -> None:
        index = location[1] if len(location) >= 2 and location[0] == "criteria" else None
        if isinstance(index, int) and index in self._failed:
            return
        use = self._uses.get(index) if isinstance(index, int) else None
        if use is None or use.from_gate(location[2:]):
            super().add(location, message, hint, at_key=at_key)
            return
        template = use.template
        mark = template.mark(("criterion", *location[2:]), at_key=at_key)
        line, col = mark if mark is not None else (None, None)
        # The line is the template's; said again, since an API answer shows it unnamed.
        at = f" at line {line}" if line is not None else ""
        message += f" (in template {template.name!r}{at}, used by {self._place(location[:2])})"
        self.items.append(GateProblem(template.source, line, col, location, message, hint))

    def _place(self, location: Loc) -> str:
        mark = self._mark(location, at_key=False)
        where = self.file if mark is None else f"{self.file}:{mark[0]}:{mark[1]}"
        return f"{format_loc(location)} at {where}"

    def sorted(self) -> list[GateProblem]:
        return sorted(
            self.items, key=lambda p: (p.file != self.file, p.file, p.line or 0, p.col or 0)
        )


class _Budget:
    """The limits of one definition, for the definition with its templates filled in: it
    is stored as text and read again, so it must fit them too."""

    def __init__(self) -> None:
        self.values = 0
        self.chars = 0

    def spend(self, values: int, chars: int) -> bool:
        self.values += values
        self.chars += chars
        return self.values <= MAX_VALUES and self.chars <= MAX_DEFINITION_CHARS


def _substitute(value: Any, args: Mapping[str, str], budget: _Budget, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise _TooLarge(f"nested too deeply: deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        text = _REFERENCE.sub(lambda m: args[m.group(1)], value)
        if not budget.spend(1, len(text)):
            raise _TooLarge("too large")
        return text
    if isinstance(value, Mapping):
        if not budget.spend(1, 0):
            raise _TooLarge("too large")
        return {k: _substitute(v, args, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if not budget.spend(1, 0):
            raise _TooLarge("too large")
        return [_substitute(v, args, budget, depth + 1) for v in value]
    if not budget.spend(1, 0):
        raise _TooLarge("too large")
    return value


class _TooLarge(Exception):
    pass


def _use_args(
    use_at: Loc, entry: Mapping[str, Any], template: Template, problems: Problems
) -> dict[str, str] | None:
    raw = entry.get("args", {})
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.add((*use_at, "args"), "args must map each param name to its value")
        return None
    declared = [p.name for p in template.params]
    args: dict[str, str] = {}
    ok = True
    for name, value in raw.items():
        if name not in declared:
            suggestion = did_you_mean(name, declared)
            problems.add(
                (*use_at, "args", name),
                f"unknown argument {name!r} of template {template.name!r}",
                f"did you mean {suggestion!r}?"
                if suggestion
                else f"its params are: {', '.join(declared) or 'none'} ({template.place(())})",
                at_key=True,
            )
            ok = False
            continue
        text = _as_text(value)
        if text is None:
            problems.add(
                (*use_at, "args", name), "an argument is a single value (text or a number)"
            )
            ok = False
            continue
        args[name] = text
    for index, param in enumerate(template.params):
        if param.name in raw:
            continue  # given: its value is in args, or reported above
        if param.default is None:
            where = (*use_at, "args") if "args" in entry else (*use_at, "template")
            problems.add(
                where,
                f"missing argument {param.name!r} of template {template.name!r}"
                f" (declared at {template.place(('params', index))})",
                f"add args: {{{param.name}: ...}}, or give the param a default in the template",
            )
            ok = False
            continue
        args[param.name] = param.default
    return args if ok else None


def uses_templates(data: Any) -> bool:
    """Whether a composed gate definition has a criterion with ``template:``."""
    criteria = data.get("criteria") if isinstance(data, Mapping) else None
    return isinstance(criteria, list) and any(
        isinstance(entry, Mapping) and "template" in entry for entry in criteria
    )


class Resolution(NamedTuple):
    data: dict[str, Any]
    problems: RoutedProblems
    used: frozenset[str]


def resolve(
    data: Mapping[str, Any], templates: Mapping[str, Template], problems: Problems
) -> Resolution:
    """``data`` with every criterion that uses a template replaced by the template's
    criterion, its arguments filled in and the gate's overrides applied; problems of the
    uses are added to ``problems``, and later ones should go through the returned
    ``RoutedProblems``."""
    uses: dict[int, TemplateUse] = {}
    failed: set[int] = set()
    routed = RoutedProblems(problems, uses, failed)
    criteria = data.get("criteria")
    resolved = dict(data)
    if not isinstance(criteria, list):
        return Resolution(resolved, routed, frozenset())
    budget = _Budget()
    budget.spend(_count_values(data), 0)
    out: list[Any] = []
    used: set[str] = set()
    for index, entry in enumerate(criteria):
        if not (isinstance(entry, Mapping) and "template" in entry):
            out.append(entry)
            continue
        at: Loc = ("criteria", index)
        merged = _resolve_one(at, entry, templates, budget, problems)
        if merged is None:
            failed.add(index)
            out.append(None)
            continue
        template = templates[entry["template"]]
        used.add(template.name)
        uses[index] = TemplateUse(index, template, entry)
        out.append(merged)
    resolved["criteria"] = out
    return Resolution(resolved, routed, frozenset(used))


def _resolve_one(
    at: Loc,
    entry: Mapping[str, Any],
    templates: Mapping[str, Template],
    budget: _Budget,
    problems: Problems,
) -> dict[str, Any] | None:
    ok = True
    for key in entry:
        if key not in ("template", "args", *OVERRIDABLE):
            problems.add(
                (*at, key),
                f"{key!r} cannot be set beside template:; a criterion using a template may"
                f" override only {', '.join(OVERRIDABLE)}",
                "change the template (or give it a param), or write the criterion out in full",
                at_key=True,
            )
            ok = False
    name = entry["template"]
    if not isinstance(name, str) or not name:
        problems.add((*at, "template"), "template: names a template (a file stem)")
        return None
    template = templates.get(name)
    if template is None:
        known = sorted(templates)
        suggestion = did_you_mean(name, known)
        problems.add(
            (*at, "template"),
            f"unknown template {name!r}",
            f"did you mean {suggestion!r}?"
            if suggestion
            else f"put it in {TEMPLATE_DIR}/{name}.yaml next to the gate files, or PUT it"
            f" to /api/v1/templates/{name} for an API-defined gate"
            f" (known: {', '.join(known) or 'none'})",
        )
        return None
    args = _use_args(at, entry, template, problems)
    if args is None or not ok:
        return None
    try:
        merged: dict[str, Any] = _substitute(template.criterion, args, budget, 3)
    except _TooLarge:
        problems.add(
            (*at, "template"),
            f"the gate with its templates filled in is larger than a definition may be"
            f" ({MAX_VALUES} values, {MAX_DEFINITION_CHARS} characters, {MAX_DEPTH} levels)",
            "use fewer or smaller templates, or split the gate",
        )
        return None
    merged.setdefault("name", template.name)
    for key in OVERRIDABLE:
        if key in entry:
            merged[key] = entry[key]
    if "description" not in merged and template.description:
        merged["description"] = template.description
    return merged


def _count_values(value: Any) -> int:
    if isinstance(value, Mapping):
        return 1 + sum(_count_values(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_count_values(v) for v in value)
    return 1


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def resolved_text(data: Mapping[str, Any]) -> str:
    """The definition with its templates filled in, as YAML text: what is stored for its
    version, so that it can be judged later without the templates."""
    header = "# resolved: every template filled in\n"
    return header + yaml.dump(
        dict(data), Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=1_000_000
    )


__all__ = [
    "OVERRIDABLE",
    "TEMPLATE_DIR",
    "CheckedTemplate",
    "Param",
    "Resolution",
    "RoutedProblems",
    "Template",
    "TemplateUse",
    "check_template_text",
    "load_template_dir",
    "references",
    "resolve",
    "resolved_text",
    "template_files",
    "uses_templates",
]
