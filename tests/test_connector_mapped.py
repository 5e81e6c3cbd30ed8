"""The `mapped` connector: a provider described in connectors.yaml instead of code.

It has no folder in tests/fixtures/providers (there is no one provider to capture), so this file is
its coverage: paths, both answer shapes, JSON / form / multipart bodies, every verification
mode, test and ignored events, payloads that do not fit the mapping, send-test samples,
configuration errors and warnings through `hookhub check`, and one hub on a real socket.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import sqlite3
import textwrap
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from pydantic import BaseModel

from connectors import get_connector
from connectors.base import InboundRequest, NormalizeContext, UnsupportedPayload, VerificationFailed
from connectors.mapped import MappedConnector
from connectors.mapped.conditions import compile_condition
from connectors.mapped.options import MappedOptions
from connectors.mapped.paths import compile_path
from hub.config.check import check_file
from hub.config.loader import load_config
from hub.submission import Submission
from tests.harness import start_hub

NOW = 1_795_183_408.0
RECEIVED = datetime.fromtimestamp(NOW, UTC)
URL = "https://hooks.example.com/hooks/my-form"
SECRET = "mapped-secret-current"
OLD_SECRET = "mapped-secret-old"

LIST_SHAPE: dict[str, Any] = {
    "verify": {
        "mode": "hmac",
        "header": "X-Signature",
        "algorithm": "sha256",
        "encoding": "hex",
        "prefix": "sha256=",
    },
    "event_id": "$.data.id",
    "form_id": "data.form.id",
    "form_title": "data.form.name",
    "submitted_at": "data.created_at",
    "email": "data.respondent.email",
    "answers": {"list": "data.fields", "key": "id", "label": "label", "value": "value", "type": "type"},
    "hidden": "data.hidden",
    "metadata": {"ip": "data.meta.ip", "first_tag": "data.tags[0]"},
    "test_when": "type == 'ping'",
    "ignore_when": ["type == 'submission.updated'", "data.draft"],
}

LIST_PAYLOAD: dict[str, Any] = {
    "type": "submission.created",
    "data": {
        "id": "evt_01HZY",
        "created_at": "2026-11-20T14:03:27.250Z",
        "form": {"id": "frm_42", "name": "Anmeldung Sommerfest"},
        "respondent": {"email": "renee@example.de"},
        "hidden": {"utm_source": "newsletter", "ref": ""},
        "meta": {"ip": "203.0.113.7"},
        "tags": ["vip", "early"],
        "fields": [
            {"id": "name", "label": "Full name", "type": "TEXT", "value": "Renée Müller-Lüdenscheidt"},
            {"id": "mail", "label": "Work email", "type": "email", "value": "work@example.de"},
            {"id": "tickets", "label": "How many tickets?", "type": "number", "value": 3},
            {"id": "price", "label": "Price", "type": "number", "value": 12.5},
            {"id": "veg", "label": "Vegetarian?", "type": "checkbox", "value": False},
            {"id": "sessions", "label": "Sessions", "type": "multi", "value": ["Keynote", None, "Party 🎉"]},
            {"id": "note", "label": "Notes", "type": "textarea", "value": 'Line 1\nLine "2" <b>'},
            {"id": "empty", "label": "Unanswered", "type": "text", "value": ""},
            {"id": "null", "label": "Null", "type": "text", "value": None},
            {"id": "nolist", "label": "Empty list", "type": "multi", "value": []},
            {"id": "addr", "label": "Address", "value": {"city": "Köln", "zip": "50667"}},
            {"id": "nolabel", "value": "x"},
            {"label": "Only a label", "value": "y"},
            {"id": "novalue", "label": "No value key"},
        ],
    },
}


@dataclass(frozen=True)
class Source:
    """connectors.base.SourceSettings for direct connector calls."""

    secrets: list[str]
    options: BaseModel
    tolerance: int = 300
    public_url: str | None = None


def setup(options: dict[str, Any], secrets: list[str] | None = None) -> tuple[MappedConnector, Source]:
    parsed = MappedOptions.model_validate(options)
    bound = get_connector("mapped").for_source(parsed)
    assert isinstance(bound, MappedConnector)
    return bound, Source(secrets=[SECRET] if secrets is None else secrets, options=parsed)


def context() -> NormalizeContext:
    return NormalizeContext(submission_id="sub_1", source="my-form", received_at=RECEIVED)


def json_request(payload: Any, headers: dict[str, str] | None = None, url: str = URL) -> InboundRequest:
    body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return InboundRequest("POST", url, {"content-type": "application/json", **(headers or {})}, body)


def form_request(
    pairs: list[tuple[str, str]], headers: dict[str, str] | None = None, url: str = URL
) -> InboundRequest:
    body = urlencode(pairs).encode("ascii")
    return InboundRequest(
        "POST", url, {"content-type": "application/x-www-form-urlencoded", **(headers or {})}, body
    )


def signed(
    request: InboundRequest,
    secret: str = SECRET,
    algo: str = "sha256",
    header: str = "x-signature",
    prefix: str = "sha256=",
    encode: Any = lambda d: d.hex(),
) -> InboundRequest:
    digest = hmac.new(secret.encode(), request.body, getattr(hashlib, algo)).digest()
    return dataclasses.replace(request, headers={**request.headers, header: prefix + encode(digest)})


def answers(submission: Submission) -> dict[str, tuple[str, str, Any]]:
    return {a.label: (a.key, a.type, a.value) for a in submission.answers}


def pass_verify(connector: MappedConnector, request: InboundRequest, source: Source) -> Submission:
    connector.verify(request, source, NOW)
    envelope = connector.envelope(request)
    assert envelope.kind == "submission", envelope.note
    submission = connector.normalize(request, context())
    assert submission.event_id == envelope.event_id and submission.form_id == envelope.form_id
    return submission


# --- paths and conditions ---------------------------------------------------------------------------

DOC = {"data": {"id": 7, "a.b": {"c": "dotted"}, "items": [{"v": "first"}, {"v": "last"}], "0": "zero"}}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data.id", 7),
        ("$.data.id", 7),
        ("  data.id ", 7),
        ("data.items[0].v", "first"),
        ("data.items.1.v", "last"),
        ("data.items[-1].v", "last"),
        ("$.data['a.b'].c", "dotted"),
        ('data["a.b"]["c"]', "dotted"),
        ("data[0]", "zero"),
        ("$", DOC),
        ("$['data'].id", 7),
    ],
)
def test_paths_resolve(path: str, expected: Any) -> None:
    assert compile_path(path).get(DOC) == expected


@pytest.mark.parametrize("path", ["data.nope", "data.items[2].v", "data.id.deeper", "data.items.x"])
def test_paths_that_do_not_resolve_are_missing_not_errors(path: str) -> None:
    from connectors.mapped import _MISSING

    assert compile_path(path).get(DOC) is _MISSING


def test_a_present_null_is_not_missing() -> None:
    # jmespath answers None for both; the connector tells them apart (see the comment in paths.py).
    from connectors.mapped import _MISSING

    assert compile_path("data.fields").get({"data": {"fields": None}}) is None
    assert compile_path("data.fields").get({"data": {}}) is _MISSING


@pytest.mark.parametrize("path", ["", "a..b", "a.", "$x", "a[x]", "a['b", "a[0", "[", "a]b"])
def test_bad_paths_are_rejected(path: str) -> None:
    with pytest.raises(ValueError):
        compile_path(path)


@pytest.mark.parametrize(
    ("condition", "payload", "matches"),
    [
        ("type == 'ping'", {"type": "ping"}, True),
        ('type == "ping"', {"type": "pong"}, False),
        ("type != 'form.submitted'", {"type": "form.submitted"}, False),
        ("type != 'form.submitted'", {}, True),  # missing is null
        ("test == true", {"test": True}, True),
        ("test == true", {"test": 1}, False),  # JSON types, not Python's True == 1
        ("test == true", {"test": "true"}, True),  # form fields are text
        ("test == 1", {"test": "1"}, True),
        ("n == 1", {"n": 1.0}, True),
        ("x == null", {}, True),
        ("data.test", {"data": {"test": True}}, True),
        ("data.test", {"data": {"test": ""}}, False),
        ("data.test", {"data": {}}, False),
        ("$.a[0] == 'x'", {"a": ["x"]}, True),
    ],
)
def test_conditions(condition: str, payload: Any, matches: bool) -> None:
    assert compile_condition(condition)(payload) is matches


@pytest.mark.parametrize("condition", ["type = 'ping'", "type == ping", "type > 3", "a == [1]", "== 'x'"])
def test_bad_conditions_are_rejected(condition: str) -> None:
    with pytest.raises(ValueError):
        compile_condition(condition)


# --- answers: list shape, object shape, bodies ------------------------------------------------------


def test_list_shape_json_with_every_value_rule() -> None:
    connector, source = setup(LIST_SHAPE)
    request = signed(json_request(LIST_PAYLOAD))
    submission = pass_verify(connector, request, source)

    assert submission.provider == "mapped" and submission.source == "my-form" and submission.id == "sub_1"
    assert submission.event_id == "evt_01HZY"
    assert submission.form_id == "frm_42" and submission.form_title == "Anmeldung Sommerfest"
    assert submission.submitted_at == datetime(2026, 11, 20, 14, 3, 27, 250000, tzinfo=UTC)
    assert submission.email == "renee@example.de"  # the configured respondent e-mail wins
    assert submission.name == "Renée Müller-Lüdenscheidt"
    assert answers(submission) == {
        "Full name": ("name", "text", "Renée Müller-Lüdenscheidt"),
        "Work email": ("mail", "email", "work@example.de"),
        "How many tickets?": ("tickets", "number", 3),
        "Price": ("price", "number", 12.5),
        "Vegetarian?": ("veg", "checkbox", False),
        "Sessions": ("sessions", "multi", ["Keynote", "Party 🎉"]),
        "Notes": ("note", "textarea", 'Line 1\nLine "2" <b>'),
        "Address": ("addr", "object", '{"city":"Köln","zip":"50667"}'),
        "nolabel": ("nolabel", "text", "x"),  # label defaults to the key
        "Only a label": ("Only a label", "text", "y"),  # key defaults to the label
        "utm_source": ("utm_source", "hidden", "newsletter"),
    }
    tickets = next(a for a in submission.answers if a.key == "tickets")
    assert type(tickets.value) is int
    assert submission.hidden == {"utm_source": "newsletter", "ref": ""}
    assert submission.metadata == {"ip": "203.0.113.7", "first_tag": "vip"}


def test_list_shape_position_keys_and_inferred_types() -> None:
    connector, source = setup(
        {"verify": {"mode": "none"}, "answers": {"list": "items", "label": "q", "value": "a"}}, secrets=[]
    )
    payload = {"items": [{"a": 1}, {"q": "Agree?", "a": True}, {"q": "Tags", "a": ["x", 2]}]}
    submission = pass_verify(connector, json_request(payload), source)
    assert [(a.key, a.label, a.type, a.value) for a in submission.answers] == [
        ("answer_1", "answer_1", "number", 1),
        ("Agree?", "Agree?", "boolean", True),
        ("Tags", "Tags", "list", ["x", "2"]),
    ]


def test_object_shape_with_exclude_and_email_from_answers() -> None:
    options = {
        "verify": {"mode": "none"},
        "event_id": "entry_id",
        "form_id": "form_id",
        "answers": {"object": "$", "exclude": ["form_id", "entry_id"]},
    }
    connector, source = setup(options, secrets=[])
    payload = {
        "form_id": 12,
        "entry_id": 345,
        "Your name": "Zoë",
        "contact": "zoe@example.org",
        "Colours": ["red", "grün"],
        "Count": 0,
        "Consent": True,
        "Comment": "",
        "Extra": None,
    }
    submission = pass_verify(connector, json_request(payload), source)
    assert submission.event_id == "345" and submission.form_id == "12"
    assert submission.email == "zoe@example.org"  # no e-mail path: the first answer that is an address
    assert submission.name == "Zoë"  # labelled "your name"
    assert submission.submitted_at == RECEIVED  # no time in the payload: receive time
    assert answers(submission) == {
        "Your name": ("Your name", "text", "Zoë"),
        "contact": ("contact", "text", "zoe@example.org"),
        "Colours": ("Colours", "list", ["red", "grün"]),
        "Count": ("Count", "number", 0),
        "Consent": ("Consent", "boolean", True),
    }


def test_object_shape_at_a_nested_path() -> None:
    connector, source = setup({"verify": {"mode": "none"}, "answers": {"object": "payload.data"}}, secrets=[])
    submission = pass_verify(connector, json_request({"payload": {"data": {"A": "1"}}, "other": 2}), source)
    assert answers(submission) == {"A": ("A", "text", "1")}


def test_form_encoded_body_with_repeated_fields_and_unicode() -> None:
    options = {
        "verify": {"mode": "token", "query": "key"},
        "body": "form",
        "event_id": "entry_id",
        "form_id": "form_id",
        "submitted_at": "ts",
        "answers": {"exclude": ["form_id", "entry_id", "ts"]},
    }
    connector, source = setup(options)
    request = form_request(
        [
            ("form_id", "7"),
            ("entry_id", "991"),
            ("ts", "1795183400"),
            ("name", "José Ñandú"),
            ("email", "jose@example.es"),
            ("colors[]", "rot"),
            ("colors[]", "grün"),
            ("topping", "a"),
            ("topping", "b"),
            ("only[]", "one"),
            ("qty", "3"),
            ("blank", ""),
            ("msg", "a+b & c=d ✓"),
        ],
        url=f"{URL}?key={quote(SECRET)}",
    )
    submission = pass_verify(connector, request, source)
    assert submission.event_id == "991" and submission.form_id == "7"
    assert submission.submitted_at == datetime.fromtimestamp(1795183400, UTC)
    assert submission.email == "jose@example.es"
    assert answers(submission) == {
        "name": ("name", "text", "José Ñandú"),
        "email": ("email", "text", "jose@example.es"),
        "colors": ("colors", "list", ["rot", "grün"]),
        "topping": ("topping", "list", ["a", "b"]),
        "only": ("only", "list", ["one"]),
        "qty": ("qty", "text", "3"),  # a form sends text: "3" stays "3"
        "msg": ("msg", "text", "a+b & c=d ✓"),
    }


def test_multipart_body() -> None:
    connector, source = setup({"verify": {"mode": "none"}, "event_id": "id"}, secrets=[])
    boundary = "----hookhubBoundary"
    parts = [("id", "m-1"), ("Name", "Łukasz"), ("pick", "x"), ("pick", "y")]
    body = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in parts
    )
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="upload"; filename="a.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nfile content\r\n--{boundary}--\r\n"
    )
    request = InboundRequest(
        "POST", URL, {"content-type": f"multipart/form-data; boundary={boundary}"}, body.encode("utf-8")
    )
    submission = pass_verify(connector, request, source)
    assert submission.event_id == "m-1"
    assert answers(submission) == {
        "id": ("id", "text", "m-1"),
        "Name": ("Name", "text", "Łukasz"),
        "pick": ("pick", "list", ["x", "y"]),
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1795183400, datetime.fromtimestamp(1795183400, UTC)),
        (1795183400123, datetime.fromtimestamp(1795183400.123, UTC)),
        ("1795183400", datetime.fromtimestamp(1795183400, UTC)),
        ("2026-11-20T15:03:27+01:00", datetime(2026, 11, 20, 14, 3, 27, tzinfo=UTC)),
        (None, RECEIVED),
        ("", RECEIVED),
    ],
)
def test_submitted_at_formats(value: Any, expected: datetime) -> None:
    connector, _ = setup({"verify": {"mode": "none"}, "submitted_at": "at"}, secrets=[])
    assert connector.normalize(json_request({"at": value}), context()).submitted_at == expected


def test_event_id_defaults_to_a_stable_body_hash() -> None:
    connector, source = setup({})
    request = signed(json_request({"a": "b"}), prefix="")
    expected = "sha256:" + hashlib.sha256(request.body).hexdigest()
    assert connector.envelope(request).event_id == expected
    assert pass_verify(connector, request, source).event_id == expected
    other = json_request({"a": "c"})
    assert connector.envelope(other).event_id != expected


def test_body_setting_limits_what_is_parsed() -> None:
    json_only, _ = setup({"body": "json"})
    with pytest.raises(UnsupportedPayload, match="configured for JSON"):
        json_only.envelope(form_request([("a", "b")]))
    form_only, _ = setup({"body": "form"})
    with pytest.raises(UnsupportedPayload, match="configured for form fields"):
        form_only.envelope(json_request({"a": "b"}))
    assert json_only.content_types == {"application/json"}
    assert form_only.content_types == {"application/x-www-form-urlencoded", "multipart/form-data"}


# --- test and ignored events ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"type": "ping"}, "test"),
        ({"type": "submission.updated"}, "ignored"),
        ({"draft": True}, "ignored"),
        ({"draft": False}, "submission"),
    ],
)
def test_test_and_ignored_events(change: dict[str, Any], kind: str) -> None:
    connector, _ = setup(LIST_SHAPE)
    payload = json.loads(json.dumps(LIST_PAYLOAD))
    if "type" in change:
        payload["type"] = change["type"]
    else:
        payload["data"].update(change)
    envelope = connector.envelope(json_request(payload))
    assert envelope.kind == kind
    assert envelope.event_id == "evt_01HZY" and envelope.form_id == "frm_42"
    assert (envelope.note is None) == (kind == "submission")


def test_test_event_without_id_or_answers_is_still_a_test() -> None:
    connector, _ = setup(LIST_SHAPE)
    request = json_request({"type": "ping"})
    envelope = connector.envelope(request)
    assert envelope.kind == "test" and envelope.note and "test_when" in envelope.note
    assert envelope.event_id == "sha256:" + hashlib.sha256(request.body).hexdigest()


def test_form_test_event() -> None:
    connector, _ = setup({"verify": {"mode": "none"}, "body": "form", "test_when": "test == 1"}, secrets=[])
    assert connector.envelope(form_request([("test", "1")])).kind == "test"
    assert connector.envelope(form_request([("test", "0"), ("a", "b")])).kind == "submission"


# --- payloads that do not fit the mapping -----------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"type": "x", "data": {"fields": []}}, r"event_id path \$\.data\.id is missing"),
        ({"data": {"id": "", "fields": []}}, r"event_id path \$\.data\.id is missing"),
        ({"data": {"id": {"x": 1}, "fields": []}}, r"event_id path \$\.data\.id is an object"),
        ({"data": {"id": True, "fields": []}}, r"event_id path \$\.data\.id is a boolean"),
        ({"data": {"id": "e1"}}, r"answers\.list path data\.fields is missing"),
        (
            {"data": {"id": "e1", "fields": {"a": 1}}},
            r"answers\.list path data\.fields is an object, expected a list",
        ),
        ({"data": ["not", "an", "object"]}, r"event_id path \$\.data\.id is missing"),
    ],
)
def test_missing_or_mistyped_required_paths_are_unsupported(payload: Any, reason: str) -> None:
    connector, _ = setup(LIST_SHAPE)
    request = json_request(payload)
    with pytest.raises(UnsupportedPayload, match=reason):
        connector.envelope(request)
    with pytest.raises(UnsupportedPayload, match=reason):
        connector.normalize(request, context())


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"data": {"id": "e1", "fields": ["text"]}}, r"data\.fields\[0\] is text, expected an object"),
        ({"data": {"id": "e1", "fields": [], "hidden": [1]}}, r"hidden path data\.hidden is a list"),
        (
            {"data": {"id": "e1", "fields": [], "created_at": "yesterday"}},
            r"submitted_at path data\.created_at",
        ),
        ({"data": {"id": "e1", "fields": [], "created_at": 10**20}}, r"submitted_at path data\.created_at"),
        ({"data": {"id": "e1", "fields": [], "created_at": [1]}}, r"submitted_at path data\.created_at"),
        ({"data": {"id": "e1", "fields": [], "form": {"id": [1]}}}, r"form_id path data\.form\.id is a list"),
    ],
)
def test_other_misfits_fail_normalization_with_the_path(payload: Any, reason: str) -> None:
    connector, _ = setup(LIST_SHAPE)
    with pytest.raises(UnsupportedPayload, match=reason):
        connector.normalize(json_request(payload), context())


def test_object_container_missing_or_mistyped() -> None:
    connector, _ = setup({"answers": {"object": "data.answers"}})
    with pytest.raises(UnsupportedPayload, match=r"answers\.object path data\.answers is missing"):
        connector.envelope(json_request({"data": {}}))
    with pytest.raises(
        UnsupportedPayload, match=r"answers\.object path data\.answers is a list, expected an object"
    ):
        connector.normalize(json_request({"data": {"answers": []}}), context())
    # null is "no answers", not a misfit
    assert connector.normalize(json_request({"data": {"answers": None}}), context()).answers == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b"\xff\xfe",
        b"null",
        b'"text"',
        b"{}",
        b'{"data": 3}',
        b'{"data": {"fields": 3}}',
        b'{"data": {"id": 1, "fields": [null, 3, []]}}',
        b'{"data": {"id": 1e400, "fields": []}}',
    ],
)
def test_never_raises_anything_but_unsupported_payload(body: bytes) -> None:
    def only_unsupported(connector: MappedConnector, request: InboundRequest) -> None:
        for call in (connector.envelope, lambda r: connector.normalize(r, context())):
            with contextlib.suppress(UnsupportedPayload):
                call(request)

    for options in (LIST_SHAPE, {}, {"answers": {"object": "data"}, "event_id": "data.id"}):
        only_unsupported(setup(options)[0], json_request(body))
    form_connector, _ = setup({"event_id": "id"})
    for raw in (b"%ff%fe=1", b"a=%zz", b"id=1&id=2"):
        request = InboundRequest("POST", URL, {"content-type": "application/x-www-form-urlencoded"}, raw)
        only_unsupported(form_connector, request)
    bad_multipart = InboundRequest("POST", URL, {"content-type": "multipart/form-data"}, b"--x\r\n")
    with pytest.raises(UnsupportedPayload, match="boundary"):
        form_connector.envelope(bad_multipart)


# --- verification -----------------------------------------------------------------------------------


HMAC_CASES = [
    ({"mode": "hmac"}, {}),  # defaults: X-Signature, sha256, hex, no prefix
    (
        {"mode": "hmac", "header": "X-Hub-Signature-256", "prefix": "sha256="},
        {"header": "x-hub-signature-256", "prefix": "sha256="},
    ),
    (
        {"mode": "hmac", "algorithm": "sha1", "encoding": "base64"},
        {"algo": "sha1", "encode": lambda d: base64.b64encode(d).decode()},
    ),
    (
        {"mode": "hmac", "algorithm": "sha512", "encoding": "base64url", "prefix": "v1="},
        {
            "algo": "sha512",
            "prefix": "v1=",
            "encode": lambda d: base64.urlsafe_b64encode(d).decode().rstrip("="),
        },
    ),
]


def _sign(request: InboundRequest, secret: str, how: dict[str, Any]) -> InboundRequest:
    return signed(
        request,
        secret,
        algo=how.get("algo", "sha256"),
        header=how.get("header", "x-signature"),
        prefix=how.get("prefix", ""),
        encode=how.get("encode", lambda d: d.hex()),
    )


@pytest.mark.parametrize(("verify", "how"), HMAC_CASES)
def test_hmac_valid_wrong_missing_tampered_rotated(verify: dict[str, Any], how: dict[str, Any]) -> None:
    connector, source = setup({"verify": verify}, secrets=[OLD_SECRET, SECRET])
    request = json_request({"a": "ü"})
    connector.verify(_sign(request, SECRET, how), source, NOW)
    connector.verify(_sign(request, OLD_SECRET, how), source, NOW)  # rotation: any listed secret
    with pytest.raises(VerificationFailed, match="mismatch"):
        connector.verify(_sign(request, "other-secret", how), source, NOW)
    tampered = dataclasses.replace(_sign(request, SECRET, how), body=request.body + b" ")
    with pytest.raises(VerificationFailed, match="mismatch"):
        connector.verify(tampered, source, NOW)
    with pytest.raises(VerificationFailed, match="missing"):
        connector.verify(request, source, NOW)
    with pytest.raises(VerificationFailed, match="no secret"):
        connector.verify(_sign(request, SECRET, how), dataclasses.replace(source, secrets=[]), NOW)


def test_hmac_details() -> None:
    connector, source = setup({"verify": {"mode": "hmac", "prefix": "sha256="}})
    request = json_request({"a": 1})
    digest = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    for value in (f"sha256={digest.upper()}", f"SHA256={digest}", f"  sha256={digest} "):
        connector.verify(
            dataclasses.replace(request, headers={**request.headers, "x-signature": value}), source, NOW
        )
    for value, reason in ((digest, "mismatch"), ("sha256=zz", "malformed"), ("sha256=ünï", "malformed")):
        bad = dataclasses.replace(request, headers={**request.headers, "x-signature": value})
        with pytest.raises(VerificationFailed, match=reason) as info:
            connector.verify(bad, source, NOW)
        assert digest not in str(info.value) and SECRET not in str(info.value)


def _token_cases() -> list[Any]:
    return [
        pytest.param(
            {"mode": "token"}, lambda t: ({"authorization": f"Bearer {t}"}, ""), id="default-bearer"
        ),
        pytest.param(
            {"mode": "token"}, lambda t: ({"authorization": f"bearer {t}"}, ""), id="bearer-any-case"
        ),
        pytest.param({"mode": "token", "header": "X-Token"}, lambda t: ({"x-token": t}, ""), id="header"),
        pytest.param(
            {"mode": "token", "header": "X-Api-Key", "prefix": "Token "},
            lambda t: ({"x-api-key": f"Token {t}"}, ""),
            id="header-prefix",
        ),
        pytest.param({"mode": "token", "query": "token"}, lambda t: ({}, f"?token={quote(t)}"), id="query"),
        pytest.param({"mode": "token", "query": "k"}, lambda t: ({}, f"?x=1&k={quote(t)}"), id="query-named"),
    ]


@pytest.mark.parametrize(("verify", "carry"), _token_cases())
def test_token_valid_wrong_missing_rotated(verify: dict[str, Any], carry: Any) -> None:
    connector, source = setup({"verify": verify}, secrets=[OLD_SECRET, SECRET])

    def request(token: str | None) -> InboundRequest:
        headers, query = carry(token) if token is not None else ({}, "")
        return json_request({"a": 1}, headers, URL + query)

    connector.verify(request(SECRET), source, NOW)
    connector.verify(request(OLD_SECRET), source, NOW)
    with pytest.raises(VerificationFailed, match="wrong token"):
        connector.verify(request("not-it"), source, NOW)
    with pytest.raises(VerificationFailed, match="missing token"):
        connector.verify(request(None), source, NOW)


def test_token_in_the_wrong_place_fails() -> None:
    connector, source = setup({"verify": {"mode": "token", "header": "X-Token"}})
    with pytest.raises(VerificationFailed, match="missing"):
        connector.verify(json_request({}, url=f"{URL}?token={SECRET}"), source, NOW)
    connector, source = setup({"verify": {"mode": "token"}})  # default needs the Bearer prefix
    with pytest.raises(VerificationFailed):
        connector.verify(json_request({}, {"authorization": SECRET}), source, NOW)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_valid_wrong_missing_rotated() -> None:
    connector, source = setup(
        {"verify": {"mode": "basic", "username": "forms"}}, secrets=[OLD_SECRET, SECRET]
    )
    connector.verify(json_request({}, _basic("forms", SECRET)), source, NOW)
    connector.verify(json_request({}, _basic("forms", OLD_SECRET)), source, NOW)
    connector.verify(
        json_request({}, {"authorization": _basic("forms", "pä:ss")["authorization"]}),
        dataclasses.replace(source, secrets=["pä:ss"]),
        NOW,
    )  # a colon in the password is kept
    for headers, reason in [
        (_basic("forms", "wrong"), "wrong username or password"),
        (_basic("other", SECRET), "wrong username or password"),
        ({}, "missing authorization"),
        ({"authorization": f"Bearer {SECRET}"}, "not Basic"),
        ({"authorization": "Basic !!!"}, "malformed"),
        ({"authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, "malformed"),
        ({"authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()}, "malformed"),
    ]:
        with pytest.raises(VerificationFailed, match=reason) as info:
            connector.verify(json_request({}, headers), source, NOW)
        assert SECRET not in str(info.value)


def test_none_accepts_anything_and_needs_no_secret() -> None:
    connector, source = setup({"verify": {"mode": "none"}}, secrets=[])
    connector.verify(json_request({}), source, NOW)
    connector.verify(json_request({}, {"x-signature": "junk"}), source, NOW)
    assert connector.requires_secret is False
    assert connector.needs_secret(source.options) is False
    assert connector.warnings(source.options) and "anyone" in connector.warnings(source.options)[0]


def test_bound_connector_redacts_the_configured_credential() -> None:
    header, _ = setup({"verify": {"mode": "token", "header": "X-Form-Token"}})
    assert header.credential_headers == {"x-form-token"} and header.credential_query == frozenset()
    query, _ = setup({"verify": {"mode": "token", "query": "k"}})
    assert query.credential_query == {"k"}
    hmac_, _ = setup({})
    assert hmac_.requires_secret and hmac_.warnings(hmac_.options) == []
    assert get_connector("mapped").for_source(hmac_.options) is not get_connector("mapped")


def test_unbound_connector_refuses_a_configured_source() -> None:
    """A hub that does not call `for_source` would read payloads with the default mapping: refuse instead."""
    connector, source = setup(LIST_SHAPE)
    request = signed(json_request(LIST_PAYLOAD))
    connector.verify(request, source, NOW)
    with pytest.raises(VerificationFailed, match="for_source"):
        get_connector("mapped").verify(request, source, NOW)


# --- send-test samples ------------------------------------------------------------------------------

SAMPLE_CONFIGS = [
    pytest.param({}, id="defaults"),
    pytest.param(LIST_SHAPE, id="list-hmac-prefix"),
    pytest.param(
        {
            "verify": {"mode": "token", "query": "key"},
            "body": "form",
            "event_id": "entry_id",
            "form_id": "form_id",
            "email": "email",
            "submitted_at": "ts",
            "test_when": "test == '1'",
            "ignore_when": "status != 'complete'",
            "answers": {"exclude": ["entry_id", "form_id", "ts", "status"]},
        },
        id="form-query-token",
    ),
    pytest.param(
        {
            "verify": {"mode": "basic", "username": "forms"},
            "event_id": "items[0].meta['event.id']",
            "answers": {"list": "items[0].answers", "label": "q.text", "value": "a"},
        },
        id="basic-nested",
    ),
    pytest.param(
        {
            "verify": {"mode": "token", "header": "X-Token"},
            "answers": {"object": "response.values"},
            "hidden": "response.hidden",
            "event_id": "response.id",
            "name": "response.who",
            "test_when": ["response.test", "kind == 'ping'"],
        },
        id="object-header-token",
    ),
    pytest.param(
        {"verify": {"mode": "none"}, "event_id": "id", "ignore_when": "event != 'created'"}, id="none"
    ),
]


@pytest.mark.parametrize("options", SAMPLE_CONFIGS)
def test_sample_request_verifies_and_normalizes(options: dict[str, Any]) -> None:
    connector, source = setup(options, secrets=[SECRET])
    request = connector.sample_request(source, "http://127.0.0.1:8000/hooks/my-form", NOW)
    assert request.media_type in connector.content_types
    assert all(name == name.lower() for name in request.headers)
    submission = pass_verify(connector, request, source)
    labels = {a.label: a.value for a in submission.answers}
    assert any(v == "Ada Lovelace" for v in labels.values()), labels
    assert submission.email == "ada@example.org"
    if connector.options.event_id:
        assert submission.event_id.startswith("hookhub-test-")
    if connector.requires_secret:
        wrong = connector.sample_request(dataclasses.replace(source, secrets=["other"]), URL, NOW)
        with pytest.raises(VerificationFailed):
            connector.verify(wrong, source, NOW)
    again = connector.sample_request(source, URL, NOW)
    assert connector.envelope(again).event_id != connector.envelope(request).event_id


def test_form_sample_is_form_encoded() -> None:
    options = {"verify": {"mode": "token", "query": "key"}, "body": "form", "answers": {}}
    connector, source = setup(options)
    request = connector.sample_request(source, "http://127.0.0.1:8000/hooks/f?x=1", NOW)
    assert request.media_type == "application/x-www-form-urlencoded"
    assert request.url.startswith("http://127.0.0.1:8000/hooks/f?x=1&key=")
    submission = connector.normalize(request, context())
    assert answers(submission)["tickets"] == ("tickets", "text", "2")
    assert answers(submission)["sessions"] == ("sessions", "list", ["Keynote", "Workshop"])


# --- configuration: `hookhub check` -----------------------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "connectors.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


FULL_CONFIG = """\
sources:
  my-form:
    provider: mapped
    secret:
      - ${OLD_SECRET}
      - ${MY_FORM_SECRET}
    verify:
      mode: hmac
      header: X-Signature
      algorithm: sha256
      encoding: hex
      prefix: "sha256="
    event_id: $.data.id
    form_id: data.form.id
    form_title: data.form.name
    submitted_at: data.created_at
    email: data.email
    answers:
      list: data.fields
      key: id
      label: label
      value: value
      type: type
    hidden: data.hidden
    test_when: "type == 'ping'"
  contact:
    provider: mapped
    secret: ${CONTACT_TOKEN}
    verify: {mode: token, query: token}
    body: form
    event_id: entry_id
    answers:
      exclude: [form_id, entry_id]
