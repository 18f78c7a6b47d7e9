"""Consoles for every command: lines are never soft-wrapped and nothing is highlighted.

A CI log is not a terminal: Rich would wrap a long line at 80 columns there (or at
``COLUMNS``), and its highlighter colours ``1.4.3`` as a number. Tables sent to a log get
a wide page instead, so their cells are not folded either.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

LOG_WIDTH = 240  # columns for tables when the output is not a terminal


def console(*, stderr: bool = False) -> Console:
    """A console for ``stdout`` (or ``stderr``): no soft wrap, no highlighting."""
    out = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not out.is_terminal:
        out = Console(stderr=stderr, highlight=False, soft_wrap=True, width=LOG_WIDTH)
    return out


def print_json(body: Any) -> None:
    """``body`` as JSON on stdout, and nothing else."""
    typer.echo(json.dumps(body, indent=2, sort_keys=False))
