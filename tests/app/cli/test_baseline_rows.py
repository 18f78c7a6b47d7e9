"""``gonogo evaluate`` and ``gonogo check`` tables: a criterion's baseline value beside
its own, ``(dry run)`` after a dry-run criterion's name, dry-run reasons apart."""

from __future__ import annotations

import textwrap
from pathlib import Path

import typer
from rich.console import Console
from typer.testing import CliRunner

from app.cli import gatefiles
from app.cli.check import criteria_table

GATE = """\
    vars: {version: ".+", baseline: stable}
    probes:
      c: {type: constant, value: 0.005}
    criteria:
      - name: errors-vs-stable
        probe: c
        query: 'errors{version=~"${version}"}'
        baseline: {vars: {version: "${baseline}"}}
        go: ["<= +10%", "< 1%"]
      - name: trial
        probe: c
        go: "< 0.1%"
        dry_run: true
    """


def test_evaluate_shows_the_baseline_and_the_dry_run_apart(tmp_path: Path) -> None:
    path = tmp_path / "canary.yaml"
    path.write_text(textwrap.dedent(GATE))
    cli = typer.Typer()
    gatefiles.register(cli)
    result = CliRunner().invoke(cli, ["evaluate", str(path), "--var", "version=2.1"])
    # The failing dry-run criterion does not stop the sample from being go-able.
    assert result.exit_code == 0, result.output
    assert "0.5 % (baseline 0.5 %)" in result.stdout
    assert "trial (dry run)" in result.stdout
    assert "dry run (not deciding):" in result.stdout
    assert "  - trial: 0.5 % >= 0.1 % (go: < 0.1%) (dry run)" in result.stdout
    assert "go-able: every criterion passes" in result.stdout


def test_the_check_table_shows_the_baseline_and_the_dry_run_mark() -> None:
    check = {
        "gate": "canary",
        "version": "2.1",
        "state": "running",
        "decision": "no_go",
        "criteria": [
            {
                "name": "errors-vs-stable",
                "outcome": "fail",
                "value": 0.0123,
                "go": "<= +10%",
                "reason": "0.0123 > 0.011 (baseline 0.01 +10%; go: <= +10%)",
                "dry_run": False,
                "baseline": {"value": 0.01, "vars": {"version": "2.0"}},
            },
            {"name": "trial", "outcome": "pass", "value": 0.2, "go": "< 1", "dry_run": True},
            {"name": "old-body", "outcome": "pass", "value": None, "go": "> 0"},
        ],
    }
    console = Console(record=True, width=200, color_system=None)
    console.print(criteria_table(check))
    text = console.export_text()
    assert "0.0123 (baseline 0.01)" in text
    assert "trial (dry run)" in text
    assert "old-body " in text and "old-body (dry run)" not in text


def test_the_check_table_shows_values_in_the_unit_the_body_names() -> None:
    check = {
        "gate": "portal",
        "version": "2.1",
        "state": "running",
        "decision": "no_go",
        "criteria": [
            {"name": "availability", "outcome": "pass", "value": 0.9997, "unit": "percent"},
            {"name": "latency", "outcome": "fail", "value": 0.329993, "unit": "seconds"},
            {
                "name": "errors",
                "outcome": "fail",
                "value": 0.0123,
                "unit": "percent",
                "baseline": {"value": 0.01, "vars": {}},
            },
            {"name": "restarts", "outcome": "pass", "value": 3.0, "unit": "count"},
            {"name": "crafted", "outcome": "pass", "value": 0.5, "unit": ["%"]},
        ],
    }
    console = Console(record=True, width=200, color_system=None)
    console.print(criteria_table(check))
    rows = {line.split("│")[1].strip(): line.split("│")[3].strip() for line in _rows(console)}
    assert rows == {
        "availability": "99.97 %",
        "latency": "330 ms",
        "errors": "1.23 % (baseline 1 %)",
        "restarts": "3",
        "crafted": "0.5",  # not a unit gonogo knows: a plain number, never an error
    }


def _rows(console: Console) -> list[str]:
    return [line for line in console.export_text().splitlines() if line.count("│") >= 6]
