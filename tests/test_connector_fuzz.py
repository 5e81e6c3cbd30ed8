"""Property-based fuzz of every connector: hostile input raises only what each job declares.

`verify` may raise only VerificationFailed (the receiver answers 401; anything else was a 500 with a
traceback), `envelope` only UnsupportedPayload (the request is then stored on its body hash), and
`normalize` only UnsupportedPayload (a dead letter with the reason; anything else is a connector bug).
An envelope's dedupe key must be storable text, and a Submission must encode to JSON (as the pipeline
stores it) holding no number that turns into `null` or "inf" on its way out (connectors/_answers.py
`parse_json` says how numbers are kept).

Two kinds of input per connector: requests built from nothing (random bytes, text, JSON of random
shapes with huge numbers, NaN, lone surrogates, deep nesting; form and multipart fields; the
provider's own signature and timestamp headers with random and huge values), and the provider's real
requests (its fixtures and its send-test sample) with values in the body and headers replaced.

Reproducible by default: a fixed, derandomized run of FUZZ_EXAMPLES examples per connector and kind.
To look further, set HOOKHUB_FUZZ_EXAMPLES (e.g. 5000): more examples, drawn at random each run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from connectors import all_connectors
from connectors.base import (
    Connector,
    InboundRequest,
    NormalizeContext,
    UnsupportedPayload,
    VerificationFailed,
    dedupe_key,
)
from hub.submission import Submission, parse_instant
from tests.harness import PROVIDER_FIXTURES, load_fixture

NOW = 1_795_183_408.0
URL = "https://hooks.example.com/hooks/fuzz"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a whsec_ secret suits every scheme
_EXPLORE = os.environ.get("HOOKHUB_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(_EXPLORE or 100),
    derandomize=not _EXPLORE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

# A mapped source that reads most of what mapped can: HMAC, paths for every field, both answer
# shapes' list form, hidden fields, metadata, test/ignore conditions and epoch or ISO times.
MAPPED_OPTIONS = {
    "verify": {"mode": "hmac", "header": "X-Signature", "prefix": "sha256="},
    "event_id": "data.id",
    "form_id": "data.form.id",
    "form_title": "data.form.name",
    "submitted_at": "data.created",
    "email": "data.respondent.email",
    "name": "data.respondent.name",
    "answers": {"list": "data.fields", "key": "id", "label": "label", "value": "value", "type": "type"},
    "hidden": "data.hidden",
    "metadata": {"attempt": "meta.attempt", "tags": "meta.tags[0]"},
    "test_when": "type == 'ping'",
    "ignore_when": ["type == 'form.updated'", "data.partial == true"],
}


@dataclass(frozen=True)
class Source:
    secrets: list[str]
    tolerance: int = 300
    public_url: str | None = URL
    options: BaseModel = field(default_factory=BaseModel)


@dataclass(frozen=True)
class Case:
    """One connector set up for one source, with the real requests it knows."""

    connector: Connector
    source: Source
    requests: list[tuple[InboundRequest, float]]  # (request, the `now` it verifies at)
    header_names: tuple[str, ...]

    @property
    def provider(self) -> str:
        return self.connector.provider


def _fixture_request(fx: dict[str, Any]) -> InboundRequest:
    headers = {name.lower(): value for name, value in fx["headers"].items()}
    body = fx["body"].encode("utf-8")
    return InboundRequest(method=fx["method"], url=fx["url"], headers=headers, body=body)


def _case(connector: Connector) -> Case:
    fixtures = [load_fixture(p) for p in sorted(PROVIDER_FIXTURES.glob(f"{connector.provider}/*.json"))]
    config = next((fx["verify_config"] for fx in fixtures if fx.get("verify_config")), None)
    if connector.provider == "mapped":
        config = MAPPED_OPTIONS
    options = connector.Options.model_validate(config or {})
    source = Source(secrets=[SECRET], options=options)
    bound = connector.for_source(options)
    requests = [(_fixture_request(fx), parse_instant(fx["received_at"]).timestamp()) for fx in fixtures]
    with contextlib.suppress(VerificationFailed):  # a sample needs a key only an offline key set has
        requests.append((bound.sample_request(source, URL, NOW), NOW))
    names = {name for request, _ in requests for name in request.headers}
    names |= {"authorization", "webhook-id", "webhook-timestamp", "webhook-signature", "x-hookhub-token"}
    return Case(bound, source, requests, tuple(sorted(names)))


CASES = [_case(c) for c in all_connectors()]
by_case = pytest.mark.parametrize("case", CASES, ids=lambda c: c.provider)


# --- what every job may raise, and what a result must be ---------------------------------------


def _context() -> NormalizeContext:
    received_at = datetime.fromtimestamp(NOW, UTC)
    return NormalizeContext(submission_id="sub_fuzz", source="fuzz", received_at=received_at)


def check_request(case: Case, request: InboundRequest, now: float = NOW) -> None:
    with contextlib.suppress(VerificationFailed):
        case.connector.verify(request, case.source, now)
    try:
        envelope = case.connector.envelope(request)
    except UnsupportedPayload as exc:
        str(exc).encode("utf-8")  # the receiver stores it as the request's note
    else:
        assert envelope.kind in ("submission", "test", "ignored")
        key = dedupe_key(case.connector, envelope)
        key.encode("utf-8")  # SQLite stores it as UTF-8 text
        assert "\x00" not in key  # PostgreSQL's text cannot hold NUL
        (envelope.note or "").encode("utf-8")
    try:
        submission = case.connector.normalize(request, _context())
    except UnsupportedPayload as exc:
        assert str(exc).encode("utf-8")  # the dead letter's reason, stored in SQLite
    else:
        assert isinstance(submission, Submission)
        _assert_numbers_survive(submission.model_dump())
        _, text = submission.to_json()  # what the pipeline stores and sends: it must encode
        json.loads(text, parse_constant=_not_json)  # as standard JSON, without NaN or Infinity


def _not_json(constant: str) -> None:
    raise AssertionError(f"{constant} in a Submission's JSON")


def _assert_numbers_survive(value: Any) -> None:
    """No float that JSON cannot carry: pydantic would write it as null, json.dumps as NaN/Infinity."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            assert math.isfinite(item), f"non-finite number {item!r} in a Submission"
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


