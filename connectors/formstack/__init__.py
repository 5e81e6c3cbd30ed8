"""Formstack Forms webhooks (URL-encoded by default, or JSON); the reconciler over its API v2 is in api.py.

Sources: Formstack's developer docs (https://developers.formstack.com/docs/webhook-setup and the API
reference https://developers.formstack.com/reference/createwebhook-1):
developers.formstack.com/docs/webhook-setup and /docs/webhook-examples (body: field keys, `FormID`,
`UniqueID`, sub-fields as `key = value` lines when URL-encoded and objects when JSON, "include field type"
wrapping), the API's create-webhook parameters (`hmac_secret`, `content_type`, `include_field_type`) and,
from a secondary source only, `X-FS-Signature`; classic `HandshakeKey` echo [2nd]. Answer rules from
tests/fixtures/providers/README.md ("formstack" row).

Verification (`auth` option): `signature` (default) = `X-FS-Signature` holding HMAC-SHA256 of the raw body.
Its text format is unconfirmed (fixtures: `sha256=<hex>`), so `sha256=` is optional and hex or base64 are
both accepted: every form still needs the secret. `handshake-key` = the body's `HandshakeKey` field equals
the secret (classic webhooks); `url-token` = `?token=` in the webhook URL. Formstack sends no submission
time (the receive time is used) and no test events; dedupe key is `UniqueID`, which is also the response id.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlencode

from pydantic import BaseModel, ConfigDict, Field

from connectors import _answers
from connectors._hashing import hmac_digest
from connectors._schemes import b64, matches_any
from connectors._tokens import TOKEN_PARAM, verify_query_token, verify_token
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
from connectors.formstack.api import FormstackReconciler
from connectors.reconciling import Reconciler
from hub.submission import Submission

_SIGNATURE = "x-fs-signature"
_URLENCODED = "application/x-www-form-urlencoded"
_HANDSHAKE = "HandshakeKey"
_NOT_ANSWERS = frozenset({"FormID", "UniqueID", _HANDSHAKE})
_NAME_PARTS = ("prefix", "first", "middle", "initial", "last", "suffix")
_ADDRESS_PARTS = ("address", "address2", "city", "state", "zip", "country")
# Only these keys make a multi-line value a sub-field block, so free text with "a = b" lines stays text.
_SUB_KEYS = frozenset(_NAME_PARTS) | frozenset(_ADDRESS_PARTS) | {"field_type"}
_SUB_LINE = re.compile(r"^([A-Za-z0-9_]+) ?= ?(.*)$")


class FormstackOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auth: Literal["signature", "handshake-key", "url-token"] = Field(
        default="signature",
        description="signature: the X-FS-Signature HMAC (the webhook's HMAC secret); handshake-key: the"
        " body's HandshakeKey equals the secret (classic webhooks); url-token: ?token=<secret> in the URL.",
    )


def _options(source: SourceSettings) -> FormstackOptions:
    options = source.options
    return options if isinstance(options, FormstackOptions) else FormstackOptions()


def _fields(request: InboundRequest) -> dict[str, Any]:
    """The body as key → value, whichever of Formstack's two encodings it uses."""
    media = request.media_type
    if media == "application/json" or (media != _URLENCODED and request.body.lstrip()[:1] == b"{"):
        return _answers.parse_json_object(request.body)
    try:
        pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise UnsupportedPayload("body is not UTF-8 text (after percent-decoding)") from None
    fields: dict[str, Any] = {}
    for key, value in pairs:
        # A repeated key (multi-select) becomes a list in the order sent.
        if key in fields:
            previous = fields[key]
            fields[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[key] = value
    return fields


def _sub_fields(text: str) -> dict[str, str] | None:
    matches = [_SUB_LINE.match(line) for line in text.split("\n")]
    if not all(m and m.group(1) in _SUB_KEYS for m in matches):
        return None
    return {m.group(1): m.group(2).strip() for m in matches if m}


def _joined(parts: list[Any], sep: str) -> str:
    return sep.join(str(p).strip() for p in parts if not _answers.is_empty(p) and str(p).strip())


def _typed(raw: Any) -> tuple[str, Any]:
    """(type, value): unwraps "include field type", folds name/address sub-fields into one string."""
    type_ = "text"
    if isinstance(raw, dict) and "field_type" in raw:
        type_ = str(raw["field_type"])
        rest = {k: v for k, v in raw.items() if k != "field_type"}
        raw = rest["value"] if set(rest) == {"value"} else rest
    if isinstance(raw, str):
        raw = _sub_fields(raw) or raw
        if isinstance(raw, dict) and "field_type" in raw:
            type_ = raw.pop("field_type")
    if isinstance(raw, dict) and raw and set(raw) <= set(_NAME_PARTS):
        return (type_ if type_ != "text" else "name"), _joined([raw.get(k) for k in _NAME_PARTS], " ")
    if isinstance(raw, dict) and raw and set(raw) <= set(_ADDRESS_PARTS):
        state_zip = _joined([raw.get("state"), raw.get("zip")], " ")
        parts = [raw.get("address"), raw.get("address2"), raw.get("city"), state_zip, raw.get("country")]
        return (type_ if type_ != "text" else "address"), _joined(parts, ", ")
    return type_, raw  # as sent; other objects become compact JSON text in _answers.answer


def _event_id(fields: dict[str, Any]) -> str:
    if _answers.is_empty(fields.get("UniqueID")):
        raise UnsupportedPayload("no UniqueID field: not a Formstack submission webhook")
    return _answers.text(fields, "UniqueID", "body")


def _form_id(fields: dict[str, Any]) -> str | None:
    value = fields.get("FormID")
    return str(value) if isinstance(value, (str, int)) and value != "" else None


class FormstackConnector(Connector):
    provider = "formstack"
    title = "Formstack Forms"
    scheme = "formstack-hmac-sha256"
    stored_headers = frozenset({_SIGNATURE})
    content_types = frozenset({_URLENCODED, "application/json"})
    credential_query = frozenset({TOKEN_PARAM})
    Options = FormstackOptions
    reconciler: ClassVar[Reconciler | None] = FormstackReconciler()

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        # No scheme here carries a timestamp: `now` does not apply, dedupe on UniqueID stops replays.
        auth = _options(source).auth
        if auth == "url-token":
            return verify_query_token(request, source)
        if auth == "handshake-key":
            try:
                received = _fields(request).get(_HANDSHAKE)
            except UnsupportedPayload:
                received = None
            return verify_token(received if isinstance(received, str) else None, source, f"body {_HANDSHAKE}")
        secrets_ = require_secrets(source)
        received = (request.header(_SIGNATURE) or "").strip()
        if not received:
            raise VerificationFailed(f"missing {_SIGNATURE} header (is the webhook's HMAC secret set?)")
        if received[:7].lower() == "sha256=":
            received = received[7:]
        digests = [hmac_digest(s.encode("utf-8"), request.body) for s in secrets_]
        # `|`, not `or`: both comparisons always run.
        if not (
            matches_any([received.lower()], [d.hex() for d in digests])
            | matches_any([received], [b64(d) for d in digests])
        ):
            raise VerificationFailed("signature mismatch")

    def envelope(self, request: InboundRequest) -> Envelope:
        fields = _fields(request)
        # `UniqueID` is the submission's id, the API's submission `id`: the response id too.
        unique_id = _event_id(fields)
        return Envelope(event_id=unique_id, form_id=_form_id(fields), response_id=unique_id)

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        fields = _fields(request)
        event_id = _event_id(fields)
        answers = _answers.collect(
            _answers.answer(key, key, type_, value)
            for key, (type_, value) in ((k, _typed(v)) for k, v in fields.items() if k not in _NOT_ANSWERS)
        )
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=_form_id(fields),
            event_id=event_id,
            submitted_at=context.received_at,  # Formstack posts no submission time
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        secret = require_secrets(source)[0]
        auth = _options(source).auth
        payload: dict[str, Any] = {
            "FormID": "5000001",
            "Name": {"first": "Ada", "last": "Lovelace"},
            "Email": "ada@example.org",
            "How many tickets?": "2",
            "Address": {
                "address": "12 St James's Square",
                "city": "London",
                "zip": "SW1Y 4JH",
                "country": "United Kingdom",
            },
            "UniqueID": str(secrets.randbelow(9 * 10**9) + 10**9),  # 10 digits, fresh per sample
        }
        if auth == "handshake-key":
            payload[_HANDSHAKE] = secret
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {
            "content-type": "application/json",
            "user-agent": "FormstackWebhook/1.0 (hookhub-send-test)",
        }
        if auth == "signature":
            headers[_SIGNATURE] = "sha256=" + hmac_digest(secret.encode("utf-8"), body).hex()
        elif auth == "url-token":
            url = f"{url}{'&' if '?' in url else '?'}{urlencode({TOKEN_PARAM: secret})}"
        return InboundRequest(method="POST", url=url, headers=headers, body=body)


connector = FormstackConnector()
