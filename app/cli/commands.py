"""CLI command modules; each exposes ``register(cli)``."""

from __future__ import annotations

import importlib

import typer

_MODULES = (
    "app.cli.gatefiles",
    "app.cli.server",
    "app.cli.check",
    "app.cli.checks",
    "app.cli.demo",
    "app.cli.replay",
)


def register_all(cli: typer.Typer) -> None:
    for module_name in _MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as missing:
            if missing.name != module_name:
                raise
            continue
        module.register(cli)
