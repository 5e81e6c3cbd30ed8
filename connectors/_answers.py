"""Normalization helpers shared by connectors.

Rules followed: ../shared/fixtures/providers/README.md, "How answers are normalised" and the
`expect.email` row of the file-format table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from python_multipart import FormParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field as MultipartField
from python_multipart.multipart import parse_options_header

from connectors.base import InboundRequest, UnsupportedPayload
from hub.submission import Answer, AnswerValue, parse_instant

# Deliberately loose: providers validate addresses; this only tells an address from other text.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_NAME_TYPES = frozenset({"name", "full_name", "fullname", "input_name"})
_NAME_LABELS = frozenset({"name", "full name", "your name", "your full name", "fullname"})


def is_empty(value: object) -> bool:
    return value is None or (isinstance(value, (str, list, dict, tuple)) and len(value) == 0)


def coerce_value(value: Any) -> AnswerValue:
    """Keep JSON scalars as sent; lists become lists of strings; anything else compact JSON text."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [item if isinstance(item, str) else _text(item) for item in value if not is_empty(item)]
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def file_value(urls: Iterable[str]) -> AnswerValue:
    """One file is a URL string, several a list (README value rules)."""
    found = [u for u in urls if u]
    if len(found) == 1:
        return found[0]
    return found


def answer(key: str, label: str, type_: str, value: Any) -> Answer | None:
    """An Answer, or None when the provider sent the question as unanswered."""
    if is_empty(value):
        return None
    coerced = coerce_value(value)
    if is_empty(coerced):  # e.g. a list that held only nulls
        return None
    return Answer(key=str(key), label=str(label), type=str(type_).lower(), value=coerced)


def collect(answers: Iterable[Answer | None]) -> list[Answer]:
    return [a for a in answers if a is not None]


def is_email(value: object) -> bool:
    return isinstance(value, str) and bool(_EMAIL.match(value.strip()))


def pick_email(respondent_email: object, answers: Iterable[Answer]) -> str | None:
    """Provider's respondent e-mail, else first e-mail-typed answer, else first answer that is one."""
    if is_email(respondent_email):
        return str(respondent_email).strip()
    answers = list(answers)
    for a in answers:
        if "email" in a.type and is_email(a.value):
            return str(a.value).strip()
    for a in answers:
        if is_email(a.value):
            return str(a.value).strip()
    return None


def pick_name(answers: Iterable[Answer]) -> str | None:
    for a in answers:
        label = re.sub(r"[^a-z ]", "", a.label.lower()).strip()
        if isinstance(a.value, str) and (a.type in _NAME_TYPES or label in _NAME_LABELS):
            return a.value.strip() or None
    return None


# A run of 19 ASCII digits, found by mapping every digit to "0" and searching for the run: two
# C passes over the body, ~6 us for a 5 KB Typeform body against ~80 us for re's `\d{19}`,
# which restarts its match at every digit.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 19


def has_long_digit_run(body: bytes) -> bool:
    return _LONG_DIGIT_RUN in body.translate(_DIGITS_TO_ZERO)


def parse_json_object(body: bytes) -> dict[str, Any]:
    # orjson parses a typical webhook ~4x faster than json, and this runs on the request path
    # (envelope). Anything it refuses (not UTF-8, NaN, broken JSON) goes through json, so what
    # is accepted and every error message stay json's; so does a body with a 19-digit run,
    # since some orjson versions turn integers beyond 64 bits (or below -2**63) into rounded floats.
    if has_long_digit_run(body):
        data = _parse_with_json(body)
    else:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = _parse_with_json(body)
    if not isinstance(data, dict):
        raise UnsupportedPayload(f"JSON body is {type(data).__name__}, expected an object")
    return data


def _parse_with_json(body: bytes) -> Any:
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise UnsupportedPayload("body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UnsupportedPayload(f"body is not valid JSON ({exc.msg} at position {exc.pos})") from None
    return data


def obj(container: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    """`container[key]` as an object, or UnsupportedPayload naming the path."""
    value = container.get(key)
    if not isinstance(value, dict):
        raise UnsupportedPayload(f"{where}.{key} is missing or not an object")
    return value


def maybe_obj(container: Mapping[str, Any], key: str) -> dict[str, Any]:
    """`container[key]` when it is an object, else empty: for optional parts of a payload."""
    value = container.get(key)
    return value if isinstance(value, dict) else {}


def items(container: Mapping[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    """`container[key]` as a list of objects (missing = empty), or UnsupportedPayload."""
    value = container.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise UnsupportedPayload(f"{where}.{key} is not a list of objects")
    return value


def text(container: Mapping[str, Any], key: str, where: str) -> str:
    value = container.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise UnsupportedPayload(f"{where}.{key} is missing or not a string")
    return value


def optional_text(container: Mapping[str, Any], key: str) -> str | None:
    value = container.get(key)
    return value if isinstance(value, str) and value else None


def instant(value: object, where: str, fallback: datetime) -> datetime:
    """The provider's time, or `fallback` (receive time) when it sent none."""
    if value is None or value == "":
        return fallback
    if not isinstance(value, str):
        raise UnsupportedPayload(f"{where} is not an ISO 8601 string")
    try:
        return parse_instant(value)
    except ValueError:
        raise UnsupportedPayload(f"{where} is not an ISO 8601 instant: {value[:40]!r}") from None


def parse_form_urlencoded(body: bytes) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body, empty values kept; a repeated name keeps its last value."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise UnsupportedPayload("form body is not UTF-8 text (after percent-decoding)") from None
    return dict(pairs)


BODY_OBJECT_TYPES = frozenset({"application/json", "application/x-www-form-urlencoded"})
"""What `parse_body_object` reads: a connector using it accepts exactly these."""


def parse_body_object(request: InboundRequest) -> dict[str, Any]:
    """The body as an object, for providers that let the admin pick JSON or form encoding (WordPress add-ons)."""
    if request.media_type == "application/x-www-form-urlencoded":
        return dict(parse_form_urlencoded(request.body))
    return parse_json_object(request.body)


def multipart_pairs(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """The text fields of a multipart/form-data body, in order (python-multipart does the parsing).

    File parts are dropped: a webhook's uploads come as URLs in text fields, never as bytes.
    """
    media, params = parse_options_header(content_type)
    if not params.get(b"boundary"):
        raise UnsupportedPayload("multipart body without a boundary in its Content-Type")
    pairs: list[tuple[str, str]] = []

    def on_field(field: MultipartField) -> None:
        if field.field_name is not None:
            pairs.append((field.field_name.decode("utf-8"), (field.value or b"").decode("utf-8")))

    try:
        parser = FormParser(media.decode("latin-1"), on_field, lambda _file: None, boundary=params[b"boundary"])
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise UnsupportedPayload(f"malformed multipart body ({exc})") from None
    except UnicodeDecodeError:
        raise UnsupportedPayload("a multipart field is not UTF-8 text") from None
    return pairs
