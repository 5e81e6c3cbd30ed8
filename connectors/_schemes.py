"""Signature schemes shared by several connectors.

Sources: the Standard Webhooks spec
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md) and the
test vector of its reference libraries (checked in tests/test_connector_contract.py);
tests/fixtures/providers/README.md, section "Schemes".

We implement Standard Webhooks ourselves instead of using the `standardwebhooks` package because
verification must take an injected clock (`now`: the edge passes its receive time, tests pass a
fixture's `received_at`), and that package reads the wall clock inside `verify`. The scheme is a
dozen lines, so owning it is cheaper than patching time.

Every comparison goes through `hmac.compare_digest` on bytes: comparing `str`s would raise on
non-ASCII header values, and `==` would leak timing.
"""

from __future__ import annotations

import abc
import base64
import binascii
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from connectors import _answers
from connectors._hashing import hmac_digest
from connectors.base import (
    Connector,
    Envelope,
    InboundRequest,
    NormalizeContext,
    SourceSettings,
    UnsupportedPayload,
    VerificationFailed,
    require_secrets,
)
from hub.submission import Answer, Submission

STANDARD_WEBHOOKS = "standard-webhooks"
_WHSEC_PREFIX = "whsec_"
PING = "hookhub.ping"
"""Type of hookhub's own signed connectivity test (Apps Script `sendPing`, generic senders)."""


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality that accepts any header text (non-ASCII included)."""
    a_bytes = a.encode("utf-8") if isinstance(a, str) else a
    b_bytes = b.encode("utf-8") if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)


def matches_any(candidates: Iterable[str | bytes], expected: Iterable[str | bytes]) -> bool:
    # Compare every pair without stopping early, so timing does not tell which secret is current.
    found = False
    expected = list(expected)
    for candidate in candidates:
        for value in expected:
            found |= equal(candidate, value)
    return found


MAX_TIMESTAMP_DIGITS = 19
"""Longest timestamp header accepted (epoch nanoseconds have 19 digits; seconds 10, milliseconds 13).
Bounded before `int()`, which is quadratic in the length and refuses more than 4,300 digits."""


def epoch_number(value: str, header: str) -> int:
    """A timestamp header's value (already stripped) as an int, or VerificationFailed (401) saying why."""
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_TIMESTAMP_DIGITS:
        raise VerificationFailed(f"invalid {header} header: expected at most {MAX_TIMESTAMP_DIGITS} digits")
    return int(value)


def verify_body_hmac_b64(
    request: InboundRequest, source: SourceSettings, header: str, prefix: str = ""
) -> None:
    """`<header>: <prefix>base64(HMAC-SHA256(secret, raw body))`, any configured secret (Typeform, Tally)."""
    secrets = require_secrets(source)
    received = request.header(header)
    if not received:
        raise VerificationFailed(f"missing {header.lower()} header")
    expected = (prefix + b64(hmac_digest(s.encode("utf-8"), request.body)) for s in secrets)
    if not matches_any([received.strip()], expected):
        raise VerificationFailed("signature mismatch")


# --- Standard Webhooks ---------------------------------------------------------------------------


