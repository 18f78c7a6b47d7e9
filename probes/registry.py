"""Probe types, found through the ``gonogo.probes`` entry-point group.

Built-in types register through the same group a third-party package would use, so
``pip install gonogo-probe-foo`` is all it takes to add a type.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from probes.base import ProbeFactory

ENTRY_POINT_GROUP = "gonogo.probes"


class UnknownProbeType(LookupError):
    """No installed package provides this probe type."""

    def __init__(self, type_name: str, known: list[str]) -> None:
        super().__init__(f"unknown probe type {type_name!r}; known types: {', '.join(known)}")
        self.type_name = type_name
        self.known = known


@cache
def probe_types() -> dict[str, ProbeFactory]:
    """Every installed probe type by name (loaded once per process)."""
    found: dict[str, ProbeFactory] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        factory: ProbeFactory = entry.load()
        found[entry.name] = factory
    return found


@cache
def probe_type(type_name: str) -> ProbeFactory:
    """One type's factory. Only that type's module is imported, so one broken plugin
    does not make every other type unusable."""
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=type_name):
        factory: ProbeFactory = entry.load()
        return factory
    known = sorted({entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)})
    raise UnknownProbeType(type_name, known)
