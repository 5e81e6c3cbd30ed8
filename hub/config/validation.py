"""Turning pydantic validation errors into positioned, admin-readable problems.

A pydantic error `loc` mostly follows the input (keys, list indices) but also contains
union member tags (`'str'`, `'list[str]'`, `'RouteTarget'`) and `'[key]'` for dict
keys. Each loc is resolved against the data pydantic saw; a segment that names nothing
in the data is a union tag. Of a union's members only those that got past the input's
shape are reported (a mapping in `to` is a target with a bad key, not a bad string);
when every member rejected the shape the messages are merged ("expected a string or list").
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from hub.config.positions import KeyPath
from hub.config.problems import Reporter

_SHAPE_MESSAGES = {
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
}
_MESSAGE_PREFIXES = ("Value error, ", "Assertion failed, ")


@dataclass(frozen=True)
class _Resolved:
    error: ErrorDetails
    path: KeyPath
    missing: str | None = None
    key_error: bool = False
    site: KeyPath | None = None
    tag: Any = None

    @property
    def shallow(self) -> bool:
        """The union member rejected the value's shape itself, not something inside it."""
        return self.missing is None and self.path == self.site


def report_validation_error(
    reporter: Reporter,
    exc: ValidationError,
    data: Any,
    model: type[BaseModel],
    *,
    prefix: KeyPath = (),
    context: str = "",
    extra_keys: Sequence[str] = (),
) -> None:
    """Report every error of `model.model_validate(data)`; `prefix` is data's path in the file.

    `context` qualifies unknown keys (" for provider typeform"); `extra_keys` are keys
    valid beside the model's own at the top of `data` (validated by another model).
    """
    for item in _without_rejected_union_members([_resolve(e, data) for e in exc.errors()]):
        path = (*prefix, *item.path)
        if item.missing is not None:
            known = [*(known_keys(model, item.path) or []), *(extra_keys if not item.path else ())]
            typo = _misspelling_of(item.missing, _node_at(data, item.path), known)
            if typo is not None:
                # The key is there, misspelt: naming the typo is what the admin must fix.
                reporter.error((*path, typo), unknown_key_message(typo, known, context), at="key")
            else:
                reporter.error(
                    (*path, item.missing), f"missing required key {item.missing!r}", at="key", pos_path=path
                )
        elif item.error["type"] == "extra_forbidden":
            known = [*(known_keys(model, item.path[:-1]) or []), *(extra_keys if len(item.path) == 1 else ())]
            reporter.error(path, unknown_key_message(item.path[-1], known, context), at="key")
        elif item.key_error:
            reporter.error(path, f"key {item.path[-1]!r} must be a string: quote it", at="key")
        else:
            reporter.error(path, _message(item.error))


def unknown_key_message(key: Any, known: Sequence[str], context: str = "") -> str:
    message = f"unknown key {key!r}{context}"
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    if known:
        return f"{message}; known keys: {', '.join(sorted(set(known)))}"
    return message


def _misspelling_of(missing: str, node: Any, known: Sequence[str]) -> str | None:
    """A key of `node` that is no known key and whose closest known key is `missing`, if any.

    Models that allow extra keys (sources, destinations) never call such a key unknown, so
    without this a typo'd `provider` shows only as a missing one."""
    if not isinstance(node, dict):
        return None
    for key in node:
        if (
            isinstance(key, str)
            and key not in known
            and difflib.get_close_matches(key, list(known), n=1, cutoff=0.6) == [missing]
        ):
            return key
    return None


def _node_at(data: Any, path: KeyPath) -> Any:
    node = data
    for segment in path:
        if not _contains(node, segment):
            return None
        node = node[segment]
    return node


def _resolve(error: ErrorDetails, data: Any) -> _Resolved:
    node = data
    path: KeyPath = ()
    site: KeyPath | None = None
    tag: Any = None
    loc = error["loc"]
    for index, segment in enumerate(loc):
        if segment == "[key]":
            return _Resolved(error, path, key_error=True, site=site, tag=tag)
        if _contains(node, segment):
            node, path = node[segment], (*path, segment)
        elif error["type"] == "missing" and index == len(loc) - 1:
            return _Resolved(error, path, missing=str(segment), site=site, tag=tag)
        elif site is None:
            site, tag = path, segment
    return _Resolved(error, path, site=site, tag=tag)


def _contains(node: Any, segment: Any) -> bool:
    if isinstance(node, dict):
        return segment in node
    return isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node)


def _without_rejected_union_members(items: list[_Resolved]) -> list[_Resolved]:
    groups: dict[KeyPath, list[_Resolved]] = {}
    for item in items:
        if item.site is not None:
            groups.setdefault(item.site, []).append(item)
    result: list[_Resolved] = []
    done: set[KeyPath] = set()
    for item in items:
        if item.site is None:
            result.append(item)
            continue
        if item.site in done:
            continue
        done.add(item.site)
        group = groups[item.site]
        deep_tags = {i.tag for i in group if not i.shallow}
        if deep_tags:
            result.extend(i for i in group if i.tag in deep_tags)
        else:
            merged = _merge_messages([_message(i.error) for i in group])
            result.append(_Resolved({**group[0].error, "type": "merged", "msg": merged}, group[0].path))
    return result


def _merge_messages(messages: list[str]) -> str:
    unique = list(dict.fromkeys(messages))
    words = [m.split(" ") for m in unique]
    common = 0
    while all(len(w) > common + 1 and w[common] == words[0][common] for w in words):
        common += 1
    head = " ".join(words[0][:common])
    tails = " or ".join(" ".join(w[common:]) for w in words)
    return f"{head} {tails}" if head else tails


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in _SHAPE_MESSAGES:
        return _SHAPE_MESSAGES[kind]
    if kind == "too_short" and error.get("ctx", {}).get("min_length") == 1:
        return "must not be empty"
    message = error["msg"]
    for prefix in _MESSAGE_PREFIXES:
        message = message.removeprefix(prefix)
    return message


def known_keys(model: type[BaseModel], path: KeyPath) -> list[str] | None:
    """Keys of the model found at `path` below `model` (by field annotations), if any."""
    annotation: Any = model
    for segment in path:
        annotation = _step(annotation, segment)
        if annotation is None:
            return None
    found = _model_in(annotation)
    if found is None:
        return None
    return [field.alias or name for name, field in found.model_fields.items()]


def _step(annotation: Any, segment: Any) -> Any:
    model = _model_in(annotation)
    if model is not None:
        for name, field in model.model_fields.items():
            if segment in (name, field.alias):
                return field.annotation
        return None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and isinstance(segment, int):
        return args[0]
    if origin is dict:
        return args[1]
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for member in get_args(annotation):
            found = _model_in(member)
            if found is not None:
                return found
    return None
