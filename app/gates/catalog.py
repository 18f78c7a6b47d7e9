"""The gate catalog: every gate the service knows, from files and from the API.

Each gate comes with its built probe instances, shared by continuous sampling and checks.
Gates whose probes have the same name and configuration share one instance (one pooled
client per source: a thousand gates on one Prometheus hold one connection pool, not a
thousand). Sharing cannot let one gate starve another: the pool has no fixed cap that
stuck gates could fill, and each sample's requests to one probe are bounded by the
sampler, as is its time. A probe no gate uses any more is closed after a grace period
long enough for any in-flight measurement to finish, so no client is closed mid-request.

A gate's version is a hash of its resolved definition. A check is judged by the version
it started with: ``pin`` gives it that definition with probes of its own (shared with the
current gate where the configuration is the same), kept until ``unpin``, so a redefinition
never changes a running check's judge.

Reloading the gate directory is all-or-nothing: if any file is invalid, every gate keeps
its previous version and the result lists the problems.

Criterion templates (docs/templates.md) come from ``templates/`` in the gate directory
and from the API. Gate files use the template files; API-defined gates use both (a file
wins over an API template of the same name). A template change re-resolves every gate
that uses it, all or nothing: if one of them no longer validates, the change is refused
and every gate keeps its definition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from app.core.logging import redactor
from gates.errors import GateFileError, GateProblem, count_of
from gates.loader import ResolvedGate, load_gate_definition
from gates.model import Gate
from gates.sampler import probe_budget
from gates.secret_rules import DEFAULT_ENV_POLICY, EnvPolicy
from gates.templates import TEMPLATE_DIR, Template, check_template_text, template_files
from probes.base import Probe, ProbeConfig, declared_secrets
from probes.registry import probe_type

log = structlog.get_logger(__name__)

GATE_FILE_SUFFIXES = (".yaml", ".yml")

GateSource = Literal["file", "api"]
Listener = Callable[[str, "LoadedGate | None"], None]
ProbeBuilder = Callable[[ProbeConfig, str], Probe]


def build_probe(config: ProbeConfig, name: str) -> Probe:
    """A probe instance from its validated config, through the ``gonogo.probes`` registry."""
    return probe_type(config.type)(config, name=name)


def definition_version(gate: Gate) -> str:
    """The gate's version: a hash of its resolved definition (every default filled in), not
    of its text, so a comment or a reordering makes no new version while any change of
    meaning does (``docs/decisions.md``, "Gate versions and pinning")."""
    resolved = json.dumps(gate.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(resolved.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class LoadedGate:
    gate: Gate
    source: GateSource
    path: str | None
    version: str
    text: str
    probes: Mapping[str, Probe]
    # What the version is rebuilt from: ``text`` itself, or, for a gate that uses
    # templates, the definition with them filled in ("" means ``text``).
    definition_text: str = ""
    templates: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return self.gate.name

    @property
    def stored_text(self) -> str:
        """The text stored for this version: it defines the version without any template,
        so a check pinned to it can be judged after its templates change or go."""
        return self.definition_text or self.text


@dataclass(frozen=True)
class ReloadResult:
    added: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


class GateDirInvalid(Exception):
    """The gate directory has invalid files; the server must not start on it."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        listed = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"the gate directory is invalid ({count_of(len(self.problems), 'problem')}):\n{listed}"
        )


class GateReadOnly(Exception):
    """The gate is defined by a file; change the file, not the API (HTTP 409)."""

    def __init__(self, name: str, path: str | None) -> None:
        self.name = name
        self.path = path
        super().__init__(f"gate {name!r} is defined by the file {path}; edit the file instead")