destinations:
  out: {type: file, path: out.jsonl}
routes:
  - {name: all, from: "*", to: [out]}
"""
ENV = {"OLD_SECRET": OLD_SECRET, "MY_FORM_SECRET": SECRET, "CONTACT_TOKEN": "contact-token-4f9a"}


def test_full_config_loads_and_checks_clean(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_CONFIG)
    config = load_config(path, ENV)
    options = config.sources["my-form"].options
    assert isinstance(options, MappedOptions)
    assert options.answers.list_ == "data.fields" and options.verify.prefix == "sha256="
    assert config.sources["my-form"].secrets == [OLD_SECRET, SECRET]
    assert check_file(path, ENV) == (0, f"{path}: OK — 2 sources, 1 destination, 1 route")


def test_typos_and_misfits_are_positioned(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          a:
            provider: mapped
            secret: s
            verify:
              mode: hmac
              algoritm: sha256
            evnt_id: data.id
            answers:
              list: data.fields
              valeu: value
          b:
            provider: mapped
            secret: s
            verify: {mode: token, query: token, algorithm: sha1}
            test_when: "data.type = 'ping'"
          c:
            provider: mapped
            secret: s
            verify: {mode: basic}
            answers: {list: items, label: q, value: v, object: x}
          d:
            provider: mapped
            secret: s
            verify: {mode: hmca}
            event_id: "data[x]"
            body: form
          e:
            provider: mapped
            body: form
            event_id: data.id
            answers: {list: items, label: q, value: v}
        """,
    )
    code, text = check_file(path, {})
    assert code == 1
    assert text.splitlines() == [
        (
            f"{path}:7:7: sources.a.verify.algoritm: unknown key 'algoritm' for provider mapped; "
            "did you mean 'algorithm'?"
        ),
        f"{path}:8:5: sources.a.evnt_id: unknown key 'evnt_id' for provider mapped; did you mean 'event_id'?",
        (
            f"{path}:11:7: sources.a.answers.valeu: unknown key 'valeu' for provider mapped; "
            "did you mean 'value'?"
        ),
        f"{path}:15:13: sources.b.verify: `algorithm` does not apply to mode token",
        (
            f"{path}:16:16: sources.b.test_when: invalid condition (PATH == VALUE, PATH != VALUE or PATH): "
            "compare with == or != only, e.g. data.type == 'ping'"
        ),
        (
            f"{path}:20:13: sources.c.verify: mode basic needs `username` "
            "(the password is the source's `secret`)"
        ),
        (
            f"{path}:21:14: sources.c.answers: use `list` (a list of answer objects) "
            "or `object` (one object), not both"
        ),
        f"{path}:25:20: sources.d.verify.mode: Input should be 'hmac', 'token', 'basic' or 'none'",
        (
            f"{path}:26:15: sources.d.event_id: bad [...] at character 5: "
            "use [0] for a list index or ['key'] for a key"
        ),
        # Whether a secret is missing is decided once the options are valid.
        (
            f"{path}:29:5: sources.e: body form: form fields are one flat object, "
            "so answers are `object: $` (the default)"
        ),
    ]