def standard_webhooks_key(secret: str) -> bytes:
    encoded = secret.removeprefix(_WHSEC_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        # A configuration error, but the caller only learns that verification failed.
        raise VerificationFailed("configured secret is not a whsec_ base64 secret") from None


def _standard_webhooks_signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    signed = msg_id.encode("utf-8") + b"." + timestamp.encode("utf-8") + b"." + body
    return b64(hmac_digest(key, signed))


def sign_standard_webhooks(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three request headers (lower-case names) for a body sent with `secret`."""
    ts = str(int(timestamp))
    signature = _standard_webhooks_signature(standard_webhooks_key(secret), msg_id, ts, body)
    return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": f"v1,{signature}"}


def verify_standard_webhooks(
    request: InboundRequest, secrets: Sequence[str], tolerance: int, now: float
) -> None:
    if not secrets:
        raise VerificationFailed("source has no secret configured")
    headers = {}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        value = request.header(name)
        if not value:
            raise VerificationFailed(f"missing {name} header")
        headers[name] = value.strip()
    timestamp = headers["webhook-timestamp"]
    # Both directions: a far-future timestamp is as replayable as an old one.
    if abs(now - epoch_number(timestamp, "webhook-timestamp")) > tolerance:
        raise VerificationFailed("timestamp outside tolerance")
    received = [
        sig
        for version, _, sig in (part.partition(",") for part in headers["webhook-signature"].split())
        if version == "v1" and sig
    ]
    if not received:
        raise VerificationFailed("no v1 signature in webhook-signature header")
    expected = [
        _standard_webhooks_signature(standard_webhooks_key(s), headers["webhook-id"], timestamp, request.body)
        for s in secrets
    ]
    if not matches_any(received, expected):
        raise VerificationFailed("signature mismatch")


class StandardWebhooksVerification:
    """Mixin for connectors whose requests are signed the Standard Webhooks way."""

    scheme = STANDARD_WEBHOOKS
    stored_headers = frozenset({"webhook-id", "webhook-timestamp", "webhook-signature"})

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        verify_standard_webhooks(request, require_secrets(source), source.tolerance, now)


# --- Standard Webhooks messages: the spec's recommended `{type, timestamp, data}` body ---------------


def webhook_id(request: InboundRequest) -> str:
    """The Standard Webhooks message id: stable across the sender's retries, so the dedupe key."""
    value = (request.header("webhook-id") or "").strip()
    if not value:
        raise UnsupportedPayload("missing webhook-id header")
    return value


def typed_envelope(request: InboundRequest, submitted: str) -> Envelope:
    """Envelope of a `{type, timestamp, data}` body whose submission event type is `submitted`."""
    event_id = webhook_id(request)
    body = _answers.parse_json_object(request.body)
    data = _answers.maybe_obj(body, "data")
    form_id = _answers.optional_text(data, "form_id")
    event_type = body.get("type")
    if not isinstance(event_type, str):
        raise UnsupportedPayload('body.type is missing: expected {"type", "timestamp", "data"}')
    if event_type == submitted:
        if not isinstance(body.get("data"), dict):
            raise UnsupportedPayload("body.data is missing or not an object")
        return Envelope(event_id=event_id, form_id=form_id)
    if event_type == PING:
        return Envelope(event_id=event_id, kind="test", form_id=form_id, note="hookhub.ping test message")
    note = f"event type {event_type!r} is not {submitted!r}"
    return Envelope(event_id=event_id, kind="ignored", form_id=form_id, note=note)


class StandardWebhooksMessages(StandardWebhooksVerification, Connector):
    """A sender of hookhub's own design: Standard Webhooks signing, a `{type, timestamp, data}` body
    whose `data` holds form_id, submitted_at and respondent_email, and `webhook-id` as the event id."""

    submitted: ClassVar[str]
    """The `type` of a submission message."""
    kept_data: ClassVar[tuple[str, ...]]
    """Keys of `data` kept as metadata."""

    def envelope(self, request: InboundRequest) -> Envelope:
        return typed_envelope(request, self.submitted)

    @abc.abstractmethod
    def answers(self, data: dict[str, Any]) -> list[Answer]:
        """The answers in `data`, in the sender's order."""

    def form_title(self, data: dict[str, Any]) -> str | None:
        return _answers.optional_text(data, "form_title")

    def hidden(self, data: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        body = _answers.parse_json_object(request.body)
        data = _answers.obj(body, "data", "body")
        metadata = {k: data[k] for k in self.kept_data if data.get(k) is not None}
        if body.get("timestamp"):
            metadata["event_timestamp"] = body["timestamp"]
        return _answers.submission(
            self.provider,
            context,
            self.answers(data),
            form_id=_answers.optional_text(data, "form_id"),
            form_title=self.form_title(data),
            event_id=webhook_id(request),
            submitted_at=_answers.instant(data.get("submitted_at"), "data.submitted_at", context.received_at),
            respondent_email=data.get("respondent_email"),
            hidden=self.hidden(data),
            metadata=metadata,
        )


def signed_request(source: SourceSettings, url: str, now: float, msg_id: str, payload: Any) -> InboundRequest:
    """A send-test request signed with the source's first (current) secret."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    headers = {
        "content-type": "application/json",
        "user-agent": "hookhub-send-test",
        **sign_standard_webhooks(require_secrets(source)[0], msg_id, int(now), body),
    }
    return InboundRequest(method="POST", url=url, headers=headers, body=body)


# --- Body HMAC senders with typed events (Typeform, Tally) -----------------------------------------


class EventKeys(NamedTuple):
    """Where a `{<event_id>, <event_type>, <payload>: {<form_id>, ...}}` body keeps each part."""

    event_id: str
    event_type: str
    payload: str
    form_id: str
    response_id: str | None = None
    """Where the payload names the response (Envelope.response_id), if it does."""


class BodyHmacEvents:
    """Mixin for senders that sign `<signature_header>: <signature_prefix>base64(HMAC-SHA256(secret,
    raw body))` without a timestamp (so `now` and the tolerance do not apply) and post typed events."""

    signature_header: ClassVar[str]
    signature_prefix: ClassVar[str] = ""
    event_keys: ClassVar[EventKeys]
    submitted: ClassVar[str]
    """The event type of a submission."""
    notes: ClassVar[Mapping[str, str]] = {}
    """Why other known event types are ignored (a generic note for the rest)."""

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        verify_body_hmac_b64(request, source, self.signature_header, self.signature_prefix)

    def envelope(self, request: InboundRequest) -> Envelope:
        """A submission when the event type is `submitted`; else ignored, noted from `notes`."""
        keys = self.event_keys
        body = _answers.parse_json_object(request.body)
        event_id = _answers.text(body, keys.event_id, "body")
        payload = _answers.obj(body, keys.payload, "body")
        form_id = _answers.optional_text(payload, keys.form_id)
        event_type = body.get(keys.event_type)
        if event_type == self.submitted:
            # Read in the same pass as the rest: a second parse of the body cost ~7 us per request.
            response_id = _answers.optional_text(payload, keys.response_id) if keys.response_id else None
            return Envelope(event_id=event_id, form_id=form_id, response_id=response_id)
        generic = f"event type {event_type!r} is not a submission"
        note = self.notes.get(event_type, generic) if isinstance(event_type, str) else generic
        return Envelope(event_id=event_id, kind="ignored", form_id=form_id, note=note)

    def signed_request(self, source: SourceSettings, url: str, payload: Any) -> InboundRequest:
        """A send-test request signed with the source's first (current) secret."""
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        digest = hmac_digest(require_secrets(source)[0].encode("utf-8"), body)
        headers = {
            "content-type": "application/json",
            "user-agent": "hookhub-send-test",
            self.signature_header: self.signature_prefix + b64(digest),
        }
        return InboundRequest(method="POST", url=url, headers=headers, body=body)
