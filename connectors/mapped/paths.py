"""Paths into a mapped payload: `data.form.id`, `$.data.id`, `fields[0].value`, `["key with.dots"]`.

Compiled once per text (cached), read with `Path.get`, and written with `put` when send-test builds a
sample payload that the same paths will read back.
"""

# Why not jmespath (declared in pyproject but never imported; dropped in issue 12):
# - Speed: the envelope reads event_id, form_id, the conditions and the answers container on the
#   receiver's request path. Per lookup, median of 7 timeit runs of 200,000 on a precompiled path
#   (CPython 3.11.7, x86_64, jmespath 1.1.0): `data.id` 0.24 us here against 3.4 us for
#   jmespath.compile(...).search, `data.form.id` 0.32 against 3.8, `data.fields[0].value` 0.50
#   against 5.7, `$.data.form['a.b']` 0.32 against 3.9, a missing `data.nope.deeper` 0.43 against
#   6.6: 11 to 16 times slower (jmespath interprets its parsed tree through a visitor per node).
# - Meaning: jmespath answers null both for an absent key and for a present `null`, but the two
#   differ here (`answers.list` absent is a dead letter, `null` is no answers); `[0]` and `.0`
#   index a list or name the key "0" of an object, where jmespath's `[0]` only indexes a list and
#   `data.items.1` is a syntax error.
# - Syntax: jmespath has no `$` root and quotes keys as `"a.b"`, not `['a.b']`, so the documented
#   paths would still need this parser, which `put` (jmespath only reads) and `hookhub check`'s
#   messages ("bad [...] at character 5") need anyway. Using it would add a translation layer, not
#   remove code.

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from pydantic import AfterValidator

# What `Path.get` returns for an absent value: distinct from a present `null`.
MISSING: Any = object()


@dataclass(frozen=True)
class Path:
    text: str
    steps: tuple[str | int, ...]

    def get(self, data: Any) -> Any:
        """The value at this path, or `MISSING`. A bare number also indexes a list (`fields.0`)."""
        node = data
        for step in self.steps:
            if isinstance(node, dict):
                key = str(step)
                if key not in node:
                    return MISSING
                node = node[key]
            elif isinstance(node, list):
                index = step if isinstance(step, int) else as_int(step)
                if index is None or not -len(node) <= index < len(node):
                    return MISSING
                node = node[index]
            else:
                return MISSING
        return node

    @property
    def flat(self) -> bool:
        """At most one key, then list indexes: what a form body (flat fields) can hold."""
        keys = [s for s in self.steps if isinstance(s, str) and as_int(s) is None]
        return len(keys) <= 1 and (not keys or self.steps[0] == keys[0])


def as_int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"-?\d+", text) else None


@lru_cache(maxsize=1024)
def compile_path(text: str) -> Path:
    """Parse a path; raises ValueError saying what is wrong (never echoing the whole path)."""
    s = text.strip()
    if not s:
        raise ValueError("empty path: write `$` for the whole body, or e.g. data.id")
    steps: list[str | int] = []
    i = _after_root(s)
    while i < len(s):
        step, i = _bracket_step(s, i) if s[i] == "[" else _key_step(s, i)
        steps.append(step)
        i = _after_step(s, i)
    return Path(text=s, steps=tuple(steps))


def _after_root(s: str) -> int:
    """Where the steps start: after a leading `$` or `$.`, else at 0."""
    if s[0] != "$":
        return 0
    i = 1
    if i < len(s) and s[i] not in ".[":
        raise ValueError("`$` must be followed by `.` or `[` (e.g. $.data.id)")
    if s[i : i + 1] == ".":
        i += 1
        if i == len(s):
            raise ValueError("nothing after `$.`")
    return i


def _bracket_step(s: str, i: int) -> tuple[str | int, int]:
    """The `['key']` or `[0]` step at `s[i] == "["`, and where it ends."""
    if s[i + 1 : i + 2] in ("'", '"'):
        quote = s[i + 1]
        end = s.find(quote, i + 2)
        if end < 0 or s[end + 1 : end + 2] != "]":
            raise ValueError(f"unclosed [{quote}...{quote}] at character {i + 1}")
        return s[i + 2 : end], end + 2
    end = s.find("]", i)
    inside = s[i + 1 : end].strip() if end > 0 else ""
    index = as_int(inside)
    if end < 0 or index is None:
        raise ValueError(f"bad [...] at character {i + 1}: use [0] for a list index or ['key'] for a key")
    return index, end + 1


def _key_step(s: str, i: int) -> tuple[str, int]:
    """The plain key starting at `s[i]`, up to the next `.` or `[`, and where it ends."""
    end = i
    while end < len(s) and s[end] not in ".[":
        end += 1
    segment = s[i:end]
    if not segment or "]" in segment:
        raise ValueError(f"empty or malformed key at character {i + 1}")
    return segment, end


def _after_step(s: str, i: int) -> int:
    """Where the next step starts: past a `.` separator, or at a `[`."""
    if i < len(s):
        if s[i] == ".":
            i += 1
            if i == len(s):
                raise ValueError("path ends with `.`")
        elif s[i] != "[":  # pragma: no cover - the loops above stop only at `.`, `[` or the end
            raise ValueError(f"unexpected {s[i]!r} at character {i + 1}")
    return i


def check_path(text: str) -> str:
    compile_path(text)
    return text.strip()


PathText = Annotated[str, AfterValidator(check_path)]


def put(root: Any, path: Path, value: Any, replace: bool = False) -> None:
    """Set `value` at `path` in a sample payload, creating objects and lists; skip what conflicts."""
    if not path.steps:
        _merge_into_root(root, value, replace)
        return
    node = root
    for position, step in enumerate(path.steps):
        slot = _slot(node, step)
        if slot is None:
            return
        if position == len(path.steps) - 1:
            _set_leaf(node, slot, value, replace)
            return
        fresh: Any = [] if isinstance(path.steps[position + 1], int) else {}
        node = _descend(node, slot, fresh)


def _merge_into_root(root: Any, value: Any, replace: bool) -> None:
    """The `$` path: an object's keys go into the root object (existing keys kept unless `replace`)."""
    if isinstance(root, dict) and isinstance(value, dict):
        for key, item in value.items():
            if replace or key not in root:
                root[key] = item


def _slot(node: Any, step: str | int) -> str | int | None:
    """The dict key or list index `step` names in `node` (growing a list to hold it); None: neither."""
    if isinstance(node, dict):
        return str(step)
    if isinstance(node, list):
        index = step if isinstance(step, int) else as_int(step)
        if index is None:
            return None
        index = max(index, 0)
        while len(node) <= index:
            node.append(None)
        return index
    return None


def _set_leaf(node: Any, slot: str | int, value: Any, replace: bool) -> None:
    """Write `value` at `slot` if it is vacant (an absent key, a `None` list item) or `replace`."""
    vacant = slot not in node if isinstance(node, dict) else node[slot] is None
    if replace or vacant:
        node[slot] = value


def _descend(node: Any, slot: str | int, fresh: Any) -> Any:
    """The child at `slot`, set to `fresh` first if vacant (an absent key, a `None` list item)."""
    if isinstance(node, dict):
        return node.setdefault(slot, fresh)
    if node[slot] is None:
        node[slot] = fresh
    return node[slot]
