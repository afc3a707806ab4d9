"""Hostile-safe YAML for compose files: PyYAML's node tree, walked by us, with every key's line.

``yaml.compose`` (the safe loader's parse + compose steps) gives nodes with marks; we turn them
into plain values ourselves so that we can bound what an attacker controls: the document size,
the nesting depth, the number of nodes after alias expansion (the "billion laughs" bomb),
recursive aliases, duplicate keys and tags beyond the JSON-like core. Merge keys (``<<``) work
as in YAML 1.1, as compose files use them with ``x-`` anchors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from engine.compose.problems import ComposeError, Problem

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64

Path = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}
_MERGE = _TAG + "merge"


def where(path: Path) -> str:
    """A key path as written in messages: ``services.web.ports[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


@dataclass
class Document:
    """A loaded compose file: plain values and the line of every key or list item."""

    data: dict[str, Any]
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int | None:
        """The line of ``path``, else of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def problem(self, path: Path, message: str) -> Problem:
        """A problem at ``path`` with its line."""
        return Problem(where(path), self.line(path), message)


class _Walker:
    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.problems: list[Problem] = []
        self.count = 0
        self.active: set[int] = set()
        self.constructor = yaml.constructor.SafeConstructor()

    def value(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise ComposeError(
                [
                    Problem(
                        where(path),
                        node.start_mark.line + 1,
                        f"the document expands to more than {MAX_NODES} values (an alias bomb?); "
                        "refusing to load it",
                    )
                ]
            )
        if len(path) > MAX_DEPTH:
            raise ComposeError([Problem(where(path), node.start_mark.line + 1, "nested too deeply")])
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active:
            raise ComposeError(
                [
                    Problem(
                        where(path),
                        node.start_mark.line + 1,
                        "a recursive alias (a value that contains itself)",
                    )
                ]
            )
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                self.tag(node, _TAG + "seq", path)
                items = []
                for i, item in enumerate(node.value):
                    self.lines.setdefault((*path, i), item.start_mark.line + 1)
                    items.append(self.value(item, (*path, i)))
                return items
            assert isinstance(node, yaml.MappingNode)
            self.tag(node, _TAG + "map", path)
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def tag(self, node: yaml.Node, expected: str, path: Path) -> None:
        if node.tag != expected:
            self.problems.append(
                Problem(where(path), node.start_mark.line + 1, f"unsupported YAML tag {node.tag!r}")
            )

    def scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self.problems.append(
                Problem(
                    where(path),
                    node.start_mark.line + 1,
                    f"unsupported YAML tag {node.tag!r}: quote the value to make it a string",
                )
            )
            return node.value
        return self.constructor.construct_object(node)

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        seen: dict[str, int] = {}
        merges: list[yaml.Node] = []
        for knode, vnode in node.value:
            if knode.tag == _MERGE:
                merges.append(vnode)
                continue
            if not isinstance(knode, yaml.ScalarNode):
                self.problems.append(
                    Problem(where(path), knode.start_mark.line + 1, "a key must be a plain string")
                )
                continue
            key, line = str(knode.value), knode.start_mark.line + 1
            if key in seen:
                self.problems.append(
                    Problem(where((*path, key)), line, f"duplicate key {key!r} (first on line {seen[key]})")
                )
                continue
            seen[key] = line
            self.lines.setdefault((*path, key), line)
            result[key] = self.value(vnode, (*path, key))
        for merged in merges:
            for source in self._merge_sources(merged, path):
                if id(source) in self.active:
                    raise ComposeError(
                        [Problem(where(path), source.start_mark.line + 1, "a recursive '<<' merge")]
                    )
                self.active.add(id(source))
                try:
                    for key, value in self.mapping(source, path).items():
                        result.setdefault(key, value)
                finally:
                    self.active.discard(id(source))
        return result

    def _merge_sources(self, node: yaml.Node, path: Path) -> Iterator[yaml.MappingNode]:
        self.count += 1
        if isinstance(node, yaml.MappingNode):
            yield node
        elif isinstance(node, yaml.SequenceNode) and all(isinstance(n, yaml.MappingNode) for n in node.value):
            yield from reversed(node.value)  # earlier sources win (YAML merge)
        else:
            self.problems.append(
                Problem(
                    where(path), node.start_mark.line + 1, "'<<' must merge a mapping or a list of mappings"
                )
            )


def load(text: str) -> Document:
    """Parse one compose document into a :class:`Document`.

    Raises ComposeError (with the line) for YAML that does not parse, more than one document,
    a root that is not a mapping, duplicate keys, unsupported tags, and hostile documents:
    over :data:`MAX_BYTES`, deeper than :data:`MAX_DEPTH`, or over :data:`MAX_NODES` values
    once aliases are expanded.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise ComposeError([Problem("", None, f"the file is {size} bytes; the limit is {MAX_BYTES} bytes")])
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        message = " ".join(str(part) for part in (e.context, e.problem) if part)
        raise ComposeError([Problem("", line, f"YAML does not parse: {message}")]) from None
    except yaml.YAMLError as e:
        raise ComposeError([Problem("", None, f"YAML does not parse: {e}")]) from None
    except RecursionError:
        raise ComposeError([Problem("", None, "YAML nested too deeply")]) from None
    if root is None:
        raise ComposeError([Problem("", None, "the file is empty: it needs a top-level 'services:' mapping")])
    if not isinstance(root, yaml.MappingNode):
        raise ComposeError(
            [
                Problem(
                    "", root.start_mark.line + 1, "the top level must be a mapping (services:, networks: ...)"
                )
            ]
        )
    walker = _Walker()
    walker.lines[()] = 1
    data = walker.value(root, ())
    if walker.problems:
        raise ComposeError(walker.problems)
    return Document(data=data, lines=walker.lines)
