"""Paths into a mapped payload: `data.form.id`, `$.data.id`, `fields[0].value`, `["key with.dots"]`.

Compiled once per text (cached), read with `Path.get`, and written with `put` when send-test builds a
sample payload that the same paths will read back.
"""

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
    i = 0
    if s[0] == "$":
        i = 1
        if i < len(s) and s[i] not in ".[":
            raise ValueError("`$` must be followed by `.` or `[` (e.g. $.data.id)")
        if s[i : i + 1] == ".":
            i += 1
            if i == len(s):
                raise ValueError("nothing after `$.`")
    while i < len(s):
        if s[i] == "[":
            if s[i + 1 : i + 2] in ("'", '"'):
                quote = s[i + 1]
                end = s.find(quote, i + 2)
                if end < 0 or s[end + 1 : end + 2] != "]":
                    raise ValueError(f"unclosed [{quote}...{quote}] at character {i + 1}")
                steps.append(s[i + 2 : end])
                i = end + 2
            else:
                end = s.find("]", i)
                inside = s[i + 1 : end].strip() if end > 0 else ""
                index = as_int(inside)
                if end < 0 or index is None:
                    raise ValueError(
                        f"bad [...] at character {i + 1}: use [0] for a list index or ['key'] for a key"
                    )
                steps.append(index)
                i = end + 1
        else:
            end = i
            while end < len(s) and s[end] not in ".[":
                end += 1
            segment = s[i:end]
            if not segment or "]" in segment:
                raise ValueError(f"empty or malformed key at character {i + 1}")
            steps.append(segment)
            i = end
        if i < len(s):
            if s[i] == ".":
                i += 1
                if i == len(s):
                    raise ValueError("path ends with `.`")
            elif s[i] != "[":  # pragma: no cover - the loops above stop only at `.`, `[` or the end
                raise ValueError(f"unexpected {s[i]!r} at character {i + 1}")
    return Path(text=s, steps=tuple(steps))


def check_path(text: str) -> str:
    compile_path(text)
    return text.strip()


PathText = Annotated[str, AfterValidator(check_path)]


def put(root: Any, path: Path, value: Any, replace: bool = False) -> None:
    """Set `value` at `path` in a sample payload, creating objects and lists; skip what conflicts."""
    if not path.steps:
        if isinstance(root, dict) and isinstance(value, dict):
            for key, item in value.items():
                if replace or key not in root:
                    root[key] = item
        return
    node = root
    for position, step in enumerate(path.steps):
        last = position == len(path.steps) - 1
        following = None if last else path.steps[position + 1]
        fresh: Any = value if last else ([] if isinstance(following, int) else {})
        if isinstance(node, dict):
            key = str(step)
            if last:
                if replace or key not in node:
                    node[key] = value
                return
            node = node.setdefault(key, fresh)
        elif isinstance(node, list):
            index = step if isinstance(step, int) else as_int(step)
            if index is None:
                return
            index = max(index, 0)
            while len(node) <= index:
                node.append(None)
            if last:
                if replace or node[index] is None:
                    node[index] = value
                return
            if node[index] is None:
                node[index] = fresh
            node = node[index]
        else:
            return
