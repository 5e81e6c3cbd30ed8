"""Numbers from requests: bounded before parsing, kept as sent when a float cannot hold them.

A numeric header of thousands of digits is a 401 (it was a 500: `int()` refuses more than 4,300
digits); a JSON number beyond a double (1e999), below it (1e-999) or not JSON at all (NaN) is kept
as the text that was sent, so it never becomes null or "inf", and two such ids never merge.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from connectors import _answers, get_connector
from connectors._hashing import hmac_digest
from connectors._schemes import b64, sign_standard_webhooks
from connectors.base import (
    Envelope,
    InboundRequest,
    NormalizeContext,
    UnsupportedPayload,
    VerificationFailed,
    dedupe_key,
)
from connectors.hubspot import sign_v3
from tests.harness import PROVIDER_FIXTURES, load_fixture, start_hub, wait_for

NOW = 1_795_183_408.0
URL = "https://hooks.example.com/hooks/numbers"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TYPEFORM = load_fixture(PROVIDER_FIXTURES / "typeform" / "minimal.json")
FIRST_DELIVERY = 180.0  # Prefect's ephemeral server starts with the session's first flow run


@dataclass(frozen=True)
class Source:
    secrets: list[str]
    tolerance: int = 300
    public_url: str | None = URL
    options: BaseModel = field(default_factory=BaseModel)


def _standard_webhooks(timestamp: str) -> InboundRequest:
    body = b'{"type": "form.submission.created", "data": {}}'
    headers = sign_standard_webhooks(WHSEC, "msg_1", int(NOW), body) | {"webhook-timestamp": timestamp}
    return InboundRequest("POST", URL, {"content-type": "application/json", **headers}, body)


def _webflow(timestamp: str) -> InboundRequest:
    headers = {
        "content-type": "application/json",
        "x-webflow-timestamp": timestamp,
        "x-webflow-signature": "ab",
    }
    return InboundRequest("POST", URL, headers, b"{}")


def _hubspot(timestamp: str) -> InboundRequest:
    signature = sign_v3(WHSEC, "POST", URL, b"{}", timestamp)
    headers = {
        "content-type": "application/json",
        "x-hubspot-request-timestamp": timestamp,
        "x-hubspot-signature-v3": signature,
    }
    return InboundRequest("POST", URL, headers, b"{}")


TIMESTAMPED = {
    "standard_webhooks": ("webhook-timestamp", _standard_webhooks),
    "google_forms_apps_script": ("webhook-timestamp", _standard_webhooks),
    "webflow": ("x-webflow-timestamp", _webflow),
    "hubspot": ("x-hubspot-request-timestamp", _hubspot),
}


@pytest.mark.parametrize("provider", sorted(TIMESTAMPED))
@pytest.mark.parametrize(
    "digits",
    ["9" * 20, "1" * 4301, "0" * 5000 + "1", "1" * 100_000],
    ids=["20-digits", "4301-digits", "5001-digits", "100000-digits"],
)
def test_a_timestamp_header_of_many_digits_is_a_401_with_a_reason(provider: str, digits: str) -> None:
    header, build = TIMESTAMPED[provider]
    connector = get_connector(provider)
    options = connector.Options.model_validate({})
    with pytest.raises(VerificationFailed, match=f"invalid {header} header: expected at most 19 digits"):
        connector.verify(build(digits), Source(secrets=[WHSEC], options=options), NOW)


def test_a_huge_webhook_timestamp_is_answered_401_by_a_running_hub(tmp_path: Path) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(
        f"sources:\n  generic:\n    provider: standard_webhooks\n    secret: {WHSEC}\n", encoding="utf-8"
    )
    _, server = start_hub(config, tmp_path / "data")
    try:
        request = _standard_webhooks("1" * 4301)
        answer = httpx.post(
            f"{server.url}/hooks/generic", content=request.body, headers=dict(request.headers)
        )
    finally:
        server.stop()
    assert answer.status_code == 401
    assert "invalid webhook-timestamp header" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e999", "1e999"),  # beyond a double: inf
        ("-1E+400", "-1E+400"),
        ("1e-999", 0.0),  # rounded, as floats are (orjson and json alike)
        ("0." + "0" * 400 + "1", 0.0),
        ("NaN", "NaN"),  # not JSON; json.loads accepts it, so do we
        ("-Infinity", "-Infinity"),
        ("1" * 4301, "1" * 4301),  # longer than Python turns into an int
        ("1" * 4300, int("1" * 4300)),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        ("0.1", 0.1),
        ("-0.0", -0.0),
        ("1e308", 1e308),
    ],
)
def test_numbers_a_float_cannot_hold_are_kept_as_their_text(text: str, expected: object) -> None:
    parsed = _answers.parse_json_object(f'{{"n": {text}, "list": [{text}]}}'.encode())
    assert parsed == {"n": expected, "list": [expected]}
    assert type(parsed["n"]) is type(expected)


def test_nesting_is_bounded_with_a_reason() -> None:
    assert _answers.parse_json_object(b'{"a":' + b"[" * 99 + b"]" * 99 + b"}")
    for depth in (100, 3000, 200_000):
        with pytest.raises(UnsupportedPayload, match="nested more than 100 levels deep"):
            _answers.parse_json_object(b'{"a":' + b"[" * depth + b"]" * depth + b"}")
    with pytest.raises(UnsupportedPayload, match="rawRequest is nested more than 100 levels deep"):
        _answers.parse_json("[" * 101 + "]" * 101, "rawRequest")


def _typeform(event_id: str, tickets: str) -> InboundRequest:
    fx = json.loads(TYPEFORM["body"])
    fields = fx["form_response"]["definition"]["fields"]
    fields.append({"id": "n1", "title": "How many tickets?", "type": "number"})
    fx["form_response"]["answers"].append({"type": "number", "number": "TICKETS", "field": {"id": "n1"}})
    fx["event_id"] = "EVENT_ID"
    # Two events of one response would be one submission (the spool dedupes on the response too).
    fx["form_response"]["token"] = f"token-{event_id}"
    body = json.dumps(fx).replace('"TICKETS"', tickets).replace('"EVENT_ID"', event_id).encode()
    signature = "sha256=" + b64(hmac_digest(TYPEFORM["secret"].encode(), body))
    headers = {"content-type": "application/json", "typeform-signature": signature}
    return InboundRequest("POST", URL, headers, body)


def test_ids_beyond_a_double_stay_distinct_and_float_ids_are_refused() -> None:
    typeform = get_connector("typeform")
    assert typeform.envelope(_typeform("1e999", "1")).event_id == "1e999"
    assert typeform.envelope(_typeform("2e999", "1")).event_id == "2e999"
    assert typeform.envelope(_typeform("12345678901234567890123", "1")).event_id == "12345678901234567890123"
    # Parsed, 0.1000000000000000001 and 0.1 are the same float: no id may rest on that.
    refused = r"body.event_id is a number with a fraction or exponent \(0.1\)"
    with pytest.raises(UnsupportedPayload, match=refused):
        typeform.envelope(_typeform("0.1000000000000000001", "1"))


def test_a_dedupe_key_with_a_lone_surrogate_is_storable_and_its_own() -> None:
    typeform = get_connector("typeform")
    first, second = (dedupe_key(typeform, Envelope(event_id=f"Ren{s}")) for s in ("\ud83d", "\ud83e"))
    assert first == "Ren\\ud83d" and second == "Ren\\ud83e"
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (k TEXT UNIQUE)")
    conn.executemany("INSERT INTO t VALUES (?)", [(first,), (second,)])
    assert dedupe_key(typeform, Envelope(event_id="Renée 😀")) == "Renée 😀"


def _hubspot_at(timestamp: object) -> dict:
    submission = {"conversion-id": "c", "form-id": "f", "timestamp": timestamp}
    return {"properties": {}, "form-submissions": [submission]}


@pytest.mark.parametrize(
    ("provider", "body", "reason"),
    [
        (
            "typeform",
            {"event_id": "e1", "form_response": {"submitted_at": "9999-12-31T23:59:59-23:59"}},
            "is not an ISO 8601 instant",
        ),
        (
            "standard_webhooks",
            {"type": "x", "data": {"submitted_at": "0001-01-01T00:00:00+01:00"}},
            "is not an ISO 8601 instant",
        ),
        ("hubspot", _hubspot_at(9 * 10**14), "not a time a computer calendar holds"),  # year ~30,000
        ("hubspot", _hubspot_at("1" * 5000), "not an epoch-milliseconds number"),
    ],
    ids=["typeform-past-9999", "standard-webhooks-before-1", "hubspot-year-30000", "hubspot-5000-digits"],
)
def test_times_out_of_a_calendar_are_unsupported_payloads(provider: str, body: dict, reason: str) -> None:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json", "webhook-id": "msg_1"}
    context = NormalizeContext(submission_id="s", source="x", received_at=datetime.fromtimestamp(NOW, UTC))
    with pytest.raises(UnsupportedPayload, match=reason):
        get_connector(provider).normalize(InboundRequest("POST", URL, headers, raw), context)


def _state(spool: Path, inbox_id: str) -> str | None:
    conn = sqlite3.connect(spool)
    try:
        row = conn.execute("SELECT state FROM inbox WHERE id=?", (inbox_id,)).fetchone()
    finally:
        conn.close()
    return row[0] if row else None


def test_events_1e999_and_2e999_are_both_stored_and_delivered_with_their_numbers(tmp_path: Path) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(
        f"""