def test_form_body_needs_flat_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          f:
            provider: mapped
            secret: s
            body: form
            event_id: data.id
            email: "['e-mail']"
            form_id: "ids[0]"
            test_when: "meta.test == 1"
        """,
    )
    code, text = check_file(path, {})
    assert (code, text) == (
        1,
        (
            f"{path}:3:5: sources.f: body form: form fields are flat, "
            "so these paths must name one field: event_id, test_when"
        ),
    )


def test_mode_none_warns_and_needs_no_secret(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          open:
            provider: mapped
            verify: {mode: none}
        routes: []
        """,
    )
    code, text = check_file(path, {})
    assert code == 0
    assert text.splitlines()[1:] == [
        (
            f"warning: {path}:2:3: sources.open: verify.mode is none: anyone who learns this URL can post "
            "submissions to it; use hmac, token or basic if the sender supports any of them"
        ),
        (
            f"warning: {path}:2:3: sources.open: no route takes from this source: "
            "its submissions are stored, not delivered"
        ),
    ]


@pytest.mark.parametrize(
    "verify", ["{mode: hmac}", "{mode: token, header: X-Token}", "{mode: basic, username: u}"]
)
def test_other_modes_need_a_secret(tmp_path: Path, verify: str) -> None:
    path = write(tmp_path, f"sources:\n  s:\n    provider: mapped\n    verify: {verify}\n")
    code, text = check_file(path, {})
    assert (code, text) == (
        1,
        (
            f"{path}:2:3: sources.s.secret: missing required key 'secret' "
            "(provider mapped verifies requests with it)"
        ),
    )


