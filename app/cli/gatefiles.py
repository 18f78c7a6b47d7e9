"""``gonogo validate`` and ``gonogo evaluate``: gate files, without a server."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from app.cli.options import VarError, check_vars_used, parse_vars
from app.core.settings import SettingsError, env_policy_from_environment
from gates.engine import CriterionOutcome, CriterionResult, Decision, Verdict, decide_safely
from gates.errors import GateProblem, count_of
from gates.judgements import comparison_summary, judged_value_text
from gates.loader import check_gate_file, gate_files, templates_beside
from gates.model import Gate
from gates.placeholders import gate_placeholders
from gates.sampler import placeholder_values, take_sample
from gates.secret_rules import EnvPolicy
from gates.templates import Template, load_template_dir
from gates.units import Unit, format_value
from probes.base import Probe
from probes.registry import probe_type

EXIT_OK = 0
EXIT_NOT_GO = 1
EXIT_ERROR = 3

_OUTCOME_STYLE = {
    CriterionOutcome.PASS: "green",
    CriterionOutcome.FAIL: "yellow",
    CriterionOutcome.BREACH: "bold red",
    CriterionOutcome.INCONCLUSIVE: "magenta",
}


# -- validate ------------------------------------------------------------------------------


def _expand(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """The gate files named by ``paths`` (directories expanded), and path errors."""
    files: list[Path] = []
    errors: list[str] = []
    for path in paths:
        if path.is_dir():
            try:
                found = gate_files(path)
            except OSError as unreadable:
                errors.append(f"{path}: cannot list: {unreadable.strerror}")
                continue
            if not found:
                errors.append(f"{path}: no gate files (*.yaml, *.yml) in this directory")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            errors.append(f"{path}: no such file or directory")
    return files, errors


def _same_gate_twice(files: Sequence[Path]) -> dict[Path, str]:
    """Files of one directory that define the same gate name (``a.yaml`` and ``a.yml``)."""
    first: dict[tuple[Path, str], Path] = {}
    clashes: dict[Path, str] = {}
    for file in files:
        key = (file.resolve().parent, file.stem)
        if key in first and first[key].resolve() != file.resolve():
            clashes[file] = f"gate {file.stem!r} is also defined by {first[key]}"
        first.setdefault(key, file)
    return clashes


def _env_policy(exit_code: int) -> EnvPolicy:
    """The variables gates may name, from ``GONOGO_ENV_ALLOW`` as the server reads it."""
    try:
        return env_policy_from_environment()
    except SettingsError as bad:
        typer.echo(f"error: {bad}", err=True)
        raise typer.Exit(exit_code) from None


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


def _summary(gate: Gate) -> str:
    parts = [_count(len(gate.criteria), "criterion", "criteria"), _count(len(gate.probes), "probe")]
    if gate.signoffs:
        parts.append(_count(len(gate.signoffs), "sign-off"))
    return f"gate {gate.name}: " + ", ".join(parts)


class _TemplateFolders:
    """The templates each gate file uses: ``--templates``, or ``templates/`` beside the
    file; each folder is read once, and its problems are reported once."""

    def __init__(self, folder: Path | None) -> None:
        self._folder = folder
        self._read: dict[Path, dict[str, Template]] = {}
        self.problems: list[GateProblem] = []

    def for_file(self, file: Path) -> dict[str, Template]:
        folder = self._folder or templates_beside(file)
        key = folder.resolve()
        if key not in self._read:
            try:
                self._read[key], found = load_template_dir(folder)
            except OSError as unreadable:
                self._read[key] = {}
                found = [GateProblem(str(folder), None, None, (), f"cannot list: {unreadable}")]
            self.problems.extend(found)
            for problem in found:
                typer.echo(str(problem))
        return self._read[key]


_TEMPLATES_OPTION = typer.Option(
    None,
    "--templates",
    help="the folder of criterion templates (default: templates/ beside the gate files)",
    show_default=False,
)


def validate(
    paths: list[Path] = typer.Argument(  # noqa: B008 (Typer declares arguments this way)
        ..., help="gate files, or directories of them", show_default=False
    ),
    templates: Path | None = _TEMPLATES_OPTION,
) -> None:
    """Validate gate files: every problem with file:line:col and a hint. Exit 1 if any."""
    policy = _env_policy(EXIT_NOT_GO)
    files, errors = _expand(paths)
    for error in errors:
        typer.echo(error)
    if templates is not None and not templates.is_dir():
        errors.append(f"{templates}: no such directory")
        typer.echo(errors[-1])
    folders = _TemplateFolders(templates)
    clashes = _same_gate_twice(files)
    seen: set[Path] = set()
    valid = invalid = 0
    for file in files:
        if file.resolve() in seen:
            continue
        seen.add(file.resolve())
        found = folders.for_file(file)
        gate, problems = check_gate_file(file, env_policy=policy, templates=found)
        if file in clashes:
            problems = [*problems, GateProblem(str(file), None, None, (), clashes[file])]
        if gate is not None and not problems:
            valid += 1
            typer.echo(f"{file}: ok ({_summary(gate)})")
            continue
        invalid += 1
        for problem in problems:
            typer.echo(str(problem))
    if files:
        typer.echo(f"{count_of(valid + invalid, 'gate file')}: {valid} valid, {invalid} invalid")
    if folders.problems:
        typer.echo(f"{count_of(len(folders.problems), 'template problem')}")
    if invalid or errors or folders.problems:
        raise typer.Exit(EXIT_NOT_GO)


# -- evaluate ------------------------------------------------------------------------------


class _EvaluateError(Exception):
    """Something that stops ``evaluate`` before it can judge (exit 3)."""


def _build_probes(gate: Gate) -> dict[str, Probe]:
    built: dict[str, Probe] = {}
    for name, config in gate.probes.items():
        try:
            built[name] = probe_type(config.type)(config, name=name)
        except Exception as fault:
            _close_soon(built)
            raise _EvaluateError(
                f"probe {name!r} ({config.type}) cannot be built: {type(fault).__name__}: {fault}"
            ) from None
    return built


def _close_soon(probes: Mapping[str, Probe]) -> None:
    if probes:
        asyncio.run(_close(probes))


async def _close(probes: Mapping[str, Probe]) -> None:
    await asyncio.gather(*(p.aclose() for p in probes.values()), return_exceptions=True)


async def _evaluate(gate: Gate, probes: Mapping[str, Probe], values: Mapping[str, str]) -> Verdict:
    try:
        sample = await take_sample(gate, probes, now=datetime.now(UTC), values=values)
    finally:
        await _close(probes)
    # One sample decides whether it is go-able: every criterion passes, none breaches.
    return decide_safely(gate.model_copy(update={"steady_for": 1}), [sample])


def _criterion_json(result: CriterionResult, gate: Gate) -> dict[str, Any]:
    config = gate.probes.get(result.probe)
    return {
        **result.as_dict(),
        "probe_type": config.type if config is not None else None,
        "status": result.status.value if result.status is not None else None,
        "observed_at": result.observed_at.isoformat().replace("+00:00", "Z")
        if result.observed_at is not None
        else None,
    }


def _show_json(gate: Gate, verdict: Verdict, values: Mapping[str, str]) -> None:
    body = verdict.as_dict()
    body["go_able"] = verdict.decision is Decision.GO
    body["vars"] = dict(values)
    body["criteria"] = [_criterion_json(c, gate) for c in verdict.criteria]
    typer.echo(json.dumps(body, indent=2))


def value_with_baseline(value: Any, baseline: Any, unit: Unit | None = None) -> str:
    """``1.23 % (baseline 1 %)``: a criterion's value in its unit, and its baseline's (the
    decision body's ``baseline``) when it has one."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    shown = format_value(value, unit) if number else "-"
    if not isinstance(baseline, Mapping):
        return shown
    base = baseline.get("value")
    known = isinstance(base, int | float) and not isinstance(base, bool)
    return f"{shown} (baseline {format_value(base, unit) if known else '-'})"


def _show_table(gate: Gate, verdict: Verdict) -> None:
    console = Console() if sys.stdout.isatty() else Console(width=160, color_system=None)
    table = Table(title=f"gate {gate.name}: one sample", title_justify="left")
    for column in ("criterion", "value", "go", "rollback", "outcome", "reason"):
        table.add_column(column, overflow="fold")
    for result in verdict.criteria:
        table.add_row(
            result.name + (" (dry run)" if result.dry_run else ""),
            judged_value_text(result.comparison, result.value)
            or value_with_baseline(
                result.value, result.baseline.as_dict() if result.baseline else None, result.unit
            ),
            result.go,
            result.rollback or "-",
            Text(result.outcome.value, style=_OUTCOME_STYLE[result.outcome]),
            "\n".join(
                filter(None, [result.reason, comparison_summary(result.comparison, result.unit)])
            ),
        )
    console.print(table)
    if verdict.dry_run_reasons:
        console.print("dry run (not deciding):", style="dim")
        for reason in verdict.dry_run_reasons:
            console.print(f"  - {reason}", markup=False, highlight=False, style="dim")
    if verdict.decision is Decision.GO:
        console.print("go-able: every criterion passes", style="green")
        return
    console.print(f"not go-able ({verdict.decision.value}):", style="yellow")
    for reason in verdict.reasons:
        if not reason.startswith("steady "):  # one sample: steadiness says nothing here
            console.print(f"  - {reason}", markup=False, highlight=False)


def evaluate(
    gate_file: Path = typer.Argument(  # noqa: B008 (Typer declares arguments this way)
        ..., help="the gate file to evaluate", show_default=False
    ),
    templates: Path | None = _TEMPLATES_OPTION,
    var: list[str] = typer.Option(  # noqa: B008 (Typer declares options this way)
        [],
        "--var",
        help="placeholder value, name=value (repeatable) (default: none)",
        show_default=False,
    ),
    as_json: bool = typer.Option(
        False, "--json", help="print JSON instead of a table (default: off: a table)"
    ),
) -> None:
    """Take one sample of a gate now, with no server. Exit 0 go-able, 1 not, 3 error."""
    try:
        check_vars = parse_vars(var)
    except VarError as bad:
        typer.echo(f"error: {bad}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    if not gate_file.is_file():
        typer.echo(f"error: {gate_file}: no such file", err=True)
        raise typer.Exit(EXIT_ERROR)
    folder = templates or templates_beside(gate_file)
    found, template_problems = load_template_dir(folder)
    gate, problems = check_gate_file(gate_file, env_policy=_env_policy(EXIT_ERROR), templates=found)
    problems = [*template_problems, *problems]
    if gate is None or problems:
        for problem in problems:
            typer.echo(str(problem), err=True)
        typer.echo(f"error: {gate_file} is not a valid gate file", err=True)
        raise typer.Exit(EXIT_ERROR)
    try:
        check_vars_used(check_vars, gate_placeholders(gate), gate=gate.name)
    except VarError as bad:
        typer.echo(f"error: {bad}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    values = placeholder_values(gate, check_vars=check_vars)
    try:
        probes = _build_probes(gate)
        verdict = asyncio.run(_evaluate(gate, probes, values))
    except _EvaluateError as failed:
        typer.echo(f"error: {failed}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    if as_json:
        _show_json(gate, verdict, values)
    else:
        _show_table(gate, verdict)
    raise typer.Exit(EXIT_OK if verdict.decision is Decision.GO else EXIT_NOT_GO)


def register(cli: typer.Typer) -> None:
    cli.command("validate")(validate)
    cli.command("evaluate")(evaluate)
