"""The catalog's template changes: all or nothing, and never lost to a gate defined while
a change is being checked."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from app.gates.catalog import GateCatalog, TemplateChangeRefused
from gates.templates import Template
from tests.app.fakes import ProbeBench

TEMPLATE = """\
params: [{name: floor, default: 99%}]
criterion: {probe: p, go: "> {{ args.floor }}"}
"""
USER = """\
probes:
  p: {type: constant, value: 1}
criteria:
  - {template: availability}
"""


def catalog() -> GateCatalog:
    return GateCatalog(gates_dir=None, probe_builder=ProbeBench(), close_grace=0.0)


async def test_a_gate_defined_while_a_change_is_checked_gets_the_new_template() -> None:
    gates = catalog()
    await gates.aput_api_template("availability", TEMPLATE)
    await gates.aput_api_gate("first", USER)
    checking = threading.Event()
    proceed = threading.Event()
    original = gates._reparse_all

    def slow(users: Sequence[Any], templates: Mapping[str, Template]) -> list[Any]:
        checking.set()
        proceed.wait(10)
        return original(users, templates)

    gates._reparse_all = slow  # type: ignore[method-assign]
    change = asyncio.create_task(
        gates.aput_api_template("availability", TEMPLATE.replace("99%", "50%"))
    )
    await asyncio.to_thread(checking.wait, 10)
    await gates.aput_api_gate("second", USER)  # uses the template, under its old text
    gates._reparse_all = original  # type: ignore[method-assign]
    proceed.set()
    await change
    for name in ("first", "second"):
        loaded = gates.get(name)
        assert loaded is not None
        assert [c.text for c in loaded.gate.criteria[0].go] == ["> 50%"], name
    await gates.aclose()


async def test_a_refused_change_changes_nothing(tmp_path: Path) -> None:
    gates = catalog()
    await gates.aput_api_template("availability", TEMPLATE)
    before = await gates.aput_api_gate("first", USER)
    with pytest.raises(TemplateChangeRefused) as refused:
        await gates.aput_api_template("availability", TEMPLATE.replace("probe: p", "probe: q"))
    assert list(refused.value.problems) == ["first"]
    assert gates.get("first") is before
    entry = gates.template("availability")
    assert entry is not None and entry.template.text == TEMPLATE
    with pytest.raises(TemplateChangeRefused):
        await gates.aremove_api_template("availability")
    assert gates.template_users("availability") == ["first"]
    await gates.aclose()
