"""Typed dependencies for the parts the gates domain owns."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.core.deps import from_state
from app.gates.catalog import GateCatalog
from app.gates.scheduler import GateScheduler

CatalogDep = Annotated[GateCatalog, Depends(from_state("catalog", GateCatalog))]
SchedulerDep = Annotated[GateScheduler, Depends(from_state("scheduler", GateScheduler))]
