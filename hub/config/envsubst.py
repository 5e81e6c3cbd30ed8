"""Environment interpolation of string values: `${VAR}`, `${VAR:-default}`, `$$`.

The rules follow docker compose so admins need not learn new ones:
- `${VAR}` is VAR's value; VAR must be set (an empty value passes here; the models
  reject an empty secret with their own message).
- `${VAR:-default}` is the default when VAR is unset or empty. The default is literal
  text up to the first `}` and may be empty: `${VAR:-}`.
- `$$` is a literal `$`. A `$` followed by anything else is kept as written.
Only values are interpolated, never keys: ids and key names must be readable in the file.
Messages name variables but never print values or defaults: either may be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ruamel.yaml.scalarbool import ScalarBoolean

from hub.config.positions import KeyPath

_REFERENCE = re.compile(r"\$(?:(?P<escape>\$)|\{(?P<body>[^}]*)\}|(?P<unclosed>\{))")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?\Z", re.DOTALL)


def substitute(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """The interpolated text and one message per reference that could not be resolved.

    An unresolved reference is left as written, so later checks see a non-empty value
    instead of reporting a consequence of the same mistake.
    """
    messages: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match["escape"]:
            return "$"
        if match["unclosed"] is not None:
            messages.append("unterminated '${': close it with '}' (write $$ for a literal '$')")
            return match.group(0)
        body = _BODY.match(match["body"])
        if body is None:
            messages.append(
                "invalid reference: write ${NAME} or ${NAME:-default} (write $$ for a literal '$')"
            )
            return match.group(0)
        name, default = body["name"], body["default"]
        value = environ.get(name)
        if default is not None:
            return value if value else default
        if value is None:
            messages.append(
                f"environment variable {name} is not set (use ${{{name}:-default}} for a default)"
            )
            return match.group(0)
        return value

    return _REFERENCE.sub(replace, text), messages


def resolve_tree(tree: Any, environ: Mapping[str, str]) -> tuple[Any, list[tuple[KeyPath, str]]]:
    """Plain Python data (dict, list, str, int, float, bool, None) with strings interpolated.

    ruamel's round-trip scalar types (ScalarFloat, ScalarInt, quoted-string classes) are
    turned into builtins so validators see ordinary values. Returns the data and
    `(path, message)` for every reference that could not be resolved.
    """
    issues: list[tuple[KeyPath, str]] = []
    active: set[int] = set()

    def walk(node: Any, path: KeyPath) -> Any:
        if isinstance(node, (dict, list)):
            if id(node) in active:  # `&a [*a]`: an alias inside its own anchor
                issues.append((path, "recursive YAML alias"))
                return None
            active.add(id(node))
            try:
                if isinstance(node, dict):
                    return {_scalar(k): walk(v, (*path, k)) for k, v in node.items()}
                return [walk(v, (*path, i)) for i, v in enumerate(node)]
            finally:
                active.discard(id(node))
        if isinstance(node, str):
            text, messages = substitute(str(node), environ)
            issues.extend((path, m) for m in messages)
            return text
        return _scalar(node)

    return walk(tree, ()), issues


def _scalar(value: Any) -> Any:
    # Order matters: ScalarBoolean is an int subclass, bool is an int too.
    if isinstance(value, bool):
        return value
    if isinstance(value, ScalarBoolean):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value
