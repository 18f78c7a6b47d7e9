"""``gonogo replay``: what a gate file would have decided over a past range (docs/replay.md)."""

from __future__ import annotations

import asyncio
import html
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from app.cli.gatefiles import (
    EXIT_ERROR,
    EXIT_OK,
    _build_probes,
    _close,
    _env_policy,
    _EvaluateError,
)
from app.cli.options import VarError, check_vars_used, parse_vars
from gates.conditions import format_duration, parse_duration
from gates.engine import Decision, format_number
from gates.loader import check_gate_file, templates_beside
from gates.model import Gate
from gates.placeholders import gate_placeholders
from gates.replay import Replay, ReplayError, parse_instant, replay, replay_instants
from gates.sampler import placeholder_values
from gates.templates import load_template_dir
from probes.base import Probe
from probes.timefmt import iso

_DECISION_STYLE = {Decision.GO: "green", Decision.NO_GO: "yellow", Decision.ROLLBACK: "bold red"}
_DECISION_COLOUR = {Decision.GO: "#2e7d32", Decision.NO_GO: "#f9a825", Decision.ROLLBACK: "#c62828"}
# Steps above which a terminal shows a progress bar.
_PROGRESS_FROM = 2_000


class _Failed(Exception):
    """Stops the replay with a message (exit 3)."""


def _load(gate_file: Path, templates: Path | None) -> Gate:
    if not gate_file.is_file():
        raise _Failed(f"{gate_file}: no such file")
    found, template_problems = load_template_dir(templates or templates_beside(gate_file))
    gate, problems = check_gate_file(gate_file, env_policy=_env_policy(EXIT_ERROR), templates=found)
    problems = [*template_problems, *problems]
    if gate is None or problems:
        for problem in problems:
            typer.echo(str(problem), err=True)
        raise _Failed(f"{gate_file} is not a valid gate file")
    return gate


async def _run(
    gate: Gate,
    probes: Mapping[str, Probe],
    values: Mapping[str, str],
    span: tuple[datetime, datetime, timedelta],
    progress: Callable[[int, int], None] | None,
) -> Replay:
    start, end, step = span
    try:
        return await replay(
            gate, probes, values=values, start=start, end=end, step=step, progress=progress
        )
    finally:
        await _close(probes)


def _duration(seconds: float) -> str:
    return format_duration(timedelta(seconds=seconds)) if seconds else "0s"


def _show_table(replayed: Replay) -> None:
    console = Console() if sys.stdout.isatty() else Console(width=160, color_system=None)
    table = Table(
        title=f"gate {replayed.gate.name}: replay from {iso(replayed.start)} to"
        f" {iso(replayed.end)} every {format_duration(replayed.step)}",
        title_justify="left",
    )
    for column in ("from", "to", "decision", "main reason"):
        table.add_column(column, overflow="fold")
    for span in replayed.spans():
        table.add_row(
            iso(span.start),
            iso(span.end),
            Text(span.decision.value, style=_DECISION_STYLE[span.decision]),
            Text(span.reason),
        )
    console.print(table)
    summary = replayed.summary()
    times = ", ".join(f"{name} {_duration(s)}" for name, s in summary["seconds_in"].items())
    console.print(f"time in each decision: {times}", markup=False, highlight=False)
    longest = summary["longest_no_go"]
    console.print(
        f"decision changes: {summary['changes']}; rollbacks: {summary['rollbacks']};"
        f" longest no_go: {_duration(longest['seconds']) if longest else 'none'}"
        + (f" from {longest['from']}" if longest else ""),
        markup=False,
        highlight=False,
    )
    for criterion in replayed.criteria:
        if not criterion.replayable:
            console.print(
                f"not replayable: {criterion.name}: {criterion.reason}"
                " (inconclusive at every step)",
                markup=False,
                highlight=False,
                style="magenta",
            )
        for failure in criterion.failed_reads:
            console.print(
                f"read failed: {criterion.name}: {failure}", markup=False, highlight=False
            )


# -- the HTML page -------------------------------------------------------------------------

_WIDTH, _BAND, _CHART = 960, 36, 160


def _x(replayed: Replay, at: datetime) -> float:
    total = (replayed.end - replayed.start).total_seconds() or 1.0
    return round((at - replayed.start).total_seconds() / total * _WIDTH, 2)


