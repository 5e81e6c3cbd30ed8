"""How Jotform shows one answer, shared by the webhook (`rawRequest` values) and the API (`answers[].answer`).

Both carry an answer in the same shapes (a name as {first, last}, a date as {month, day, year}, a phone
as {full} or {area, phone}); `shape` turns one into the Answer's type and value, and says how the
webhook's `pretty` text is expected to show it.
"""

from __future__ import annotations

import json
from typing import Any

from connectors import _answers

_NAME = ("prefix", "first", "middle", "last", "suffix")
_ADDRESS = ("addr_line1", "addr_line2", "city", "state", "postal", "country")


def deep_empty(value: Any) -> bool:
    if isinstance(value, dict):
        return all(deep_empty(v) for v in value.values())
    if isinstance(value, list):
        return all(deep_empty(v) for v in value)
    return _answers.is_empty(value)


def _joined(raw: dict[str, Any], keys: tuple[str, ...], sep: str) -> str:
    return sep.join(
        str(raw[k]).strip() for k in keys if not _answers.is_empty(raw.get(k)) and str(raw[k]).strip()
    )


def shape(raw: Any) -> tuple[str, Any, tuple[str, ...], bool]:
    """(type, value, how `pretty` shows it, loose) of one non-empty rawRequest answer."""
    if isinstance(raw, str):
        return "text", raw, (raw, raw.strip()), False
    if isinstance(raw, list):
        items = [
            v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in raw if not deep_empty(v)
        ]
        return "list", items, (" ".join(items),), not all(isinstance(v, str) for v in raw)
    if not isinstance(raw, dict):  # a JSON number or boolean: keep its type
        return type(raw).__name__, raw, (json.dumps(raw),), True
    keys = set(raw)
    if "full" in keys or ("phone" in keys and keys <= {"area", "phone", "country"}):
        value = raw.get("full") or _joined(raw, ("country", "area", "phone"), " ")
        return "phone", value, (value,), "full" not in keys
    if keys >= {"month", "day", "year"}:
        y, m, d = (str(raw[k]).strip() for k in ("year", "month", "day"))
        if not (y + m + d).isdigit():
            return "date", _answers.coerce_value(raw), (), True
        value = f"{y:0>4}-{m:0>2}-{d:0>2}"
        if not _answers.is_empty(raw.get("hour")):  # a date field with a time part keeps the time as sent
            value += f" {raw['hour']}:{raw.get('min') or '00'}" + (
                f" {raw['ampm']}" if raw.get("ampm") else ""
            )
        # `pretty` follows the field's display format (MM-DD-YYYY in captures); try the common ones.
        shown = tuple(
            f"{a}{sep}{b}{sep}{c}" for sep in "-/." for a, b, c in ((m, d, y), (d, m, y), (y, m, d))
        )
        return "date", value, shown, True
    if keys & {"first", "last"} and keys <= set(_NAME):
        value = _joined(raw, _NAME, " ")
        return "name", value, (value,), False
    if keys & {"addr_line1", "city", "postal"} and keys <= set(_ADDRESS):
        value = _joined(raw, _ADDRESS, ", ")
        return "address", value, (value,), True
    if keys >= {"hourSelect", "minuteSelect"}:
        value = f"{raw['hourSelect']}:{raw['minuteSelect']}" + (f" {raw['ampm']}" if raw.get("ampm") else "")
        return "time", value, (value,), True
    # Matrix, products, widgets: compact JSON text, placed in `pretty` by position only.
    return "object", _answers.coerce_value(raw), (), True
