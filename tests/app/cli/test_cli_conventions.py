"""The command line behaves as people expect: ``--version``/``-V``, ``-h`` on every command,
help text with a default on every option, a token never printed, usage errors exit 3."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import pytest
import typer
from typer.core import TyperGroup, TyperOption
from typer.main import get_command
from typer.testing import CliRunner

from app.cli import cli
from app.cli.commands import register_all
from app.core.version import package_version
from tests.app.cli.test_processes import GONOGO

register_all(cli)
ROOT = get_command(cli)
SECRET = "tok-never-shown-4242"


def commands(
    group: typer.core.TyperCommand | TyperGroup = ROOT, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(group, TyperGroup):
        for name, command in group.commands.items():
            yield from commands(command, (*path, name))


def command_at(path: tuple[str, ...]) -> typer.core.TyperCommand | TyperGroup:
    command = ROOT
    for name in path:
        assert isinstance(command, TyperGroup)
        command = command.commands[name]
    return command


ALL = sorted(commands())


def invoke(*args: str, env: dict[str, str] | None = None) -> typer.testing.Result:
    return CliRunner().invoke(cli, list(args), env=env, terminal_width=200)


def test_version_and_its_short_form_print_the_package_version() -> None:
    for flag in ("--version", "-V"):
        result = invoke(flag)
        assert result.exit_code == 0
        assert result.stdout == f"gonogo {package_version()}\n"


def test_the_version_printed_by_the_installed_command_is_plain_text() -> None:
    result = subprocess.run(
        [GONOGO, "--version"],
        env={**os.environ, "FORCE_COLOR": "1", "TERM": "xterm-256color"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout == f"gonogo {package_version()}\n"  # no escape codes around it


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "gonogo")
def test_every_command_answers_h_and_help(path: tuple[str, ...]) -> None:
    short, long = invoke(*path, "-h"), invoke(*path, "--help")
    assert short.exit_code == long.exit_code == 0, short.output
    assert short.stdout == long.stdout
    assert "Usage: " in short.stdout


@pytest.mark.parametrize("path", [p for p in ALL if p], ids=" ".join)
def test_every_option_has_help_that_says_its_default(path: tuple[str, ...]) -> None:
    command = command_at(path)
    for param in command.params:
        if not isinstance(param, TyperOption) or param.name == "help":
            continue
        help_text = param.help or ""
        assert help_text.strip(), f"{' '.join(path)} {param.opts[0]} has no help"
        shown = param.show_default is not False and param.default not in (None, False, [], ())
        said = re.search(r"\(default: [^)]+|\(required|required\)", help_text) or param.required
        assert shown or said, f"{' '.join(path)} {param.opts[0]}: no default shown: {help_text}"


@pytest.mark.parametrize(
    "path",
    [p for p in ALL if p and "--token" in command_at(p).params_names()]
    if hasattr(typer.core.TyperCommand | TyperGroup, "params_names")
    else [p for p in ALL if p and any("--token" in q.opts for q in command_at(p).params)],
    ids=" ".join,
)
def test_server_and_token_come_from_the_environment_and_the_token_is_never_shown(
    path: tuple[str, ...],
) -> None:
    command = command_at(path)
    envvars = {p.opts[0]: p.envvar for p in command.params if isinstance(p, TyperOption)}
    assert envvars["--server"] == "GONOGO_SERVER"
    assert envvars["--token"] == "GONOGO_TOKEN"
    result = invoke(*path, "--help", env={"GONOGO_TOKEN": SECRET, "GONOGO_SERVER": "http://x"})
    assert result.exit_code == 0
    assert SECRET not in result.output
    assert "GONOGO_TOKEN" in result.output


def test_check_help_explains_the_default_idempotency_key() -> None:
    text = " ".join(invoke("check", "--help").stdout.replace("│", " ").split())
    for name in ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "CI_JOB_ID", "the gate and the stage"):
        assert name in text


@pytest.mark.parametrize(
    "args",
    [
        ["checks"],
        ["checks", "show"],
        ["checks", "decide", "abc", "--server", "http://127.0.0.1:1", "--decision", "maybe"],
        ["checks", "list", "--server", "http://127.0.0.1:1", "--limit", "0"],
        [
            "check",
            "--server",
            "http://127.0.0.1:1",
            "--gate",
            "g",
            "--version",
            "1",
            "--idempotency-key",
            "",
        ],
    ],
    ids=["bare group", "no id", "bad decision", "bad limit", "empty key"],
)
def test_usage_errors_exit_3(args: list[str]) -> None:
    result = subprocess.run(
        [GONOGO, *args],
        env={**os.environ, "GONOGO_TOKEN": SECRET},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Usage: gonogo" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr
