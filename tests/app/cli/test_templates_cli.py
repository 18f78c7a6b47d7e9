"""``gonogo validate`` and ``gonogo evaluate`` find criterion templates in ``templates/``
beside the gate files, or in the folder ``--templates`` names."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app.cli import gatefiles

TEMPLATE = """\
params: [{name: floor, default: 99%}]
criterion: {probe: c, go: "> {{ args.floor }}"}
"""
GATE = """\
probes:
  c: {type: constant, value: 1}
criteria:
  - {template: availability, args: {floor: 99.9%}}
"""


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    gatefiles.register(app)
    return app


def run(cli: typer.Typer, *args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture
def gates(tmp_path: Path) -> Path:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "availability.yaml").write_text(TEMPLATE)
    (tmp_path / "portal.yaml").write_text(GATE)
    return tmp_path


def test_validate_finds_the_templates_beside_a_directory_or_a_file(
    cli: typer.Typer, gates: Path
) -> None:
    for target in (gates, gates / "portal.yaml"):
        code, output = run(cli, "validate", target)
        assert code == 0, output
        assert "1 gate file: 1 valid, 0 invalid" in output


def test_validate_reports_a_bad_template_once_with_its_file(cli: typer.Typer, gates: Path) -> None:
    (gates / "templates" / "availability.yaml").write_text("criterion: {probe: c, qo: 1}\n")
    code, output = run(cli, "validate", gates)
    assert code == 1
    assert output.count("availability.yaml:1:23: criterion.qo: unknown key 'qo'") == 1
    assert "portal.yaml:4:16: criteria[0].template: unknown template 'availability'" in output


def test_the_templates_option_names_another_folder(
    cli: typer.Typer, gates: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "shared"
    (gates / "templates").rename(elsewhere)
    code, output = run(cli, "validate", gates)
    assert code == 1 and "unknown template 'availability'" in output
    code, output = run(cli, "validate", "--templates", elsewhere, gates)
    assert code == 0, output
    code, output = run(cli, "validate", "--templates", tmp_path / "none", gates)
    assert code == 1 and "no such directory" in output


def test_evaluate_resolves_templates(cli: typer.Typer, gates: Path) -> None:
    code, output = run(cli, "evaluate", gates / "portal.yaml", "--json")
    assert code == 0, output
    assert '"go": "> 99.9%"' in output
    (gates / "templates" / "availability.yaml").write_text(TEMPLATE.replace(">", "<"))
    code, output = run(cli, "evaluate", gates / "portal.yaml")
    assert code == 1
