"""What the templates API does: shared criterion templates (docs/templates.md).

A change goes to the catalog first (which refuses it if a gate using the template would
no longer validate), then to the database in the request's transaction; a failed write
puts the catalog back. Every change is an event of the template's audit trail.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import Principal
from app.core.clock import Clock
from app.core.db import on_rollback
from app.core.problems import Conflict, Invalid, NotFound, TooLarge
from app.gates import template_repository as repo
from app.gates.catalog import (
    GateCatalog,
    TemplateChange,
    TemplateChangeRefused,
    TemplateEntry,
    TemplateReadOnly,
)
from gates.errors import GateFileError, GateProblem, count_of
from gates.model import GATE_NAME
from gates.yaml_source import MAX_DEFINITION_CHARS, too_large
from probes.timefmt import iso

# A ``gates`` bus message naming a template, not a gate (no gate name has a slash).
TEMPLATE_PREFIX = "template/"


async def announce(session: AsyncSession, catalog: GateCatalog, payload: str) -> None:
    """Tell every replica, when ``session`` commits, that the API gate (or template, with
    ``TEMPLATE_PREFIX``) ``payload`` changed."""
    if catalog.announce is not None:
        await catalog.announce(session, payload)


def _json_safe(value: Any) -> Any:
    """The template's criterion as JSON (YAML may hold dates, which JSON has not)."""
    return json.loads(json.dumps(value, default=str))


def template_summary(catalog: GateCatalog, entry: TemplateEntry) -> dict[str, Any]:
    template = entry.template
    return {
        "name": template.name,
        "description": template.description,
        "source": entry.source,
        "path": entry.path,
        "params": [{"name": p.name, "default": p.default} for p in template.params],
        "used_by": catalog.template_users(template.name),
    }


def template_detail(catalog: GateCatalog, entry: TemplateEntry) -> dict[str, Any]:
    return {
        **template_summary(catalog, entry),
        "criterion": _json_safe(dict(entry.template.criterion)),
        "text": entry.template.text,
    }


def _entry_or_404(catalog: GateCatalog, name: str) -> TemplateEntry:
    entry = catalog.template(name)
    if entry is None:
        raise NotFound(f"no template named {name!r}")
    return entry


def list_templates(catalog: GateCatalog) -> list[dict[str, Any]]:
    return [template_summary(catalog, entry) for entry in catalog.all_templates()]


def get_template(catalog: GateCatalog, name: str) -> dict[str, Any]:
    return template_detail(catalog, _entry_or_404(catalog, name))


def _check_name(name: str) -> None:
    if not GATE_NAME.match(name):
        raise Invalid(
            f"bad template name {name!r}",
            errors=[
                {"loc": ["path", "name"], "msg": "a template name matches [a-z0-9][a-z0-9-]{0,62}"}
            ],
        )


def _located(problem: GateProblem, *prefix: str | int) -> dict[str, Any]:
    error = problem.as_dict()
    where = f"line {error['line']}, column {error['col']}: " if error.get("line") else ""
    return {**error, "loc": [*prefix, *error["loc"]], "msg": where + error["msg"]}


def _refused(refused: TemplateChangeRefused) -> Invalid:
    errors: list[dict[str, Any]] = []
    for gate, problems in sorted(refused.problems.items()):
        for problem in problems:
            if isinstance(problem, GateProblem):
                located = _located(problem, "gates", gate)
                located["msg"] = f"gate {gate!r}: {located['msg']}"
                errors.append(located)
            else:
                errors.append({"loc": ["gates", gate], "msg": f"gate {gate!r}: {problem}"})
    return Invalid(str(refused), errors=errors, gates=sorted(refused.problems))


def _changed_gates(change: TemplateChange) -> dict[str, dict[str, str]]:
    return {
        gate: {"from": before.version, "to": after.version}
        for gate, (before, after) in sorted(change.gates.items())
    }


