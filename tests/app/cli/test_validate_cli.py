"""``gonogo validate PATH...``: every problem of every file, exit 0 only when all are valid."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app.cli import gatefiles

GATEFILES = Path(__file__).resolve().parents[2] / "gatefiles"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    gatefiles.register(app)
    return app


def validate(cli: typer.Typer, *paths: Path | str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["validate", *map(str, paths)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout.splitlines()


def test_a_valid_file_prints_ok_and_exits_0(cli: typer.Typer) -> None:
    code, lines = validate(cli, GATEFILES / "valid.yaml")
    assert code == 0
    assert lines == [
        f"{GATEFILES / 'valid.yaml'}: ok (gate valid: 1 criterion, 1 probe, 1 sign-off)",
        "1 gate file: 1 valid, 0 invalid",
    ]


def test_every_problem_of_every_file_is_printed_with_its_location(cli: typer.Typer) -> None:
    code, lines = validate(
        cli,
        GATEFILES / "many-problems.yaml",
        GATEFILES / "syntax-error.yaml",
        GATEFILES / "valid.yaml",
    )
    assert code == 1
    many = [line for line in lines if line.startswith(str(GATEFILES / "many-problems.yaml"))]
    assert len(many) == 10
    assert (
        f"{GATEFILES / 'many-problems.yaml'}:4:1: rollbak_after: unknown key 'rollbak_after'"
        in ("\n".join(many))
    )
    assert any(
        line.startswith(f"{GATEFILES / 'syntax-error.yaml'}:3:9: YAML syntax error")
        for line in lines
    )
    assert any(line.endswith("ok (gate valid: 1 criterion, 1 probe, 1 sign-off)") for line in lines)
    assert lines[-1] == "3 gate files: 1 valid, 2 invalid"
    assert not any("s3cr3t" in line for line in lines)


def test_a_directory_is_validated_file_by_file(cli: typer.Typer) -> None:
    code, lines = validate(cli, GATEFILES)
    assert code == 1
    assert lines[-1] == "5 gate files: 1 valid, 4 invalid"
    assert any("empty.yaml: the gate definition is empty" in line for line in lines)
    assert any("top-level-list.yaml:1:1:" in line for line in lines)


def test_a_directory_of_valid_files_exits_0(cli: typer.Typer, tmp_path: Path) -> None:
    for name in ("portal", "billing"):
        shutil.copy(GATEFILES / "valid.yaml", tmp_path / f"{name}.yaml")
    code, lines = validate(cli, tmp_path)
    assert code == 0
    assert lines[-1] == "2 gate files: 2 valid, 0 invalid"


@pytest.mark.parametrize("make", ["missing", "empty dir"])
def test_bad_paths_are_errors_not_tracebacks(cli: typer.Typer, tmp_path: Path, make: str) -> None:
    path = tmp_path / "gates"
    if make == "empty dir":
        path.mkdir()
        (path / "notes.txt").write_text("not a gate")
    code, lines = validate(cli, path)
    assert code == 1
    expected = (
        "no such file or directory"
        if make == "missing"
        else "no gate files (*.yaml, *.yml) in this directory"
    )
    assert lines == [f"{path}: {expected}"]


def test_a_missing_path_beside_valid_files_still_fails(cli: typer.Typer, tmp_path: Path) -> None:
    code, lines = validate(cli, GATEFILES / "valid.yaml", tmp_path / "nope.yaml")
    assert code == 1
    assert f"{tmp_path / 'nope.yaml'}: no such file or directory" in lines
    assert lines[-1] == "1 gate file: 1 valid, 0 invalid"


def test_the_same_gate_twice_in_one_directory_is_invalid(cli: typer.Typer, tmp_path: Path) -> None:
    shutil.copy(GATEFILES / "valid.yaml", tmp_path / "portal.yaml")
    shutil.copy(GATEFILES / "valid.yaml", tmp_path / "portal.yml")
    code, lines = validate(cli, tmp_path)
    assert code == 1
    assert any("portal.yml: gate 'portal' is also defined by" in line for line in lines)


def test_a_file_named_twice_is_checked_once(cli: typer.Typer) -> None:
    code, lines = validate(cli, GATEFILES / "valid.yaml", GATEFILES / "valid.yaml")
    assert code == 0
    assert lines[-1] == "1 gate file: 1 valid, 0 invalid"


def test_the_installed_command_validates() -> None:
    gonogo = Path(sys.executable).with_name("gonogo")
    result = subprocess.run(
        [str(gonogo), "validate", str(GATEFILES / "valid.yaml"), str(GATEFILES / "empty.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "valid.yaml: ok" in result.stdout
    assert "empty.yaml: the gate definition is empty" in result.stdout
