"""Normalization helpers shared by connectors.

Rules followed: tests/fixtures/providers/README.md, "How answers are normalised" and the
`expect.email` row of the file-format table.
"""

from __future__ import annotations

import json
import math
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

from connectors.base import InboundRequest, NormalizeContext, UnsupportedPayload
from hub.submission import Answer, AnswerValue, Submission, parse_instant

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


def pick_name(answers: Iterable[Answer], own_types: frozenset[str] = frozenset()) -> str | None:
    """The first answer of one of the provider's own name types (`own_types`), as sent; else the
    first one that looks like a name by its type or label, stripped."""
    answers = list(answers)
    for a in answers:
        if a.type in own_types and isinstance(a.value, str):
            return a.value
    for a in answers:
        label = re.sub(r"[^a-z ]", "", a.label.lower()).strip()
        if isinstance(a.value, str) and (a.type in _NAME_TYPES or label in _NAME_LABELS):
            return a.value.strip() or None
    return None


def submission(
    provider: str,
    context: NormalizeContext,
    answers: list[Answer],
    *,
    event_id: str,
    submitted_at: datetime,
    form_id: str | None = None,
    form_title: str | None = None,
    respondent_email: object = None,
    name: str | None = None,
    hidden: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Submission:
    """The Submission of `context`'s stored request: e-mail and name picked from `answers` (`pick_email`
    with the provider's `respondent_email`; `pick_name` unless the provider gave a `name`)."""
    return Submission(
        id=context.submission_id,
        source=context.source,
        provider=provider,
        form_id=form_id,
        form_title=form_title,
        event_id=event_id,
        submitted_at=submitted_at,
        email=pick_email(respondent_email, answers),
        name=name if name is not None else pick_name(answers),
        answers=answers,
        hidden={} if hidden is None else hidden,
        metadata={} if metadata is None else metadata,
    )


# A run of 19 ASCII digits, found by mapping every digit to "0" and searching for the run: two
# C passes over the body, ~6 us for a 5 KB Typeform body against ~80 us for re's `\d{19}`,
# which restarts its match at every digit.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 19

MAX_DEPTH = 100
"""Deepest nesting of objects and lists a JSON body or field may have. Real webhooks nest a few
levels; a deeper value could not be stored (pydantic stops serializing at ~255 levels) nor
printed (json.dumps recurses in C), so it is refused while parsing, with a message saying so."""


def has_long_digit_run(body: bytes) -> bool:
    return _LONG_DIGIT_RUN in body.translate(_DIGITS_TO_ZERO)


def _brackets(raw: bytes | str) -> int:
    return raw.count(b"[") + raw.count(b"{") if isinstance(raw, bytes) else raw.count("[") + raw.count("{")


def parse_json_object(body: bytes) -> dict[str, Any]:
    # orjson parses a typical webhook ~4x faster than json, and this runs on the request path
    # (envelope). Anything it refuses (not UTF-8, NaN, broken JSON, a number beyond a double)
    # goes through json, so what is accepted and every error message stay json's; so does a
    # body with a 19-digit run, since some orjson versions turn integers beyond 64 bits (or
    # below -2**63) into rounded floats. orjson refuses more than 1,024 levels of nesting (3.9.15
    # and later: pyproject asks for them; 3.9.0 overflowed the C stack on 200,000 nested brackets,
    # a segfault that ended the hub), and json then stops at the recursion limit.
    if has_long_digit_run(body):
        data = parse_json(body)
    else:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = parse_json(body)
        else:
            if _brackets(body) > MAX_DEPTH:
                _check_depth(data)
    if not isinstance(data, dict):
        raise UnsupportedPayload(f"JSON body is {type(data).__name__}, expected an object")
    return data


def parse_json(raw: bytes | str, what: str = "body") -> Any:
    """JSON `raw` (a body, or a field holding JSON text) by json's rules, with numbers kept as sent.

    An integer is exact (up to Python's limit, 4,300 digits) and any other number a float (rounded
    as floats are: 1e-999 is 0.0), except those a float cannot hold, which stay the text that
    was sent (a string): beyond a double's range (1e999 would be inf), the non-JSON
    NaN/Infinity/-Infinity (json accepts them), and an integer too long for Python. So no
    number turns into null or "inf" later, and 1e999 and 2e999 never become equal.
    UnsupportedPayload names what is wrong with anything else; `what` names `raw` in it.
    """
    try:
        data = json.loads(raw, parse_int=_int_or_text, parse_float=_float_or_text, parse_constant=str)
    except UnicodeDecodeError:
        raise UnsupportedPayload(f"{what} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UnsupportedPayload(f"{what} is not valid JSON ({exc.msg} at position {exc.pos})") from None
    except RecursionError:
        raise UnsupportedPayload(f"{what} is nested more than {MAX_DEPTH} levels deep") from None
    # Nesting needs brackets: a value with fewer than MAX_DEPTH of them (nearly all) needs no walk.
    if _brackets(raw) > MAX_DEPTH:
        _check_depth(data, what)
    return data


def _int_or_text(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:  # beyond sys.get_int_max_str_digits(); str() of such an int would raise too
        return text


def _float_or_text(text: str) -> float | str:
    value = float(text)
    return text if math.isinf(value) else value


def _check_depth(data: Any, what: str = "body") -> None:
    if not _depth_within(data, MAX_DEPTH):
        raise UnsupportedPayload(f"{what} is nested more than {MAX_DEPTH} levels deep")


def _depth_within(data: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return False
                stack.append((child, depth + 1))
    return True


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
    """`container[key]` as text, for ids: a string, or an integer's digits.

    A number with a fraction or exponent is refused: parsed, it is a float, rounded to ~16
    digits, so two different ids could become one (and one event be dropped as a duplicate of
    the other). A number no float can hold (1e999) is already the text that was sent.
    """
    value = container.get(key)
    if isinstance(value, float):
        raise UnsupportedPayload(
            f"{where}.{key} is a number with a fraction or exponent ({value!r}): expected text or an integer"
        )
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise UnsupportedPayload(f"{where}.{key} is missing or not a string")
    return value


def key(value: object) -> str | int | None:
    """`value` if it can name something (a field or option id, a type): text or an integer, else None.

    For payload values used as dict keys or set members: a list or an object there would raise
    TypeError (unhashable), and is no name anyway.
    """
    return value if isinstance(value, (str, int)) else None


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
    except (ValueError, OverflowError):  # OverflowError: 9999-12-31T23:59-01:00 is past year 9999 in UTC
        raise UnsupportedPayload(f"{where} is not an ISO 8601 instant: {value[:40]!r}") from None


def parse_form_urlencoded(body: bytes) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body, empty values kept; a repeated name keeps its last."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise UnsupportedPayload("form body is not UTF-8 text (after percent-decoding)") from None
    return dict(pairs)


BODY_OBJECT_TYPES = frozenset({"application/json", "application/x-www-form-urlencoded"})
"""What `parse_body_object` reads: a connector using it accepts exactly these."""


def parse_body_object(request: InboundRequest) -> dict[str, Any]:
    """The body as an object, for providers that let the admin pick JSON or form encoding (WordPress)."""
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
        parser = FormParser(
            media.decode("latin-1"), on_field, lambda _file: None, boundary=params[b"boundary"]
        )
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise UnsupportedPayload(f"malformed multipart body ({exc})") from None
    except UnicodeDecodeError:
        raise UnsupportedPayload("a multipart field is not UTF-8 text") from None
    return pairs
