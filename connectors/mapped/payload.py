"""Reading a mapped payload: the body as an object (JSON or form fields) and its values as answer parts."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from connectors import _answers
from connectors.base import UnsupportedPayload
from connectors.mapped.paths import MISSING

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def fields(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Form fields as an object: a repeated name, or one ending in `[]` (name kept without it), is a list."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        many = name.endswith("[]")
        if many:
            name = name[:-2]
        if name in out:
            before = out[name]
            out[name] = [*(before if isinstance(before, list) else [before]), value]
        else:
            out[name] = [value] if many else value
    return out


def urlencoded(body: bytes) -> dict[str, Any]:
    try:
        return fields(
            parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
        )
    except UnicodeDecodeError:
        raise UnsupportedPayload("form body is not UTF-8 text (after percent-decoding)") from None


def multipart(body: bytes, content_type: str) -> dict[str, Any]:
    return fields(_answers.multipart_pairs(body, content_type))


def inferred_type(value: Any) -> str:
    """An answer's type when the mapping names none: what JSON kind its value is."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "list"
    return "object" if isinstance(value, dict) else "text"


_IN_A_MESSAGE = {"boolean": "a boolean", "number": "a number", "list": "a list"}


def kind_of(value: Any) -> str:
    """The same kind, worded for an error message; null is named, any other non-text is an object."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return "text"
    return _IN_A_MESSAGE.get(inferred_type(value), "an object")


def scalar_text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None or value is MISSING:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    return value if isinstance(value, str) and value else None


def instant(value: Any, where: str, fallback: datetime) -> datetime:
    """ISO 8601, or epoch seconds / milliseconds (a number or digits); absent: `fallback`."""
    if value is MISSING or value is None or value == "":
        return fallback
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,30}(\.[0-9]{1,30})?", value.strip()):
        value = float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = value / 1000 if value >= 100_000_000_000 else value  # 1e11 s is the year 5138
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):  # / of a huge int overflows too
            raise UnsupportedPayload(f"{where} is not a usable epoch time") from None
    return _answers.instant(value, where, fallback)
