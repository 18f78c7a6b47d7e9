"""What the gates API does: definitions (API-defined gates), the current decision, history.

Services raise ``app.core.problems`` errors; the request's session dependency commits.
Catalog changes that must follow the commit are registered with ``after_commit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from app.coordination.bus import Bus
from app.core.auth import Principal
from app.core.clock import Clock
from app.core.db import Database, after_commit, on_rollback
from app.core.problems import Conflict, Invalid, NotFound, TooLarge
from app.gates import repository as repo
from app.gates import template_repository as template_repo
from app.gates.catalog import GateCatalog, GateReadOnly, LoadedGate
from app.gates.freshness import decision_body, encode_body
from app.gates.scheduler import GateScheduler
from app.gates.template_service import TEMPLATE_PREFIX, announce, load_api_templates
from gates.engine import no_sample_verdict
from gates.errors import GateFileError, count_of
from gates.model import GATE_NAME, Gate
from gates.yaml_source import MAX_DEFINITION_CHARS, too_large
from probes.client import is_sensitive_header

log = structlog.get_logger(__name__)

REDACTED = "[redacted]"
GATES_CHANNEL = "gates"


def loaded_or_404(catalog: GateCatalog, name: str) -> LoadedGate:
    loaded = catalog.get(name)
    if loaded is None:
        raise NotFound(f"no gate named {name!r}")
    return loaded


def gate_decision(loaded: LoadedGate, scheduler: GateScheduler) -> dict[str, Any]:
    """The current continuous decision body (stale ``no_go`` once expired), from memory."""
    view = scheduler.current(loaded.name)
    if view is not None:
        return view.as_dict()
    return _no_sample_body(loaded)


def gate_decision_json(catalog: GateCatalog, scheduler: GateScheduler, name: str) -> bytes:
    """``gate_decision`` as UTF-8 JSON bytes."""
    loaded = loaded_or_404(catalog, name)
    view = scheduler.current(name)
    if view is not None:
        return view.body
    return encode_body(_no_sample_body(loaded))


def _no_sample_body(loaded: LoadedGate) -> dict[str, Any]:
    verdict = no_sample_verdict(loaded.name, loaded.gate.steady_for)
    return decision_body(verdict, None, gate_version=loaded.version)


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
    """The gate's summary, definition and text, with every credential-bearing probe
    setting redacted (``_redactions``): the definition names ``*_env`` variables, never
    their values, but a header or URL parameter could still carry one."""
    definition = loaded.gate.model_dump(mode="json")
    redactions = list(_redactions(loaded.gate))
    for path, value in redactions:
        _set(definition, path, value)
    return {
        **gate_summary(loaded, scheduler),
        "path": loaded.path,
        "templates": sorted(loaded.templates),
        "definition": definition,
        "text": _redacted_text(loaded.text, tuple(redactions)) if redactions else loaded.text,
    }


Path = tuple[str, ...]


def _redactions(gate: Gate) -> Iterator[tuple[Path, str]]:
    """(where, what to show instead) for each probe setting that may hold a credential:
    a header whose name says so (``Authorization``, ``Cookie``, ``X-Api-Key``, anything
    with token, secret, key, auth, ...) and a URL query parameter named the same way."""
    for name, config in gate.probes.items():
        headers = getattr(config, "headers", None)
        if isinstance(headers, dict):
            for header in headers:
                if is_sensitive_header(str(header)):
                    yield ("probes", name, "headers", str(header)), REDACTED
        url = getattr(config, "url", None)
        if isinstance(url, str):
            cleaned = _redacted_url(url)
            if cleaned != url:
                yield ("probes", name, "url"), cleaned


def _redacted_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(is_sensitive_header(key) for key, _ in pairs):
        return url
    query = urlencode(
        [(key, REDACTED if is_sensitive_header(key) else value) for key, value in pairs]
    )
    return urlunsplit(parts._replace(query=query))


def _set(document: dict[str, Any], path: Path, value: str) -> None:
    *parents, last = path
    node: Any = document
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict) and last in node:
        node[last] = value


@functools.lru_cache(maxsize=256)
def _redacted_text(text: str, redactions: tuple[tuple[Path, str], ...]) -> str:
    """``text`` with the value at each redacted path replaced, where the YAML (or JSON)
    has it: quoting, block scalars and anchors included. If the text cannot be read
    again, none of it is shown."""
    source = text.replace("\t", " ") if text.lstrip().startswith("{") else text
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return f"# {REDACTED}: the definition holds credentials and could not be redacted\n"
    spans: list[tuple[int, int, str]] = []
    for path, value in redactions:
        node = _node_at(root, path)
        if node is None:
            return f"# {REDACTED}: the definition holds credentials and could not be redacted\n"
        start, end = node.start_mark.index, node.end_mark.index
        while end > start and text[end - 1] in "\r\n":
            end -= 1  # a block scalar ends past its line break; the break stays
        # An anchor or a tag before the value stays, so aliases to it still resolve.
        kept = _PROPERTIES.match(text, start)
        spans.append((kept.end() if kept else start, end, json.dumps(value)))
    for start, end, replacement in sorted(set(spans), reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


_PROPERTIES = re.compile(r"(?:[&!]\S*[ \t]+)+")


def _node_at(node: yaml.Node | None, path: Path) -> yaml.Node | None:
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            return None
        found = None
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                # A merged mapping (<<: *defaults) may hold the key.
                merged = value_node.value if isinstance(value_node.value, list) else []
                for source in [value_node, *merged]:
                    inner = _node_at(source, (key,))
                    if inner is not None and found is None:
                        found = inner
            elif isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                found = value_node
        node = found
    return node


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
    """Create or replace an API-defined gate; returns its body and whether it is new.

    The definition is parsed off the event loop, so a large one delays no other request.
    """
    _check_gate_name(name)
    if too_large(text):
        raise TooLarge(
            f"the gate definition is larger than {MAX_DEFINITION_CHARS} characters",
            errors=[{"loc": ["body"], "msg": "split it into several gates"}],
        )
    previous = catalog.get(name)
    try:
        loaded = await catalog.aput_api_gate(name, text)
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
        definition=loaded.stored_text,
        version=loaded.version,
        at=clock.now(),
        by=principal.name,
    )
    await announce(session, catalog, name)
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
    await announce(session, catalog, name)

    def remove() -> None:
        with contextlib.suppress(KeyError, GateReadOnly):
            catalog.remove_api_gate(name)

    after_commit(session, remove)


async def load_api_gates(session: AsyncSession, catalog: GateCatalog) -> list[str]:
    """Install every stored API-defined gate, after the stored templates they may use;
    returns problems (templates and gates that no longer load)."""
    problems = await load_api_templates(session, catalog)
    for row in await repo.api_gates(session):
        try:
            catalog.put_api_gate(row.name, row.text)
        except GateReadOnly:
            problems.append(f"gate {row.name}: a gate file of that name takes precedence")
        except GateFileError as invalid:
            problems.append(f"gate {row.name} (stored): {invalid}")
    return problems


async def sync_api_template(session: AsyncSession, catalog: GateCatalog, name: str) -> None:
    """Make the catalog's API template ``name`` what the database holds (the gates using
    it are redefined with it); nothing changes when they already agree."""
    rows = {row.name: row.text for row in await template_repo.api_templates(session)}
    entry = catalog.template(name)
    text = rows.get(name)
    if entry is not None and entry.source == "file":
        return  # a template file takes precedence on every replica
    if text is None:
        if entry is not None:
            await catalog.aremove_api_template(name)
    elif entry is None or entry.template.text != text:
        await catalog.aput_api_template(name, text)


async def sync_api_gate(session: AsyncSession, catalog: GateCatalog, name: str) -> None:
    """Make the catalog's API gate ``name`` what the database holds; nothing changes when
    they already agree (the replica that made the change hears its own message)."""
    row = await repo.api_gate(session, name)
    current = catalog.get(name)
    if current is not None and current.source == "file":
        return  # a gate file takes precedence on every replica
    if row is None:
        if current is not None:
            with contextlib.suppress(KeyError, GateReadOnly):
                catalog.remove_api_gate(name)
    elif current is None or current.text != row.text:
        await catalog.aput_api_gate(name, row.text)


async def sync_all(session: AsyncSession, catalog: GateCatalog) -> None:
    """Make every API template and gate in the catalog what the database holds (after a
    reconnection: changes made meanwhile were not heard)."""
    stored_templates = {row.name for row in await template_repo.api_templates(session)}
    for name in sorted(stored_templates):
        await _synced(sync_api_template(session, catalog, name), f"template {name}")
    stored_gates = {row.name for row in await repo.api_gates(session)}
    loaded = {g.name for g in catalog.all() if g.source == "api"}
    for name in sorted(stored_gates | loaded):
        await _synced(sync_api_gate(session, catalog, name), f"gate {name}")
    for entry in catalog.all_templates():
        if entry.source == "api" and entry.template.name not in stored_templates:
            await _synced(
                sync_api_template(session, catalog, entry.template.name),
                f"template {entry.template.name}",
            )


async def _synced(work: Any, what: str) -> None:
    try:
        await work
    except Exception as error:
        log.error("a stored API definition could not be loaded", what=what, error=str(error))


class GateChanges:
    """API gate and template changes, from the replica that made them to every replica.

    A change publishes its gate's name (or ``template/NAME``) and the writer's replica id
    on the bus's ``gates`` channel in its own transaction (``announce``); every other
    replica then loads that definition from the database into its catalog, in the order
    heard, one at a time (``sync_api_gate``, ``sync_api_template``). The catalog's listeners,
    the scheduler's among them, follow. On every (re)connection everything is reconciled
    (``sync_all``)."""

    def __init__(self, bus: Bus, db: Database, catalog: GateCatalog, *, origin: str) -> None:
        self._bus = bus
        self._db = db
        self._catalog = catalog
        self._origin = origin
        self._pending: list[str] = []
        self._worker: asyncio.Task[None] | None = None
        bus.subscribe(GATES_CHANNEL, self._heard)
        bus.on_connected(self.reconcile)
        catalog.announce = self.announce

    async def announce(self, session: AsyncSession, change: str) -> None:
        # The writer's catalog has the change already (and undoes it on rollback): the
        # message says who sent it, so the writer does not load it a second time.
        await self._bus.publish(session, GATES_CHANNEL, f"{change} {self._origin}")

    def _heard(self, payload: str) -> None:
        change, _, origin = payload.partition(" ")
        if origin == self._origin or not change:
            return
        self._pending.append(change)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="gonogo-gate-changes")

    async def _work(self) -> None:
        while self._pending:
            payload = self._pending.pop(0)
            try:
                await self.apply(payload)
            except Exception as error:
                log.error(
                    "an API definition change could not be loaded",
                    change=payload,
                    error=f"{type(error).__name__}: {error}",
                )

    async def apply(self, payload: str) -> None:
        async with self._db.session() as session:
            if payload.startswith(TEMPLATE_PREFIX):
                await sync_api_template(session, self._catalog, payload[len(TEMPLATE_PREFIX) :])
            else:
                await sync_api_gate(session, self._catalog, payload)

    async def reconcile(self) -> None:
        async with self._db.session() as session:
            await sync_all(session, self._catalog)

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)


def follow_gate_changes(
    bus: Bus, db: Database, catalog: GateCatalog, *, origin: str
) -> GateChanges:
    """Subscribe ``catalog`` to API gate and template changes made on other replicas;
    ``origin`` is this replica's id."""
    return GateChanges(bus, db, catalog, origin=origin)


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