sources:
  contact-form:
    provider: typeform
    secret: {TYPEFORM["secret"]}
destinations:
  lines:
    type: file
    path: deliveries.jsonl
routes:
  - name: everything
    from: ["*"]
    to: [lines]
""",
        encoding="utf-8",
    )
    hub, server = start_hub(config, tmp_path / "data", dispatch=True)
    try:
        ids = []
        for event_id, tickets in (("1e999", "1e999"), ("2e999", "NaN")):
            request = _typeform(event_id, tickets)
            answer = httpx.post(
                f"{server.url}/hooks/contact-form",
                content=request.body,
                headers=dict(request.headers),
                timeout=30,
            )
            assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text
            ids.append(answer.json()["id"])
        assert len(set(ids)) == 2
        for inbox_id in ids:
            wait_for(
                lambda i=inbox_id: _state(hub.spool_path, i) == "done",
                timeout=FIRST_DELIVERY,
                what="delivery to the file destination",
            )
    finally:
        server.stop()

    lines = [json.loads(line) for line in (tmp_path / "data" / "deliveries.jsonl").read_text().splitlines()]
    delivered = {line["event_id"]: line for line in lines}
    assert sorted(delivered) == ["1e999", "2e999"] and len(lines) == 2
    tickets = {
        event: {a["label"]: a["value"] for a in line["answers"]}["How many tickets?"]
        for event, line in delivered.items()
    }
    assert tickets == {"1e999": "1e999", "2e999": "NaN"}
