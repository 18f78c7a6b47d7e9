"""What the gates API does: definitions (API-defined gates), the current decision, history.

Services raise ``app.core.problems`` errors; the request's session dependency commits.
Catalog changes that must follow the commit are registered with ``after_commit``.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import Principal
from app.core.clock import Clock
from app.core.db import after_commit, on_rollback
from app.core.problems import Conflict, Invalid, NotFound
from app.gates import repository as repo
from app.gates.catalog import GateCatalog, GateReadOnly, LoadedGate
from app.gates.scheduler import GateScheduler, encode_verdict
from gates.engine import no_sample_verdict
from gates.errors import GateFileError, count_of
from gates.model import GATE_NAME


def loaded_or_404(catalog: GateCatalog, name: str) -> LoadedGate:
    loaded = catalog.get(name)
    if loaded is None:
        raise NotFound(f"no gate named {name!r}")
    return loaded


def gate_decision(loaded: LoadedGate, scheduler: GateScheduler) -> dict[str, Any]:
    verdict = scheduler.latest(loaded.name) or no_sample_verdict(
        loaded.name, loaded.gate.steady_for
    )
    return verdict.as_dict()


def gate_decision_json(catalog: GateCatalog, scheduler: GateScheduler, name: str) -> bytes:
    """The current continuous decision body, from memory only."""
    loaded = loaded_or_404(catalog, name)
    body = scheduler.latest_body(name)
    if body is not None:
        return body
    return encode_verdict(no_sample_verdict(loaded.name, loaded.gate.steady_for))


def gate_summary(loaded: LoadedGate, scheduler: GateScheduler) -> dict[str, Any]:
    gate = loaded.gate
    return {
        "name": gate.name,
        "description": gate.description,
        "source": loaded.source,
        "version": loaded.version,
        "decision": gate_decision(loaded, scheduler),
    }


def gate_detail(loaded: LoadedGate, scheduler: GateScheduler) -> dict[str, Any]:
    # The definition holds only *_env variable names, never their values.
    return {
        **gate_summary(loaded, scheduler),
        "path": loaded.path,
        "definition": loaded.gate.model_dump(mode="json"),
        "text": loaded.text,
    }


def list_gates(catalog: GateCatalog, scheduler: GateScheduler) -> list[dict[str, Any]]:
    return [gate_summary(loaded, scheduler) for loaded in catalog.all()]


def get_gate(catalog: GateCatalog, scheduler: GateScheduler, name: str) -> dict[str, Any]:
    return gate_detail(loaded_or_404(catalog, name), scheduler)


def _check_gate_name(name: str) -> None:
    if not GATE_NAME.match(name):
        raise Invalid(
            f"bad gate name {name!r}",
            errors=[
                {"loc": ["path", "gate"], "msg": "a gate name matches [a-z0-9][a-z0-9-]{0,62}"}
            ],
        )


async def put_gate(
    session: AsyncSession,
    catalog: GateCatalog,
    scheduler: GateScheduler,
    *,
    name: str,
    text: str,
    principal: Principal,
    clock: Clock,
) -> tuple[dict[str, Any], bool]:
    """Create or replace an API-defined gate; returns its body and whether it is new."""
    _check_gate_name(name)
    previous = catalog.get(name)
    try:
        loaded = catalog.put_api_gate(name, text)
    except GateReadOnly as read_only:
        raise Conflict(str(read_only)) from None
    except GateFileError as invalid:
        raise Invalid(
            f"the gate definition is invalid ({count_of(len(invalid.problems), 'problem')})",
            errors=[_located(p.as_dict()) for p in invalid.problems],
        ) from None
    if previous is not loaded:
        on_rollback(session, lambda: _restore(catalog, name, previous))
    created = await repo.save_api_gate(
        session,
        name=name,
        text=text,
        version=loaded.version,
        at=clock.now(),
        by=principal.name,
    )
    return gate_detail(loaded, scheduler), created


def _located(error: dict[str, Any]) -> dict[str, Any]:
    where = f"line {error['line']}, column {error['col']}: " if error.get("line") else ""
    return {**error, "loc": ["body", *error["loc"]], "msg": where + error["msg"]}


def _restore(catalog: GateCatalog, name: str, previous: LoadedGate | None) -> None:
    """Undo a catalog change whose database write failed."""
    try:
        if previous is None:
            catalog.remove_api_gate(name)
        else:
            catalog.put_api_gate(name, previous.text)
    except (KeyError, GateReadOnly, GateFileError):
        pass


async def delete_gate(session: AsyncSession, catalog: GateCatalog, *, name: str) -> None:
    loaded = loaded_or_404(catalog, name)
    if loaded.source == "file":
        raise Conflict(f"gate {name!r} is defined by the file {loaded.path}; edit the file instead")
    running = await repo.running_check_count(session, name)
    if running:
        raise Conflict(
            f"gate {name!r} has {count_of(running, 'running check')}; cancel or decide them first"
        )
    await repo.delete_api_gate(session, name)

    def remove() -> None:
        with contextlib.suppress(KeyError, GateReadOnly):
            catalog.remove_api_gate(name)

    after_commit(session, remove)


async def load_api_gates(session: AsyncSession, catalog: GateCatalog) -> list[str]:
    """Install every stored API-defined gate; returns problems (gates that no longer load)."""
    problems = []
    for row in await repo.api_gates(session):
        try:
            catalog.put_api_gate(row.name, row.text)
        except GateReadOnly:
            problems.append(f"gate {row.name}: a gate file of that name takes precedence")
        except GateFileError as invalid:
            problems.append(f"gate {row.name} (stored): {invalid}")
    return problems


async def gate_samples(
    session: AsyncSession,
    catalog: GateCatalog,
    *,
    name: str,
    since: datetime | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    loaded_or_404(catalog, name)
    before_id = None
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 19:
            raise Invalid(
                "bad cursor",
                errors=[
                    {"loc": ["query", "cursor"], "msg": "use next_cursor from the previous page"}
                ],
            )
        before_id = int(cursor)
    rows = await repo.gate_samples(session, name, since=since, before_id=before_id, limit=limit)
    items = [{"id": row.id, **row.body, "gate_version": row.gate_version} for row in rows]
    return {
        "items": items,
        "next_cursor": str(rows[-1].id) if len(rows) == limit else None,
    }