def _band(replayed: Replay) -> str:
    rects = []
    for span in replayed.spans():
        x0 = _x(replayed, span.start)
        x1 = min(_x(replayed, span.end), _WIDTH)
        title = html.escape(f"{iso(span.start)} to {iso(span.end)}: {span.decision}: {span.reason}")
        rects.append(
            f'<rect class="span {span.decision.value}" x="{x0}" y="0"'
            f' width="{max(x1 - x0, 0.5)}" height="{_BAND}"'
            f' fill="{_DECISION_COLOUR[span.decision]}"><title>{title}</title></rect>'
        )
    return (
        f'<svg class="band" viewBox="0 0 {_WIDTH} {_BAND}" width="{_WIDTH}" height="{_BAND}"'
        f' role="img" aria-label="decision timeline">{"".join(rects)}</svg>'
    )


def _thresholds(gate: Gate, name: str) -> list[tuple[str, float]]:
    criterion = next(c for c in gate.criteria if c.name == name)
    lines = [("go", c.threshold) for c in criterion.go if c.relative is None]
    lines += [("rollback", c.threshold) for c in criterion.rollback or () if c.relative is None]
    return lines


def _chart(replayed: Replay, name: str, rollbacks: Sequence[datetime]) -> str:
    points = [
        (step.at, result.value)
        for step in replayed.steps
        for result in step.verdict.criteria
        if result.name == name and result.value is not None
    ]
    lines = _thresholds(replayed.gate, name)
    values = [v for _, v in points] + [t for _, t in lines]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high == low:
        low, high = low - 1, high + 1
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad

    def y(value: float) -> float:
        return round(_CHART - (value - low) / (high - low) * _CHART, 2)

    parts = [
        f'<line class="rollback-moment" x1="{_x(replayed, at)}" x2="{_x(replayed, at)}" y1="0"'
        f' y2="{_CHART}"><title>rollback at {html.escape(iso(at))}</title></line>'
        for at in rollbacks
    ]
    for kind, threshold in lines:
        parts.append(
            f'<line class="threshold {kind}" x1="0" x2="{_WIDTH}" y1="{y(threshold)}"'
            f' y2="{y(threshold)}"><title>{kind} threshold'
            f" {format_number(threshold)}</title></line>"
        )
    if points:
        path = " ".join(f"{_x(replayed, at)},{y(value)}" for at, value in points)
        parts.append(f'<polyline class="value" points="{path}"/>')
    else:
        parts.append(
            f'<text x="{_WIDTH / 2}" y="{_CHART / 2}" text-anchor="middle">no values</text>'
        )
    return (
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_CHART}" width="{_WIDTH}" height="{_CHART}"'
        f' role="img" aria-label="{html.escape(name)}">{"".join(parts)}</svg>'
    )


_STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}
svg{display:block;border:1px solid #ccc;background:#fff;max-width:100%;height:auto}
.threshold{stroke-width:1.5;stroke-dasharray:6 4}.threshold.go{stroke:#2e7d32}
.threshold.rollback{stroke:#c62828}.value{fill:none;stroke:#1565c0;stroke-width:1.5}
.rollback-moment{stroke:#c62828;stroke-opacity:.35;stroke-width:2}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}.go{color:#2e7d32}.no_go{color:#a66f00}.rollback{color:#c62828}
.note{color:#7b1fa2}
"""


def render_html(replayed: Replay) -> str:
    """One self-contained page: the decision band, then a chart per criterion of its
    value against its absolute go and rollback thresholds, rollback moments marked."""
    esc = html.escape
    rollbacks = [
        step.at
        for before, step in zip((None, *replayed.steps), replayed.steps, strict=False)
        if step.verdict.decision is Decision.ROLLBACK
        and (before is None or before.verdict.decision is not Decision.ROLLBACK)
    ]
    summary = replayed.summary()
    rows = "".join(
        f"<tr><td>{esc(iso(s.start))}</td><td>{esc(iso(s.end))}</td>"
        f'<td class="{s.decision.value}">{s.decision.value}</td><td>{esc(s.reason)}</td></tr>'
        for s in replayed.spans()
    )
    charts = []
    for report in replayed.criteria:
        note = (
            f'<p class="note">not replayable: {esc(report.reason)} (inconclusive at every step)</p>'
            if not report.replayable
            else "".join(f'<p class="note">read failed: {esc(f)}</p>' for f in report.failed_reads)
        )
        charts.append(
            f'<section class="criterion"><h2>{esc(report.name)}</h2>{note}'
            f"{_chart(replayed, report.name, rollbacks)}</section>"
        )
    times = ", ".join(f"{esc(n)} {esc(_duration(s))}" for n, s in summary["seconds_in"].items())
    title = esc(f"gate {replayed.gate.name}: replay")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{title}</h1><p>{esc(iso(replayed.start))} to {esc(iso(replayed.end))} every"
        f" {esc(format_duration(replayed.step))}: {len(replayed.steps)} steps; {times};"
        f" {summary['changes']} decision changes; {summary['rollbacks']} rollbacks</p>"
        f"{_band(replayed)}<table><tr><th>from</th><th>to</th><th>decision</th>"
        f"<th>main reason</th></tr>{rows}</table>{''.join(charts)}</body></html>"
    )


# -- the command ---------------------------------------------------------------------------


def replay_command(
    gate_file: Path = typer.Argument(  # noqa: B008 (Typer declares arguments this way)
        ..., help="the gate file to replay", show_default=False
    ),
    start: str = typer.Option(
        ..., "--from", help="RFC 3339, or relative: -7d, -90m, now", show_default=False
    ),
    end: str = typer.Option("now", "--to", help="RFC 3339, or relative: -1h, now"),
    step: str | None = typer.Option(
        None, "--step", help="time between steps (default: the gate's interval)", show_default=False
    ),
    var: list[str] = typer.Option(  # noqa: B008 (Typer declares options this way)
        [],
        "--var",
        help="placeholder value, name=value (repeatable) (default: none)",
        show_default=False,
    ),
    as_json: bool = typer.Option(
        False, "--json", help="print the full timeline as JSON (default: off: a table)"
    ),
    html_file: Path | None = typer.Option(  # noqa: B008 (Typer declares options this way)
        None,
        "--html",
        help="also write a self-contained HTML page here (default: none)",
        show_default=False,
    ),
    templates: Path | None = typer.Option(  # noqa: B008 (Typer declares options this way)
        None,
        "--templates",
        help="the folder of criterion templates (default: templates/ beside the gate file)",
        show_default=False,
    ),
) -> None:
    """Replay a gate on its sources' history: what it would have decided at every step,
    at most 20,000 steps. Exit 0 when the replay ran, 3 on errors (a bad range or
    --var, or a criterion whose every range read failed)."""
    try:
        replayed = _replay(gate_file, templates, var, (start, end, step))
    except (_Failed, VarError, ReplayError) as failed:
        typer.echo(f"error: {failed}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    if html_file is not None:
        try:
            html_file.write_text(render_html(replayed), encoding="utf-8")
        except OSError as unwritable:
            typer.echo(f"error: {html_file}: {unwritable.strerror}", err=True)
            raise typer.Exit(EXIT_ERROR) from None
    if as_json:
        typer.echo(json.dumps(replayed.as_dict(), indent=1))
    else:
        _show_table(replayed)
    broken = [c for c in replayed.criteria if c.all_reads_failed]
    for criterion in broken:
        typer.echo(
            f"error: every range read of {criterion.name} failed: {criterion.failed_reads[0]}",
            err=True,
        )
    raise typer.Exit(EXIT_ERROR if broken else EXIT_OK)


def _replay(
    gate_file: Path,
    templates: Path | None,
    var: Sequence[str],
    asked: tuple[str, str, str | None],
) -> Replay:
    check_vars = parse_vars(var)
    gate = _load(gate_file, templates)
    check_vars_used(check_vars, gate_placeholders(gate), gate=gate.name)
    now = datetime.now(UTC)
    start = parse_instant(asked[0], now=now, field="--from")
    end = parse_instant(asked[1], now=now, field="--to")
    try:
        step = parse_duration(asked[2]) if asked[2] is not None else gate.interval
    except ValueError as bad:
        raise _Failed(f"--step: {bad}") from None
    count = len(replay_instants(start, end, step))  # a bad range fails before any read
    values = placeholder_values(gate, check_vars=check_vars)
    try:
        probes = _build_probes(gate)
    except _EvaluateError as failed:
        raise _Failed(str(failed)) from None
    if not (sys.stderr.isatty() and count >= _PROGRESS_FROM):
        return asyncio.run(_run(gate, probes, values, (start, end, step), None))
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("replaying", total=count)
        return asyncio.run(
            _run(
                gate,
                probes,
                values,
                (start, end, step),
                lambda done, total: bar.update(task, completed=done, total=total),
            )
        )


def register(cli: typer.Typer) -> None:
    cli.command("replay")(replay_command)