async def _record_gates(session: AsyncSession, change: TemplateChange, clock: Clock) -> None:
    for gate, (_before, after) in change.gates.items():
        await repo.save_gate_redefinition(
            session, gate=gate, version=after.version, text=after.stored_text, at=clock.now()
        )


async def put_template(
    session: AsyncSession,
    catalog: GateCatalog,
    *,
    name: str,
    text: str,
    principal: Principal,
    clock: Clock,
) -> tuple[dict[str, Any], bool]:
    """Create or replace an API template; every gate using it is redefined with it, or
    nothing changes (422 naming each gate that would not validate)."""
    _check_name(name)
    if too_large(text):
        raise TooLarge(
            f"the template is larger than {MAX_DEFINITION_CHARS} characters",
            errors=[{"loc": ["body"], "msg": "a template defines one criterion"}],
        )
    try:
        change = await catalog.aput_api_template(name, text)
    except TemplateReadOnly as read_only:
        raise Conflict(str(read_only)) from None
    except GateFileError as invalid:
        raise Invalid(
            f"the template is invalid ({count_of(len(invalid.problems), 'problem')})",
            errors=[_located(p, "body") for p in invalid.problems],
        ) from None
    except TemplateChangeRefused as refused:
        raise _refused(refused) from None
    on_rollback(session, lambda: catalog.undo_template_change(change))
    now = clock.now()
    created = await repo.save_template(session, name=name, text=text, at=now, by=principal.name)
    await _record_gates(session, change, clock)
    await repo.add_template_event(
        session,
        name,
        "created" if created else "replaced",
        at=now,
        actor=principal.name,
        data={"text": text, "gates": _changed_gates(change)},
    )
    await announce(session, catalog, TEMPLATE_PREFIX + name)
    return template_detail(catalog, _entry_or_404(catalog, name)), created


async def delete_template(
    session: AsyncSession, catalog: GateCatalog, *, name: str, principal: Principal, clock: Clock
) -> None:
    """Remove an API template; refused (422) while a gate uses it."""
    entry = _entry_or_404(catalog, name)
    if entry.source == "file":
        raise Conflict(
            f"template {name!r} is defined by the file {entry.path}; remove the file instead"
        )
    try:
        change = await catalog.aremove_api_template(name)
    except KeyError:
        raise NotFound(f"no template named {name!r}") from None
    except TemplateReadOnly as read_only:
        raise Conflict(str(read_only)) from None
    except TemplateChangeRefused as refused:
        raise _refused(refused) from None
    on_rollback(session, lambda: catalog.undo_template_change(change))
    await repo.delete_template(session, name)
    await repo.add_template_event(
        session,
        name,
        "deleted",
        at=clock.now(),
        actor=principal.name,
        data={"text": entry.template.text, "gates": _changed_gates(change)},
    )
    await announce(session, catalog, TEMPLATE_PREFIX + name)


async def template_events(
    session: AsyncSession, *, name: str, after: int | None, limit: int
) -> dict[str, Any]:
    """The template's audit trail, oldest first (also after it was deleted)."""
    _check_name(name)
    rows = await repo.template_events(session, name, after=after, limit=limit)
    return {
        "items": [
            {
                "id": row.id,
                "template": row.template,
                "kind": row.kind,
                "at": iso(row.at),
                "actor": row.actor,
                "data": row.data,
            }
            for row in rows
        ]
    }


async def load_api_templates(session: AsyncSession, catalog: GateCatalog) -> list[str]:
    """Install every stored API template (before the API-defined gates that use them);
    returns problems (templates that no longer load, or that a file shadows)."""
    problems = []
    for row in await repo.api_templates(session):
        try:
            catalog.load_api_template(row.name, row.text)
        except TemplateReadOnly:
            problems.append(f"template {row.name}: a template file of that name takes precedence")
        except GateFileError as invalid:
            problems.append(f"template {row.name} (stored): {invalid}")
    return problems