# --- strategies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text written as is: numbers json.dumps cannot write (1e999, NaN) and deep nesting."""

    text: str


def _nested(depth: int) -> str:
    return '{"a":' * depth + "[]" + "}" * depth


RAW_TOKENS = [
    "1e999",
    "2e999",
    "-1e999",
    "1E+400",
    "1e-999",
    "-4e-400",
    "NaN",
    "Infinity",
    "-Infinity",
    "1" * 4301,
    "-" + "9" * 5000,
    "1" * 400,
    "0." + "0" * 400 + "1",
    "123456789012345678901234567890",
    "0.1000000000000000000001",
    "9007199254740993",
    "-0",
    "-0.0",
    "1e308",
    "5e-324",
    "[" * 99 + "]" * 99,
    "[" * 100 + "]" * 100,
    "[" * 101 + "]" * 101,
    "[" * 3000 + "]" * 3000,
    _nested(300),
]
SURROGATE_TEXT = ["Ren\ud83d", "\udc00", "a\ud800b", "\ud83d\ude00", "\udfff\ud800"]
HUGE_DIGITS = ["9" * 20, "1" * 4301, "0" * 5000 + "1", "17951834080000000000000"]
TEXTS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(SURROGATE_TEXT),
    st.sampled_from(
        HUGE_DIGITS
        + [
            "",
            " ",
            "[",
            "[]",
            "[1e999]",
            '["a",',
            '[{"link":1e999}]',
            "2026-13-45",
            "2026-01-01T00:00:00Z",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00+01:00",
            "ada@example.org",
            "\x00",
            "q1_x",
        ]
    ),
    st.sampled_from(RAW_TOKENS[:12]),
    st.builds(lambda n: "[" * n + "]" * n, st.integers(0, 3000)),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXTS,
    st.sampled_from(RAW_TOKENS).map(Raw),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(TEXTS, inner, max_size=4),
    ),
    max_leaves=12,
)


