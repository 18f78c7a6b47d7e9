"""Typed dependencies for the parts the checks domain owns."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.checks.runner import CheckRunner
from app.core.deps import from_state

RunnerDep = Annotated[CheckRunner, Depends(from_state("checks", CheckRunner))]
