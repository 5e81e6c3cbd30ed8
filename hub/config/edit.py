"""Append an entry to a section of connectors.yaml, keeping every other byte of the file.

ruamel.yaml's round-trip loader finds the section and where it ends (its keys' line and column
numbers); the new block is inserted there as text. Dumping the whole round-tripped document
would also keep comments, but not always byte for byte (a comment's spacing, a quote style,
a trailing blank line), and an admin's file must come back exactly as they wrote it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

DEFAULT_INDENT = 2


class EditError(ValueError):
    """The file cannot be edited safely; the message says what to fix."""


def load_round_trip(text: str) -> CommentedMap:
    """The document as ruamel's round-trip map (an empty file is an empty map)."""
    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as exc:
        raise EditError(
            f"not valid YAML ({exc}); fix it (`hookhub check` shows where) and run again"
        ) from None
    if data is None:
        return CommentedMap()
    if not isinstance(data, CommentedMap):
        raise EditError("the top level is not a mapping of sections (sources:, destinations:, routes:)")
    return data


def section_keys(text: str, section: str) -> list[str]:
    """The ids already in `section` (empty when the section is missing or empty)."""
    entries = load_round_trip(text).get(section)
    return [str(key) for key in entries] if isinstance(entries, Mapping) else []


def append_entry(text: str, section: str, entry_id: str, body: Mapping[str, Any], comment: str) -> str:
    """`text` with `entry_id: body` added as the last entry of `section`, under a `# comment` line.

    Everything outside the inserted lines is left as it was; the new lines use the file's line
    endings and the indentation of the section's existing entries.
    """
    data = load_round_trip(text)
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    if section not in data:
        # A new section at the end of the file.
        prefix = "" if not text or text.endswith(("\n", "\r")) else newline
        block = _block(entry_id, body, comment, DEFAULT_INDENT, newline)
        return f"{text}{prefix}{newline if text else ''}{section}:{newline}{block}"
    entries = data[section]
    if entries is not None and not isinstance(entries, CommentedMap):
        raise EditError(
            f"`{section}:` is not a mapping of ids; fix it (`hookhub check` shows how) and run again"
        )
    if isinstance(entries, CommentedMap) and entries.fa.flow_style():
        raise EditError(
            f"`{section}:` is written in flow style ({{...}}); write it as an indented block to add to it"
        )
    indent = DEFAULT_INDENT
    if entries:
        indent = entries.lc.key(next(iter(entries)))[1]
    at = _end_of_section(data, section, lines)
    block = _block(entry_id, body, comment, indent, newline)
    before = "".join(lines[:at])
    if before and not before.endswith(("\n", "\r")):
        before += newline
    return f"{before}{newline}{block}{''.join(lines[at:])}"


def append_item(text: str, section: str, item: Mapping[str, Any], comment: str) -> str:
    """`text` with `item` added as the last item of the list `section` (routes), under `# comment`.

    Lists inside the item are written in flow style (`from: [a, b]`), as the example file does.
    """
    data = load_round_trip(text)
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    if section not in data:
        prefix = "" if not text or text.endswith(("\n", "\r")) else newline
        block = _item_block(item, comment, DEFAULT_INDENT, newline)
        return f"{text}{prefix}{newline if text else ''}{section}:{newline}{block}"
    items = data[section]
    if items is not None and not isinstance(items, CommentedSeq):
        raise EditError(f"`{section}:` is not a list; fix it (`hookhub check` shows how) and run again")
    if isinstance(items, CommentedSeq) and items.fa.flow_style():
        raise EditError(
            f"`{section}:` is written in flow style ([...]); write it as an indented list to add to it"
        )
    start = data.lc.key(section)[0] + 1
    at = _end_of_section(data, section, lines)
    dashes = [
        len(line) - len(line.lstrip(" ")) for line in lines[start:at] if line.lstrip(" ").startswith("-")
    ]
    block = _item_block(item, comment, dashes[0] if dashes else DEFAULT_INDENT, newline)
    before = "".join(lines[:at])
    if before and not before.endswith(("\n", "\r")):
        before += newline
    return f"{before}{newline}{block}{''.join(lines[at:])}"


def _item_block(item: Mapping[str, Any], comment: str, indent: int, newline: str) -> str:
    out = io.StringIO()
    YAML(typ="rt").dump([_flowing_lists(item)], out)
    return _indented(out.getvalue(), comment, indent, newline)


def _flowing_lists(body: Mapping[str, Any]) -> CommentedMap:
    """`body` with its lists in flow style (`to: [a, b]`), as the example file writes them."""
    flowing = CommentedMap()
    for key, value in body.items():
        if isinstance(value, list):
            value = CommentedSeq(value)
            value.fa.set_flow_style()
        flowing[key] = value
    return flowing


def _end_of_section(data: CommentedMap, section: str, lines: list[str]) -> int:
    """The index of the line after the section's last line of its own.

    That is up to the next top-level key, less the blank lines and column-0 comments just above
    that key: those introduce the next section, while indented comments (commented-out examples
    of entries) belong to this one.
    """
    keys = list(data)
    following = keys[keys.index(section) + 1 :]
    end = data.lc.key(following[0])[0] if following else len(lines)
    start = data.lc.key(section)[0] + 1
    while end > start and _belongs_to_next(lines[end - 1]):
        end -= 1
    return end


def _belongs_to_next(line: str) -> bool:
    return not line.strip() or line.startswith("#")


def _block(entry_id: str, body: Mapping[str, Any], comment: str, indent: int, newline: str) -> str:
    out = io.StringIO()
    YAML(typ="rt").dump({entry_id: _flowing_lists(body)}, out)
    return _indented(out.getvalue(), comment, indent, newline)


def _indented(dumped_text: str, comment: str, indent: int, newline: str) -> str:
    pad = " " * indent
    dumped = [f"{pad}{line}" for line in dumped_text.splitlines()]
    comment_lines = [f"{pad}# {line}".rstrip() for line in comment.splitlines()]
    return "".join(f"{line}{newline}" for line in [*comment_lines, *dumped])
