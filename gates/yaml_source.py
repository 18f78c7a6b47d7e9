"""Gate definitions as YAML nodes: plain data with the position of every value and key.

The text is *composed* into YAML nodes rather than loaded, so every value keeps its
position and a duplicated key is an error: a plain YAML load silently keeps the last of
two ``go:`` keys, which for a gate could turn a strict condition into a lax one without
anyone noticing. Limits on size, nesting and the number of values keep a hostile
definition from exhausting the service.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from gates.errors import Loc

if TYPE_CHECKING:
    from gates.problems import Problems

# The limits bound the work of reading one definition, since parsing runs in a thread
# that cannot be cancelled (docs/operations.md, "Limits"). The largest definition allowed
# composes in well under a second.
MAX_DEFINITION_CHARS = 256 * 1024
MAX_DEPTH = 64
MAX_VALUES = 20_000
MAX_ALIASES = 100
MAX_MERGE_KEYS = 64
MAX_MERGED_VALUES = 2_000

Mark = tuple[int, int]


@dataclass
class Document:
    """Plain data from the YAML, with the position of every value and every key."""

    data: Any
    values: dict[Loc, Mark] = field(default_factory=dict)
    keys: dict[Loc, Mark] = field(default_factory=dict)


def _mark_of(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _event_mark(event: yaml.Event) -> Mark | None:
    mark = event.start_mark
    return None if mark is None else (mark.line + 1, mark.column + 1)


class LimitExceeded(Exception):
    """The definition goes past one of the limits above; ``message`` names it."""

    def __init__(self, mark: Mark | None, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


_MERGE_TAG = "tag:yaml.org,2002:merge"
# The C parser when PyYAML has it: it reads events several times faster than the pure
# Python one, and the limits are checked on its events before anything is composed.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_events(text: str) -> None:
    """Check depth, aliases and merge keys on the event stream, before composing.

    The event stream is read without recursion, so a definition nested thousands deep is
    refused here (the composer would recurse once per level). Raises ``LimitExceeded``; a
    syntax error is left for the composer, which words it best.
    """
    depth = values = aliases = merges = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise LimitExceeded(
                        _event_mark(event), f"nested too deeply: deeper than {MAX_DEPTH} levels"
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise LimitExceeded(
                        _event_mark(event), f"too many aliases: more than {MAX_ALIASES} (*name)"
                    )
            elif isinstance(event, yaml.ScalarEvent) and event.value == "<<" and event.implicit[0]:
                merges += 1
                if merges > MAX_MERGE_KEYS:
                    raise LimitExceeded(
                        _event_mark(event), f"too many merge keys: more than {MAX_MERGE_KEYS} (<<:)"
                    )
            if isinstance(event, yaml.NodeEvent):
                values += 1
                if values > MAX_VALUES:
                    raise LimitExceeded(
                        _event_mark(event), f"too many values: more than {MAX_VALUES}"
                    )
    except yaml.YAMLError:
        return


class _Converter:
    def __init__(self, problems: Problems, document: Document) -> None:
        self._problems = problems
        self._document = document
        self._constructor = yaml.constructor.SafeConstructor()
        self._nodes = 0
        self._merged = 0
        self._flattened: dict[int, list[tuple[yaml.Node, yaml.Node]]] = {}

    def convert(self, node: yaml.Node, location: Loc, depth: int = 0) -> Any:
        self._document.values.setdefault(location, _mark_of(node))
        self._nodes += 1
        if depth > MAX_DEPTH:
            # Reached through aliases: each level was within bounds where it was written.
            raise LimitExceeded(
                _mark_of(node), f"nested too deeply: deeper than {MAX_DEPTH} levels"
            )
        if self._nodes > MAX_VALUES:
            raise LimitExceeded(
                _mark_of(node), f"too many values: more than {MAX_VALUES} (aliases expanded)"
            )
        if isinstance(node, yaml.ScalarNode):
            try:
                return self._constructor.construct_object(node, deep=True)
            except yaml.YAMLError as bad:
                self._problems.at(_mark_of(node), location, f"bad value: {_yaml_problem(bad)}")
                return None
        if isinstance(node, yaml.SequenceNode):
            return [
                self.convert(item, (*location, index), depth + 1)
                for index, item in enumerate(node.value)
            ]
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, location, depth)
        self._problems.at(_mark_of(node), location, "unsupported YAML node")
        return None

    def _flatten(
        self, node: yaml.MappingNode, location: Loc, depth: int = 0
    ) -> list[tuple[yaml.Node, yaml.Node]]:
        """The pairs of ``node`` with its merge keys (``<<: *defaults``) expanded.

        A key written in the mapping wins over a merged one, and an earlier mapping of a
        merge list over a later one (YAML's merge rule); the result is what PyYAML's own
        merging gives. Each merged key is kept once, and
        each mapping is flattened once, so a chain of merges costs the number of distinct
        keys, not two to the power of its length.
        """
        known = self._flattened.get(id(node))
        if known is not None:
            return known
        if depth > MAX_DEPTH:
            raise LimitExceeded(_mark_of(node), f"merge keys nested deeper than {MAX_DEPTH}")
        own: list[tuple[yaml.Node, yaml.Node]] = []
        groups: list[list[yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                many = isinstance(value_node, yaml.SequenceNode)
                groups.append(value_node.value if many else [value_node])
            else:
                own.append((key_node, value_node))
        # Of two merge keys the later wins (as PyYAML reads them); within one list of
        # mappings the earlier does.
        sources = [source for group in reversed(groups) for source in group]
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        seen = {str(key.value) for key, _ in own if isinstance(key, yaml.ScalarNode)}
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self._problems.at(
                    _mark_of(source),
                    location,
                    "bad merge: a merge key (<<:) takes a mapping or a list of mappings",
                )
                continue
            for key_node, value_node in self._flatten(source, location, depth + 1):
                text = str(key_node.value)
                if not isinstance(key_node, yaml.ScalarNode) or text in seen:
                    continue
                seen.add(text)
                merged.append((key_node, value_node))
                self._merged += 1
                if self._merged > MAX_MERGED_VALUES:
                    raise LimitExceeded(
                        _mark_of(key_node),
                        f"merge keys (<<:) bring in more than {MAX_MERGED_VALUES} values",
                    )
        pairs = merged + own
        self._flattened[id(node)] = pairs
        return pairs

    def _mapping(self, node: yaml.MappingNode, location: Loc, depth: int) -> dict[str, Any]:
        own_keys = {id(key) for key, _ in node.value}
        result: dict[str, Any] = {}
        first_seen: dict[str, Mark] = {}
        for key_node, value_node in self._flatten(node, location):
            if not isinstance(key_node, yaml.ScalarNode):
                self._problems.at(_mark_of(key_node), location, "a key must be plain text")
                continue
            # The raw text, not the YAML 1.1 value: a key ``on`` or ``no`` stays a string.
            key = str(key_node.value)
            child = (*location, key)
            if id(key_node) in own_keys:
                if key in first_seen:
                    self._problems.at(
                        _mark_of(key_node),
                        child,
                        f"duplicate key {key!r} (first at line {first_seen[key][0]})",
                        "YAML would silently keep only the last one; remove one of them",
                    )
                    continue
                first_seen[key] = _mark_of(key_node)
            self._document.keys[child] = _mark_of(key_node)
            self._document.values[child] = _mark_of(value_node)
            result[key] = self.convert(value_node, child, depth + 1)
        return result


def _yaml_problem(error: yaml.YAMLError) -> str:
    if not isinstance(error, yaml.MarkedYAMLError):
        return str(error)
    context = error.context
    opened, found = error.context_mark, error.problem_mark
    if context and opened is not None and found is not None and opened.line != found.line:
        context += f" (opened at line {opened.line + 1})"
    return "; ".join(p for p in (context, error.problem) if p) or str(error)


_paused_lock = threading.Lock()
_paused_readers = 0
_collector_was_enabled = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a definition is read.

    Reading a large definition allocates a few hundred thousand objects, which triggers
    full collections; each walks the whole heap holding the interpreter lock for 100 ms
    or more, so the service's event loop stalls even though the reading runs in a worker
    thread. What is built here holds no reference cycles that outlive it (plain reference
    counting frees it), so there is nothing for the collector to find; the limits bound
    how long the pause lasts. Re-entrant across threads: the last reader resumes it.
    """
    global _paused_readers, _collector_was_enabled
    with _paused_lock:
        if _paused_readers == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _paused_readers += 1
    try:
        yield
    finally:
        with _paused_lock:
            _paused_readers -= 1
            if _paused_readers == 0 and _collector_was_enabled:
                gc.enable()


def too_large(text: str) -> bool:
    """Whether ``text`` is longer than any definition is allowed to be."""
    return len(text) > MAX_DEFINITION_CHARS


def compose(text: str, problems: Problems) -> Document | None:
    """The definition ``text`` (YAML, or JSON) as a ``Document``; ``None`` when it cannot
    be read, with the reasons added to ``problems``. On success ``problems`` locates
    later problems through the document.

    CPU-bound: the service calls it off the event loop. Every limit is checked while
    reading, so the work is bounded by the limits whatever the text holds.
    """
    if too_large(text):
        problems.at(
            None,
            (),
            f"the definition is larger than {MAX_DEFINITION_CHARS} characters",
            "split it into several gates",
        )
        return None
    if text.lstrip().startswith("{"):
        # JSON body: JSON allows tabs as whitespace, YAML does not; tabs inside JSON
        # strings must be escaped, so replacing raw ones changes no value.
        text = text.replace("\t", " ")
    try:
        _check_events(text)
        root = yaml.compose(text, Loader=_Loader)
    except LimitExceeded as limit:
        problems.at(limit.mark, (), limit.message)
        return None
    except yaml.MarkedYAMLError as bad:
        mark = bad.problem_mark or bad.context_mark
        position = (mark.line + 1, mark.column + 1) if mark is not None else None
        problems.at(position, (), f"YAML syntax error: {_yaml_problem(bad)}")
        return None
    except yaml.YAMLError as bad:
        problems.at(None, (), f"not readable as YAML: {bad}")
        return None
    if root is None:
        problems.at(
            None,
            (),
            "the gate definition is empty",
            "a gate needs at least probes: and criteria:",
        )
        return None
    document = Document(data=None)
    problems.document = document
    try:
        document.data = _Converter(problems, document).convert(root, ())
    except LimitExceeded as limit:
        problems.at(limit.mark, (), limit.message)
        return None
    return document