def test_every_option_is_documented() -> None:
    from connectors.mapped.options import AnswersOptions, VerifyOptions

    for model in (MappedOptions, VerifyOptions, AnswersOptions):
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
    assert MappedOptions.model_config.get("extra") == "forbid"


# --- a real hub on a loopback socket ----------------------------------------------------------------


@pytest.fixture(scope="module")
def running_hub(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("mapped-hub")
    config = root / "connectors.yaml"
    config.write_text(FULL_CONFIG.replace("path: out.jsonl", f"path: {root / 'out.jsonl'}"), encoding="utf-8")
    # hub.runtime.prepare_sources binds each source's connector with for_source(options).
    hub_, server = start_hub(config, root / "data", environ=ENV)
    try:
        yield hub_, server
    finally:
        server.stop()


def _rows(hub_: Any, inbox_id: str) -> sqlite3.Row:
    conn = sqlite3.connect(hub_.spool_path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM inbox WHERE id = ?", (inbox_id,)).fetchone()
    finally:
        conn.close()


def _send(server: Any, source_id: str, request: InboundRequest, **overrides: Any) -> httpx.Response:
    query = request.url.split("?", 1)[1] if "?" in request.url else ""
    url = f"{server.url}/hooks/{source_id}" + (f"?{query}" if query else "")
    return httpx.post(
        overrides.get("url", url),
        content=overrides.get("content", request.body),
        headers=overrides.get("headers", dict(request.headers)),
        timeout=30,
    )


def test_through_a_real_hub(running_hub: Any) -> None:
    hub_, server = running_hub
    source = hub_.config.sources["my-form"]

    # A real-looking delivery, signed with the old secret (rotation), then its retry.
    body = json.dumps(LIST_PAYLOAD, ensure_ascii=False).encode("utf-8")
    digest = hmac.new(OLD_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "x-signature": f"sha256={digest}"}
    first = httpx.post(f"{server.url}/hooks/my-form", content=body, headers=headers, timeout=30)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "accepted"
    again = httpx.post(f"{server.url}/hooks/my-form", content=body, headers=headers, timeout=30)
    assert again.json() == {"status": "duplicate", "id": first.json()["id"]}
    row = _rows(hub_, first.json()["id"])
    assert row["event_id"] == "evt_01HZY" and row["kind"] == "submission" and row["provider"] == "mapped"
    assert row["body"] == body

    # What the pipeline makes of the stored row (with the source's connector).
    stored = InboundRequest(row["method"], row["url"], json.loads(row["headers"]), row["body"])
    submission = source.connector.normalize(stored, context())
    assert submission.event_id == "evt_01HZY"
    assert answers(submission)["Full name"][2] == "Renée Müller-Lüdenscheidt"

    # Wrong signature, no signature.
    bad = httpx.post(
        f"{server.url}/hooks/my-form",
        content=body,
        headers={**headers, "x-signature": "sha256=" + "0" * 64},
        timeout=30,
    )
    assert (bad.status_code, bad.json()["detail"]) == (401, "signature mismatch")
    bare = httpx.post(
        f"{server.url}/hooks/my-form", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert (bare.status_code, bare.json()["detail"]) == (401, "missing x-signature header")

    # The sender's test event is acknowledged as a test.
    ping = json.dumps({"type": "ping"}).encode()
    ping_sig = "sha256=" + hmac.new(SECRET.encode(), ping, hashlib.sha256).hexdigest()
    test = httpx.post(
        f"{server.url}/hooks/my-form",
        content=ping,
        headers={"content-type": "application/json", "x-signature": ping_sig},
        timeout=30,
    )
    assert test.status_code == 200 and test.json()["status"] == "test"

    # `hookhub send-test my-form` posts this sample.
    sample = source.connector.sample_request(source.config, f"{server.url}/hooks/my-form", time.time())
    response = _send(server, "my-form", sample)
    assert response.status_code == 200 and response.json()["status"] == "accepted", response.text


def test_form_source_with_query_token_through_a_real_hub(running_hub: Any) -> None:
    hub_, server = running_hub
    source = hub_.config.sources["contact"]
    form = urlencode(
        [("form_id", "5"), ("entry_id", "e-77"), ("Name", "Zoë"), ("topics[]", "a"), ("topics[]", "b")]
    ).encode()
    url = f"{server.url}/hooks/contact?token=contact-token-4f9a"
    ok = httpx.post(
        url, content=form, headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30
    )
    assert ok.status_code == 200 and ok.json()["status"] == "accepted", ok.text
    row = _rows(hub_, ok.json()["id"])
    assert row["event_id"] == "e-77"
    assert "contact-token-4f9a" not in row["url"]  # the token is never stored
    stored = InboundRequest(row["method"], row["url"], json.loads(row["headers"]), row["body"])
    assert answers(source.connector.normalize(stored, context())) == {
        "Name": ("Name", "text", "Zoë"),
        "topics": ("topics", "list", ["a", "b"]),
    }
    wrong = httpx.post(
        f"{server.url}/hooks/contact?token=nope",
        content=form,
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert wrong.status_code == 401
    as_json = httpx.post(url, content=b"{}", headers={"content-type": "application/json"}, timeout=30)
    assert as_json.status_code == 415  # body: form

    sample = source.connector.sample_request(source.config, f"{server.url}/hooks/contact", time.time())
    response = _send(server, "contact", sample)
    assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
