"""Gate definitions as YAML nodes: plain data with the position of every value and key.

The text is *composed* into YAML nodes rather than loaded, so every value keeps its
position and a duplicated key is an error: a plain YAML load silently keeps the last of
two ``go:`` keys, which for a gate could turn a strict condition into a lax one without
anyone noticing. Limits on size, nesting and the number of values keep a hostile
definition from exhausting the service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from gates.errors import Loc

if TYPE_CHECKING:
    from gates.problems import Problems

MAX_DEFINITION_CHARS = 1_000_000
_MAX_NODES = 100_000
_MAX_DEPTH = 64

Mark = tuple[int, int]


@dataclass
class Document:
    """Plain data from the YAML, with the position of every value and every key."""

    data: Any
    values: dict[Loc, Mark] = field(default_factory=dict)
    keys: dict[Loc, Mark] = field(default_factory=dict)


def _mark_of(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Converter:
    def __init__(self, problems: Problems, document: Document) -> None:
        self._problems = problems
        self._document = document
        self._constructor = yaml.constructor.SafeConstructor()
        self._nodes = 0

    def convert(self, node: yaml.Node, location: Loc, depth: int = 0) -> Any:
        self._document.values.setdefault(location, _mark_of(node))
        self._nodes += 1
        if depth > _MAX_DEPTH or self._nodes > _MAX_NODES:
            raise _TooLarge(_mark_of(node))
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

    def _mapping(self, node: yaml.MappingNode, location: Loc, depth: int) -> dict[str, Any]:
        own_keys = {id(key) for key, _ in node.value}
        try:
            # YAML merge keys (<<: *defaults) are handy for sharing probe settings.
            self._constructor.flatten_mapping(node)
        except yaml.YAMLError as bad:
            self._problems.at(_mark_of(node), location, f"bad merge: {_yaml_problem(bad)}")
        result: dict[str, Any] = {}
        first_seen: dict[str, Mark] = {}
        for key_node, value_node in node.value:
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


class _TooLarge(Exception):
    def __init__(self, mark: Mark) -> None:
        self.mark = mark


def _yaml_problem(error: yaml.YAMLError) -> str:
    if not isinstance(error, yaml.MarkedYAMLError):
        return str(error)
    context = error.context
    opened, found = error.context_mark, error.problem_mark
    if context and opened is not None and found is not None and opened.line != found.line:
        context += f" (opened at line {opened.line + 1})"
    return "; ".join(p for p in (context, error.problem) if p) or str(error)


def compose(text: str, problems: Problems) -> Document | None:
    """The definition ``text`` (YAML, or JSON) as a ``Document``; ``None`` when it cannot
    be read, with the reasons added to ``problems``. On success ``problems`` locates
    later problems through the document."""
    if len(text) > MAX_DEFINITION_CHARS:
        problems.at(None, (), f"the definition is larger than {MAX_DEFINITION_CHARS} characters")
        return None
    if text.lstrip().startswith("{"):
        # JSON body: JSON allows tabs as whitespace, YAML does not; tabs inside JSON
        # strings must be escaped, so replacing raw ones changes no value.
        text = text.replace("\t", " ")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
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
    except _TooLarge as large:
        problems.at(large.mark, (), "the definition is nested too deeply or has too many values")
        return None
    return document
