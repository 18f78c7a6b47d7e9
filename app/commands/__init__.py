"""CLI command modules; each exposes ``register(cli)``."""

from __future__ import annotations

import importlib

import typer

_MODULES = (
    "app.commands.gatefiles",
    "app.commands.server",
    "app.commands.check",
    "app.commands.demo",
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