def dump(value: Any) -> str:
    """JSON text of `value` with Raw tokens as they are and lone surrogates as \\uXXXX escapes."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8, as sent


def urlencoded(pairs: list[tuple[str, str]]) -> bytes:
    return "&".join(f"{quote_plus(_utf8(k))}={quote_plus(_utf8(v))}" for k, v in pairs).encode("ascii")


BOUNDARY = "fuzzBoundary7MA4YWxkTrZu0gW"


def multipart(pairs: list[tuple[str, str]]) -> bytes:
    parts = b"".join(
        b"--"
        + BOUNDARY.encode()
        + b'\r\nContent-Disposition: form-data; name="'
        + _utf8(k).replace(b'"', b"")
        + b'"\r\n\r\n'
        + _utf8(v)
        + b"\r\n"
        for k, v in pairs
    )
    return parts + b"--" + BOUNDARY.encode() + b"--\r\n"


FIELD_PAIRS = st.lists(st.tuples(TEXTS, TEXTS), max_size=6)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(_utf8),
    JSON_VALUES.map(lambda v: dump(v).encode("ascii")),
    st.dictionaries(TEXTS, JSON_VALUES, max_size=6).map(lambda v: dump(v).encode("ascii")),
    st.sampled_from(RAW_TOKENS).map(lambda t: t.encode("ascii")),
    FIELD_PAIRS.map(urlencoded),
    FIELD_PAIRS.map(multipart),
)
HEADER_VALUES = st.one_of(
    st.text(st.characters(max_codepoint=255), max_size=60),  # what latin-1 decoding can give
    st.sampled_from(
        HUGE_DIGITS
        + [
            "",
            "-1",
            "1e3",
            "v1,",
            "v1,AAAA",
            "sha256=",
            "Bearer ",
            "Bearer x.y.z",
            "Basic Og==",
            "Basic !!!",
            "\u00b2\u00b3",
            "1795183408",
            "1795183408000",
        ]
    ),
)


def _content_type(media: str) -> str:
    return f"{media}; boundary={BOUNDARY}" if media == "multipart/form-data" else media


@st.composite
def random_requests(draw: st.DrawFn, case: Case) -> InboundRequest:
    media = draw(st.sampled_from(sorted(case.connector.content_types)))
    names = draw(st.lists(st.sampled_from(case.header_names), max_size=5, unique=True))
    headers = {name: draw(HEADER_VALUES) for name in names}
    headers["content-type"] = _content_type(media)
    query = draw(st.sampled_from(["", f"?token={SECRET}", "?token=", "?token=" + "9" * 5000, "?x=1&token=a"]))
    return InboundRequest(method="POST", url=URL + query, headers=headers, body=draw(BODIES))


def _paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a parsed JSON value that a mutation can replace."""
    yield at
    children: Any = ()
    if isinstance(value, dict):
        children = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    for key, child in children:
        yield from _paths(child, (*at, key))


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_replaced(v, rest, new) if k == head else v) for k, v in value.items()}
    return [(_replaced(v, rest, new) if i == head else v) for i, v in enumerate(value)]


def mutate_json(draw: st.DrawFn, value: Any) -> Any:
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(value))
        path = draw(st.sampled_from(paths[1:] if len(paths) > 1 else paths))
        value = _replaced(value, path, draw(JSON_VALUES))
    return value


def mutate_text(draw: st.DrawFn, text: str) -> str:
    """A field's new text: random, or if it holds JSON (Jotform's rawRequest, Wufoo's structures), mutated."""
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError depends on the stack: never let it steer a draw
        parsed = None
    if isinstance(parsed, (dict, list)) and draw(st.booleans()):
        return dump(mutate_json(draw, parsed))
    return draw(TEXTS)


def mutate_body(draw: st.DrawFn, request: InboundRequest) -> bytes:
    media = request.media_type
    if media == "application/json":
        return dump(mutate_json(draw, json.loads(request.body))).encode("ascii")
    if media == "application/x-www-form-urlencoded":
        pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
    elif media == "multipart/form-data":
        from connectors._answers import multipart_pairs

        pairs = multipart_pairs(request.body, request.headers["content-type"])
    else:
        return draw(BODIES)
    for _ in range(draw(st.integers(1, 3))):
        if not pairs:
            break
        at = draw(st.integers(0, len(pairs) - 1))
        pairs[at] = (pairs[at][0], mutate_text(draw, pairs[at][1]))
    return urlencoded(pairs) if media == "application/x-www-form-urlencoded" else multipart(pairs)


@st.composite
def mutated_requests(draw: st.DrawFn, case: Case) -> tuple[InboundRequest, float]:
    request, now = draw(st.sampled_from(case.requests))
    headers = dict(request.headers)
    body = request.body
    if draw(st.integers(0, 4)):
        body = mutate_body(draw, request)
        if request.media_type == "multipart/form-data":  # rebuilt with a boundary of its own
            headers["content-type"] = _content_type("multipart/form-data")
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(headers)))
        headers[name] = draw(HEADER_VALUES)
    return replace(request, headers=headers, body=body), now


# --- the properties ------------------------------------------------------------------------------


def test_every_connector_is_fuzzed() -> None:
    from connectors import provider_ids

    assert sorted(c.provider for c in CASES) == sorted(provider_ids())
    assert all(case.requests for case in CASES), [c.provider for c in CASES if not c.requests]


@by_case
def test_real_requests_still_pass(case: Case) -> None:
    # The fuzz starts from requests the connector accepts: check that it does, or the mutations prove little.
    for request, now in case.requests:
        check_request(case, request, now)
    assert any(_normalizes(case, request) for request, _ in case.requests), case.provider


def _normalizes(case: Case, request: InboundRequest) -> bool:
    try:
        case.connector.normalize(request, _context())
    except UnsupportedPayload:
        return False
    return True


@by_case
def test_random_requests_raise_only_declared_exceptions(case: Case) -> None:
    @FUZZ
    @given(random_requests(case))
    def run(request: InboundRequest) -> None:
        check_request(case, request)

    run()


@by_case
def test_mutated_real_requests_verify_or_401_and_normalize_or_raise_declared(case: Case) -> None:
    @FUZZ
    @given(mutated_requests(case))
    def run(drawn: tuple[InboundRequest, float]) -> None:
        request, now = drawn
        check_request(case, request, now)

    run()
