"""Parsing connectors.yaml with ruamel round-trip nodes, and finding positions in it.

The round-trip loader records the line and column of every mapping key, mapping value
and sequence item (`.lc`); paths like `("routes", 0, "to")` (the shape of a pydantic
error `loc`) are resolved against that tree. All positions returned are 1-based.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

KeyPath = tuple[Any, ...]
Position = tuple[int, int]


class YamlSyntaxError(Exception):
    """The text is not YAML; `line`/`col` are 1-based, as ruamel's mark reports them."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.col = col
        self.message = message


@dataclass(frozen=True)
class DuplicateKey:
    mapping: CommentedMap
    key: Any
    line: int
    col: int


class _RecordingConstructor(RoundTripConstructor):
    """Records duplicate keys instead of raising on the first one.

    ruamel's DuplicateKeyError stops at the first duplicate and its message quotes both
    values (possibly secrets); recording lets us report every duplicate with its key only.
    The first occurrence is kept, as ruamel does with duplicates allowed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.duplicates: list[DuplicateKey] = []

    def check_mapping_key(self, node: Any, key_node: Any, mapping: Any, key: Any, value: Any) -> bool:
        try:
            hash(key)
        except TypeError:  # `{a: 1}: x` or `[a]: x`: a mapping or list used as a key
            mark = key_node.start_mark
            raise YamlSyntaxError(
                mark.line + 1,
                mark.column + 1,
                "invalid YAML: a key must be a plain value, not a mapping or a list"
                " (is a `{` or `[` at the start of a line meant as text? quote it)",
            ) from None
        if key in mapping:
            mark = key_node.start_mark
            self.duplicates.append(DuplicateKey(mapping, key, mark.line + 1, mark.column + 1))
            return False
        return True


def parse_yaml(text: str) -> tuple[Any, list[DuplicateKey]]:
    """The round-trip tree (None for an empty document) and the duplicate keys found."""
    yaml = YAML(typ="rt")
    yaml.Constructor = _RecordingConstructor
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        raise _syntax_error(exc) from None
    except YAMLError as exc:  # reader errors (control characters) carry no mark
        raise YamlSyntaxError(1, 1, f"invalid YAML: {exc}") from None
    return tree, list(yaml.constructor.duplicates)


def _syntax_error(exc: MarkedYAMLError) -> YamlSyntaxError:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    message = f"invalid YAML: {exc.problem or exc.context or 'cannot parse'}"
    context_mark = exc.context_mark
    if exc.problem and exc.context and context_mark is not None and context_mark.line + 1 != line:
        message += f" ({exc.context} at line {context_mark.line + 1})"
    return YamlSyntaxError(line, col, message)


def _lc(getter: Callable[[Any], Any], key: Any) -> Position | None:
    # Keys pulled in by a `<<:` merge have no position of their own in the mapping.
    try:
        line, col = getter(key)
    except (KeyError, IndexError, TypeError):
        return None
    return line + 1, col + 1


def _own_pos(node: Any) -> Position:
    if isinstance(node, (CommentedMap, CommentedSeq)) and node.lc.line is not None:
        return node.lc.line + 1, node.lc.col + 1
    return 1, 1


class Locator:
    """Positions of paths in one parsed document."""

    def __init__(self, root: Any) -> None:
        self.root = root

    def key_pos(self, path: KeyPath) -> Position:
        """Where the last key of `path` is written (a sequence item: where the item starts)."""
        return self._resolve(path)[0]

    def value_pos(self, path: KeyPath) -> Position:
        """Where the value at `path` starts; its key for an empty (null) value."""
        return self._resolve(path)[1]

    def _resolve(self, path: KeyPath) -> tuple[Position, Position]:
        node = self.root
        key_pos = value_pos = _own_pos(node)
        for segment in path:
            if isinstance(node, CommentedMap) and _has_key(node, segment):
                key_pos = _lc(node.lc.key, segment) or _own_pos(node)
                child = node[segment]
                # ruamel places a null value's mark at the next token, often lines below.
                value_pos = key_pos if child is None else (_lc(node.lc.value, segment) or key_pos)
            elif isinstance(node, CommentedSeq) and isinstance(segment, int) and 0 <= segment < len(node):
                key_pos = value_pos = _lc(node.lc.item, segment) or _own_pos(node)
                child = node[segment]
            else:
                # A path deeper than the document (a missing key): its owner is the best place.
                return key_pos, key_pos
            node = child
        return key_pos, value_pos

    def path_of(self, container: Any) -> KeyPath | None:
        """The path of a mapping or sequence object inside the tree (found by identity)."""
        stack: list[tuple[Any, KeyPath]] = [(self.root, ())]
        seen: set[int] = set()
        while stack:
            node, path = stack.pop()
            if node is container:
                return path
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, CommentedMap):
                stack.extend((v, (*path, k)) for k, v in node.items())
            elif isinstance(node, CommentedSeq):
                stack.extend((v, (*path, i)) for i, v in enumerate(node))
        return None


def _has_key(mapping: Any, key: Any) -> bool:
    try:
        return key in mapping
    except TypeError:  # an unhashable segment never names a key
        return False


def render_path(root: Any, path: KeyPath) -> str:
    """`sources.contact-form.secret`, `routes[all-leads].to[1]`.

    A sequence item that is a mapping with a string `name` (a route) is shown by that
    name, any other item by its index, so a message reads like the file.
    """
    text = ""
    node = root
    for segment in path:
        child: Any = None
        if isinstance(node, list) and isinstance(segment, int):
            label: Any = segment
            if 0 <= segment < len(node):
                child = node[segment]
                name = child.get("name") if isinstance(child, dict) else None
                if isinstance(name, str) and name:
                    label = name
            text += f"[{label}]"
        else:
            if isinstance(node, dict) and _has_key(node, segment):
                child = node[segment]
            text += f".{segment}" if text else str(segment)
        node = child
    return text
