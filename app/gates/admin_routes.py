"""``/api/v1/admin``: operator actions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.core.deps import Admin
from app.core.problems import Invalid
from app.gates.deps import CatalogDep

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post(
    "/reload",
    summary="Re-read the gate directory (admin); an invalid directory changes nothing",
    responses={422: {"description": "invalid gate files; the previous gates keep serving"}},
)
async def reload_gates(catalog: CatalogDep, _: Admin) -> dict[str, Any]:
    result = await catalog.areload_files()
    if not result.ok:
        raise Invalid(
            "the gate directory is invalid; the previous gates keep serving",
            errors=[{"loc": ["gates_dir"], "msg": problem} for problem in result.problems],
        )
    return {
        "added": list(result.added),
        "replaced": list(result.replaced),
        "removed": list(result.removed),
    }
