"""The Jinja environment of the history pages (autoescaped HTML templates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES_DIR: Final = Path(__file__).resolve().parent / "templates"

_templates = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_template(name: str, **context: Any) -> str:
    return _templates.get_template(name).render(**context)