class TemplateReadOnly(Exception):
    """The template is defined by a file; change the file, not the API (HTTP 409)."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        super().__init__(f"template {name!r} is defined by the file {path}; edit the file instead")


class TemplateChangeRefused(Exception):
    """A template change would leave gates that use it invalid; nothing changed.
    ``problems`` maps each such gate to its problems (HTTP 422)."""

    def __init__(self, name: str, problems: Mapping[str, Sequence[GateProblem | str]]) -> None:
        self.name = name
        self.problems = {gate: tuple(found) for gate, found in problems.items()}
        gates = ", ".join(sorted(self.problems))
        super().__init__(
            f"the change of template {name!r} is refused: gates that use it would not"
            f" validate ({gates})"
        )


@dataclass(frozen=True)
class TemplateEntry:
    template: Template
    source: GateSource
    path: str | None


@dataclass(frozen=True)
class TemplateChange:
    """What one API change of a template did, enough to undo it (``undo_template_change``)."""

    name: str
    previous: Template | None
    current: Template | None
    # gate -> (its definition before, after); only gates whose version changed.
    gates: Mapping[str, tuple[LoadedGate, LoadedGate]]


@dataclass(frozen=True)
class _Parsed:
    gate: Gate
    path: str
    text: str
    version: str
    resolved: str = ""
    templates: frozenset[str] = frozenset()


@dataclass
class _DirScan:
    gates: dict[str, _Parsed] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    templates: dict[str, Template] = field(default_factory=dict)
    # API-defined gates that use templates, read again with the new template files.
    api_gates: dict[str, tuple[LoadedGate, ResolvedGate]] = field(default_factory=dict)


class GateCatalog:
    def __init__(
        self,
        *,
        gates_dir: Path | None,
        probe_builder: ProbeBuilder = build_probe,
        close_grace: float | None = None,
        env_policy: EnvPolicy = DEFAULT_ENV_POLICY,
    ) -> None:
        """``close_grace``: seconds before a replaced gate's probes are closed (default:
        the longest time one of them may take to answer, all tries included);
        ``env_policy``: the variables gates may name in ``*_env`` keys."""
        self._gates_dir = gates_dir
        self._env_policy = env_policy
        self._build_probe = probe_builder
        self._close_grace = close_grace
        self._gates: dict[str, LoadedGate] = {}
        self._pool: dict[str, _Pooled] = {}
        self._pinned: dict[tuple[str, str], _PinnedEntry] = {}
        self._pool_keys: dict[int, str] = {}  # id(probe) -> pool key
        self._listeners: list[Listener] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._unclosed: list[Probe] = []
        self._file_templates: dict[str, Template] = {}
        self._api_templates: dict[str, Template] = {}
        # Counts template changes, so a gate read while one happened is read again.
        self._template_generation = 0
        # Tells every replica, in the writing transaction, that an API gate or template
        # changed (``app.gates.service.GateChanges``); None in a catalog of its own.
        self.announce: Callable[[Any, str], Awaitable[None]] | None = None

    # -- reading -----------------------------------------------------------------------

    def get(self, name: str) -> LoadedGate | None:
        return self._gates.get(name)

    def all(self) -> list[LoadedGate]:
        return [self._gates[name] for name in sorted(self._gates)]

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(name, new)`` after a gate is added or replaced, ``(name, None)``
        after it is removed."""
        self._listeners.append(listener)

    # -- gate files --------------------------------------------------------------------

    def load_files(self) -> None:
        """Load the gate directory at start-up; raises ``GateDirInvalid``."""
        result = self._apply_scan(self._scan())
        if not result.ok:
            raise GateDirInvalid(result.problems)

    def reload_files(self) -> ReloadResult:
        """Re-read the gate directory; on any problem nothing changes."""
        return self._apply_scan(self._scan(self._api_template_users()))

    async def areload_files(self) -> ReloadResult:
        """``reload_files`` with the file reading and parsing off the event loop."""
        scan = await asyncio.to_thread(self._scan, self._api_template_users())
        return self._apply_scan(scan)

    def _api_template_users(self) -> list[LoadedGate]:
        return [g for g in self._gates.values() if g.source == "api" and g.templates]

    def _scan_templates(self, scan: _DirScan) -> None:
        assert self._gates_dir is not None
        folder = self._gates_dir / TEMPLATE_DIR
        if not folder.is_dir():
            return
        for path in template_files(folder):
            if path.stem in scan.templates:
                scan.problems.append(f"{path}: template {path.stem!r} is defined twice")
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as unreadable:
                scan.problems.append(f"{path}: cannot read: {unreadable}")
                continue
            template, found = check_template_text(text, name=path.stem, source=str(path))
            scan.problems.extend(str(p) for p in found)
            if template is not None:
                scan.templates[template.name] = template

    def _scan(self, api_users: Sequence[LoadedGate] = ()) -> _DirScan:
        scan = _DirScan()
        if self._gates_dir is None:
            return scan
        if not self._gates_dir.is_dir():
            scan.problems.append(f"{self._gates_dir}: not a directory")
            return scan
        try:
            self._scan_templates(scan)
        except OSError as unreadable:
            scan.problems.append(f"{self._gates_dir / TEMPLATE_DIR}: cannot list: {unreadable}")
        for path in sorted(self._gates_dir.iterdir()):
            if path.suffix not in GATE_FILE_SUFFIXES or path.name.startswith("."):
                continue
            if not path.is_file():
                continue
            try:
                text = path.read_text(encoding="utf-8")
                checked = self._parse(text, path.stem, str(path), scan.templates)
            except GateFileError as invalid:
                scan.problems.extend(str(p) for p in invalid.problems)
                continue
            except (OSError, UnicodeDecodeError) as unreadable:
                scan.problems.append(f"{path}: cannot read: {unreadable}")
                continue
            gate = _valid(checked)
            scan.gates[gate.name] = _Parsed(
                gate, str(path), text, definition_version(gate), checked.text, checked.templates
            )
        effective = {**self._api_templates, **scan.templates}
        for loaded in api_users:
            try:
                checked = self._parse(loaded.text, loaded.name, f"gate {loaded.name}", effective)
            except GateFileError as invalid:
                used = ", ".join(sorted(loaded.templates))
                scan.problems.extend(
                    f"gate {loaded.name} (API-defined, uses {used}): {p}" for p in invalid.problems
                )
                continue
            scan.api_gates[loaded.name] = (loaded, checked)
        return scan

    def _apply_scan(self, scan: _DirScan) -> ReloadResult:
        if scan.problems:
            return ReloadResult(problems=tuple(scan.problems))
        changes: dict[str, LoadedGate] = {}
        problems: list[str] = []
        for name, parsed in scan.gates.items():
            current = self._gates.get(name)
            if (
                current is not None
                and current.source == "file"
                and current.version == parsed.version
            ):
                self._retext(name, parsed.text, parsed.path, parsed.resolved, parsed.templates)
                continue
            try:
                changes[name] = self._loaded(
                    parsed.gate, "file", parsed.path, parsed.text, parsed.resolved, parsed.templates
                )
            except _ProbeBuildFailed as failed:
                problems.append(f"{parsed.path}: {failed}")
        for name, (before, checked) in scan.api_gates.items():
            gate = _valid(checked)
            if self._gates.get(name) is not before or name in changes:
                continue  # redefined meanwhile, or shadowed by a gate file now
            if definition_version(gate) == before.version:
                continue
            try:
                changes[name] = self._loaded(
                    gate, "api", None, before.text, checked.text, checked.templates
                )
            except _ProbeBuildFailed as failed:
                problems.append(f"gate {name}: {failed}")
        if problems:
            for loaded in changes.values():
                self._retire(loaded.probes, grace=0.0)
            return ReloadResult(problems=tuple(problems))

        removed = [
            name
            for name, current in self._gates.items()
            if current.source == "file" and name not in scan.gates
        ]
        added = [name for name in changes if name not in self._gates]
        replaced = [name for name in changes if name in self._gates]
        if scan.templates != self._file_templates:
            self._file_templates = scan.templates
            self._template_generation += 1
        for name, loaded in changes.items():
            self._install(name, loaded)
        for name in removed:
            self._uninstall(name)
        if added or replaced or removed:
            log.info(
                "gate files loaded",
                added=len(added),
                replaced=len(replaced),
                removed=len(removed),
                gates=len(self._gates),
            )
        return ReloadResult(tuple(added), tuple(replaced), tuple(removed))

    # -- API-defined gates -------------------------------------------------------------

    def put_api_gate(self, name: str, text: str) -> LoadedGate:
        """Create or replace an API-defined gate from YAML or JSON text.

        Raises ``GateFileError`` (invalid definition) or ``GateReadOnly`` (file-defined).
        """
        self._refuse_file_gate(name)
        generation = self._template_generation
        checked = self._parse(text, name, f"gate {name}", self.api_templates())
        return self._put_api_parsed(name, text, checked, generation)

    async def aput_api_gate(self, name: str, text: str) -> LoadedGate:
        """``put_api_gate`` with the parsing off the event loop (the loader's limits bound
        its work, since a thread cannot be cancelled)."""
        self._refuse_file_gate(name)
        generation = self._template_generation
        checked = await asyncio.to_thread(
            self._parse, text, name, f"gate {name}", self.api_templates()
        )
        return self._put_api_parsed(name, text, checked, generation)

    def _parse(
        self, text: str, name: str, source: str, templates: Mapping[str, Template] | None = None
    ) -> ResolvedGate:
        return load_gate_definition(
            text, name=name, source=source, env_policy=self._env_policy, templates=templates
        )

    def _refuse_file_gate(self, name: str) -> None:
        current = self._gates.get(name)
        if current is not None and current.source == "file":
            raise GateReadOnly(name, current.path)

    def _put_api_parsed(
        self, name: str, text: str, checked: ResolvedGate, generation: int
    ) -> LoadedGate:
        self._refuse_file_gate(name)  # again: a reload may have run while it was parsed
        if checked.templates and generation != self._template_generation:
            # A template changed while this was read: read it again with the templates now.
            checked = self._parse(text, name, f"gate {name}", self.api_templates())
        gate = _valid(checked)
        current = self._gates.get(name)
        if current is not None and current.version == definition_version(gate):
            return self._retext(name, text, None, checked.text, checked.templates)
        try:
            loaded = self._loaded(gate, "api", None, text, checked.text, checked.templates)
        except _ProbeBuildFailed as failed:
            raise GateFileError([f"gate {name}: {failed}"]) from None
        self._install(name, loaded)
        return loaded

    def remove_api_gate(self, name: str) -> None:
        """Raises ``KeyError`` (unknown gate) or ``GateReadOnly`` (file-defined)."""
        current = self._gates.get(name)
        if current is None:
            raise KeyError(name)
        if current.source == "file":
            raise GateReadOnly(name, current.path)
        self._uninstall(name)

    def _retext(
        self,
        name: str,
        text: str,
        path: str | None,
        definition_text: str = "",
        templates: frozenset[str] = frozenset(),
    ) -> LoadedGate:
        """Same version, new text (a comment, the order of keys, a criterion written out
        instead of taken from a template): keep the gate running and show the new text,
        without a redefinition."""
        current = self._gates[name]
        definition_text = definition_text if templates else ""
        wanted = (text, path, templates, definition_text)
        if (current.text, current.path, current.templates, current.definition_text) != wanted:
            current = dataclasses.replace(
                current,
                text=text,
                path=path,
                definition_text=definition_text,
                templates=templates,
            )
            self._gates[name] = current
        return current

    # -- templates ---------------------------------------------------------------------

    def api_templates(self) -> dict[str, Template]:
        """The templates API-defined gates may use: API templates, then template files."""
        return {**self._api_templates, **self._file_templates}

    def template(self, name: str) -> TemplateEntry | None:
        if name in self._file_templates:
            template = self._file_templates[name]
            return TemplateEntry(template, "file", template.source)
        if name in self._api_templates:
            return TemplateEntry(self._api_templates[name], "api", None)
        return None

    def all_templates(self) -> list[TemplateEntry]:
        names = sorted(set(self._file_templates) | set(self._api_templates))
        return [entry for name in names if (entry := self.template(name)) is not None]

    def template_users(self, name: str) -> list[str]:
        """The gates that use the template ``name``, by name."""
        return sorted(g.name for g in self._gates.values() if name in g.templates)

    def load_api_template(self, name: str, text: str) -> Template:
        """Install a stored API template at start-up, before the API-defined gates that use
        it; raises ``GateFileError`` or ``TemplateReadOnly``."""
        self._refuse_file_template(name)
        template = _valid_template(name, text)
        self._api_templates[name] = template
        self._template_generation += 1
        return template

    def _refuse_file_template(self, name: str) -> None:
        if name in self._file_templates:
            raise TemplateReadOnly(name, self._file_templates[name].source)

    async def aput_api_template(self, name: str, text: str) -> TemplateChange:
        """Create or replace an API template and re-resolve every gate that uses it.

        Raises ``GateFileError`` (invalid template), ``TemplateReadOnly`` (a file defines
        it) or ``TemplateChangeRefused`` (a gate using it would not validate).
        """
        self._refuse_file_template(name)
        template = await asyncio.to_thread(_valid_template, name, text)
        return await self._change_api_template(name, template)

    async def aremove_api_template(self, name: str) -> TemplateChange:
        """Remove an API template; raises ``KeyError`` (unknown), ``TemplateReadOnly`` or
        ``TemplateChangeRefused`` (a gate still uses it)."""
        self._refuse_file_template(name)
        if name not in self._api_templates:
            raise KeyError(name)
        return await self._change_api_template(name, None)

    async def _change_api_template(self, name: str, template: Template | None) -> TemplateChange:
        for _attempt in range(3):
            previous = self._api_templates.get(name)
            generation = self._template_generation
            templates = dict(self._api_templates)
            if template is None:
                templates.pop(name, None)
            else:
                templates[name] = template
            effective = {**templates, **self._file_templates}
            users = [g for g in self._api_template_users() if name in g.templates]
            results = await asyncio.to_thread(self._reparse_all, users, effective)
            now_users = [g for g in self._api_template_users() if name in g.templates]
            if generation != self._template_generation or [id(g) for g in now_users] != [
                id(g) for g in users
            ]:
                continue  # something changed while they were read: read them again
            refused = {
                g.name: result
                for g, result in zip(users, results, strict=True)
                if isinstance(result, GateFileError)
            }
            if refused:
                raise TemplateChangeRefused(
                    name, {gate: error.problems for gate, error in refused.items()}
                )
            changes = self._build_changes(name, users, results)
            self._api_templates = templates
            self._template_generation += 1
            for _before, after in changes.values():
                self._install(after.name, after)
            for user, result in zip(users, results, strict=True):
                assert isinstance(result, ResolvedGate)
                if user.name not in changes and self._gates.get(user.name) is user:
                    self._retext(user.name, user.text, None, result.text, result.templates)
            return TemplateChange(name, previous, template, changes)
        raise TemplateChangeRefused(
            name, {"*": ["the gates changed while the template change was checked; retry"]}
        )

    def _reparse_all(
        self, users: Sequence[LoadedGate], templates: Mapping[str, Template]
    ) -> list[ResolvedGate | GateFileError]:
        results: list[ResolvedGate | GateFileError] = []
        for user in users:
            try:
                results.append(self._parse(user.text, user.name, f"gate {user.name}", templates))
            except GateFileError as invalid:
                results.append(invalid)
        return results

    def _build_changes(
        self,
        name: str,
        users: Sequence[LoadedGate],
        results: Sequence[ResolvedGate | GateFileError],
    ) -> dict[str, tuple[LoadedGate, LoadedGate]]:
        changes: dict[str, tuple[LoadedGate, LoadedGate]] = {}
        for user, result in zip(users, results, strict=True):
            assert isinstance(result, ResolvedGate)
            gate = _valid(result)
            if definition_version(gate) == user.version:
                continue
            try:
                after = self._loaded(gate, "api", None, user.text, result.text, result.templates)
            except _ProbeBuildFailed as failed:
                for _before, built in changes.values():
                    self._retire(built.probes, grace=0.0)
                raise TemplateChangeRefused(name, {user.name: [str(failed)]}) from None
            changes[user.name] = (user, after)
        return changes

    def undo_template_change(self, change: TemplateChange) -> None:
        """Put back what ``change`` replaced (its database write failed)."""
        if self._api_templates.get(change.name) is not change.current:
            return
        if change.previous is None:
            self._api_templates.pop(change.name, None)
        else:
            self._api_templates[change.name] = change.previous
        self._template_generation += 1
        for gate, (before, after) in change.gates.items():
            if self._gates.get(gate) is not after:
                continue  # redefined since: the newer definition stays
            try:
                self._install(gate, self._loaded_again(before))
            except PinnedVersionUnavailable as failed:
                log.error("a gate could not be put back after a failed write", error=str(failed))

    # -- definitions by version, for checks pinned to one ------------------------------

    async def pin(self, name: str, version: str, text: str | None) -> LoadedGate:
        """The gate ``name`` as defined at ``version``, with its own hold on its probes,
        for a check judged by that version; ``text`` is the stored definition, needed
        unless ``version`` is current or already pinned. Release it with ``unpin``.

        Raises ``PinnedVersionUnavailable`` when that definition cannot be loaded any more.
        """
        key = (name, version)
        entry = self._pinned.get(key)
        if entry is None:
            loaded = await self._load_version(name, version, text)
            entry = self._pinned.get(key)  # another check may have pinned it meanwhile
            if entry is None:
                entry = self._pinned[key] = _PinnedEntry(loaded)
            else:
                self._retire(loaded.probes, grace=0.0)
        entry.users += 1
        return entry.loaded

    def unpin(self, name: str, version: str) -> None:
        """A check is done with ``version``; probes no gate or check uses are closed."""
        key = (name, version)
        entry = self._pinned.get(key)
        if entry is None:
            return
        entry.users -= 1
        if entry.users <= 0:
            del self._pinned[key]
            self._retire(entry.loaded.probes)

    def pinned_versions(self) -> dict[tuple[str, str], int]:
        """(gate, version) -> number of checks holding it."""
        return {key: entry.users for key, entry in self._pinned.items()}

    async def _load_version(self, name: str, version: str, text: str | None) -> LoadedGate:
        current = self._gates.get(name)
        if current is not None and current.version == version:
            return self._loaded_again(current)
        if text is None:
            raise PinnedVersionUnavailable(name, version, "its definition is not stored")
        source: GateSource = "api"
        path: str | None = None
        if current is not None:
            source, path = current.source, current.path
        try:
            checked = await asyncio.to_thread(
                self._parse,
                text,
                name,
                f"gate {name} version {version}",
                self._file_templates if source == "file" else self.api_templates(),
            )
        except GateFileError as invalid:
            raise PinnedVersionUnavailable(
                name, version, f"its definition no longer loads: {invalid}"
            ) from None
        gate = _valid(checked)
        if definition_version(gate) != version:
            # This gonogo reads the stored text differently: it is another definition.
            raise PinnedVersionUnavailable(name, version, "its definition now reads differently")
        try:
            return self._loaded(gate, source, path, text, checked.text, checked.templates)
        except _ProbeBuildFailed as failed:
            raise PinnedVersionUnavailable(name, version, str(failed)) from None

    def _loaded_again(self, current: LoadedGate) -> LoadedGate:
        try:
            return self._loaded(
                current.gate,
                current.source,
                current.path,
                current.text,
                current.definition_text,
                current.templates,
            )
        except _ProbeBuildFailed as failed:
            raise PinnedVersionUnavailable(current.name, current.version, str(failed)) from None

    # -- probes and lifecycle ----------------------------------------------------------

    def _loaded(
        self,
        gate: Gate,
        source: GateSource,
        path: str | None,
        text: str,
        definition_text: str = "",
        templates: frozenset[str] = frozenset(),
    ) -> LoadedGate:
        acquired: dict[str, Probe] = {}
        for probe_name, config in gate.probes.items():
            try:
                acquired[probe_name] = self._acquire(config, probe_name)
            except Exception as fault:
                self._retire(acquired, grace=0.0)
                raise _ProbeBuildFailed(
                    f"probe {probe_name!r} ({config.type}) cannot be built: {fault}"
                ) from None
        return LoadedGate(
            gate,
            source,
            path,
            definition_version(gate),
            text,
            acquired,
            definition_text if templates else "",
            templates,
        )

    def _acquire(self, config: ProbeConfig, name: str) -> Probe:
        # The config holds only *_env names, never secret values, so it is a safe key.
        key = f"{name}\0{config.model_dump_json()}"
        pooled = self._pool.get(key)
        if pooled is None:
            pooled = _Pooled(self._build_probe(config, name))
            # What a probe sends is secret in every log line too, whatever its form
            # (the whole Basic header, say), not only the *_env values themselves.
            redactor.add(declared_secrets(pooled.probe))
            self._pool[key] = pooled
            self._pool_keys[id(pooled.probe)] = key
        pooled.users += 1
        return pooled.probe

    def _install(self, name: str, loaded: LoadedGate) -> None:
        previous = self._gates.get(name)
        self._gates[name] = loaded
        self._notify(name, loaded)
        if previous is not None:
            self._retire(previous.probes)

    def _uninstall(self, name: str) -> None:
        previous = self._gates.pop(name)
        self._notify(name, None)
        self._retire(previous.probes)

    def _notify(self, name: str, loaded: LoadedGate | None) -> None:
        for listener in self._listeners:
            try:
                listener(name, loaded)
            except Exception:  # one listener's fault must not stop the others
                log.exception("gate catalog listener failed", gate=name)

    def _retire(self, probes: Mapping[str, Probe], *, grace: float | None = None) -> None:
        """Release a gate's probes; those no gate uses any more are closed after ``grace``."""
        unused = []
        for probe in probes.values():
            key = self._pool_keys[id(probe)]
            pooled = self._pool[key]
            pooled.users -= 1
            if pooled.users == 0:
                del self._pool[key]
                del self._pool_keys[id(probe)]
                unused.append(probe)
        if not unused:
            return
        if grace is None:
            grace = self._close_grace
        if grace is None:
            grace = max(probe_budget(p) for p in unused)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._unclosed.extend(unused)  # closed by aclose()
            return
        task = loop.create_task(_close_later(unused, grace))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close every probe, including retired ones still in their grace period."""
        for task in list(self._closing):
            task.cancel()
        probes = [pooled.probe for pooled in self._pool.values()]
        probes.extend(self._unclosed)
        self._pool.clear()
        self._pinned.clear()
        self._pool_keys.clear()
        self._unclosed = []
        await asyncio.gather(*self._closing, return_exceptions=True)
        await _close_all(probes)


class PinnedVersionUnavailable(Exception):
    """A check's pinned gate version cannot be loaded (its text no longer validates, a
    probe type is gone, or it was never stored); the check must end ``no_go``."""

    def __init__(self, name: str, version: str, cause: str) -> None:
        self.name = name
        self.version = version
        self.cause = cause
        super().__init__(f"gate {name!r} version {version} cannot be loaded: {cause}")


class _ProbeBuildFailed(Exception):
    pass


def _valid(checked: ResolvedGate) -> Gate:
    assert checked.gate is not None  # load_gate_definition raises otherwise
    return checked.gate


def _valid_template(name: str, text: str) -> Template:
    template, problems = check_template_text(text, name=name, source=f"template {name}")
    if template is None:
        raise GateFileError(problems or [f"template {name}: invalid"])
    return template


@dataclass
class _PinnedEntry:
    loaded: LoadedGate
    users: int = 0


@dataclass
class _Pooled:
    probe: Probe
    users: int = 0


async def _close_later(probes: list[Probe], grace: float) -> None:
    try:
        await asyncio.sleep(grace)
    finally:
        # Cancelled by aclose(): close now rather than leak connections.
        await asyncio.shield(_close_all(probes))


async def _close_all(probes: Sequence[Probe]) -> None:
    results = await asyncio.gather(*(p.aclose() for p in probes), return_exceptions=True)
    for probe, result in zip(probes, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("closing a probe failed", probe=type(probe).__name__, error=str(result))


def install_sighup_reload(
    catalog: GateCatalog, loop: asyncio.AbstractEventLoop
) -> Callable[[], None]:
    """Reload the gate directory on SIGHUP; returns a function that uninstalls the handler."""
    pending: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            result = await catalog.areload_files()
        except Exception:
            log.exception("gate reload failed; previous gates keep serving")
            return
        if result.ok:
            log.info(
                "gate reload done",
                added=list(result.added),
                replaced=list(result.replaced),
                removed=list(result.removed),
            )
        else:
            log.error(
                "gate reload refused; previous gates keep serving", problems=list(result.problems)
            )

    def on_signal() -> None:
        task = loop.create_task(reload())
        pending.add(task)
        task.add_done_callback(pending.discard)

    def uninstall() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    loop.add_signal_handler(signal.SIGHUP, on_signal)
    return uninstall
