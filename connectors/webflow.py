"""Webflow webhooks (`form_submission` trigger, Data API v2 body).

Sources: Webflow's developer documentation:
https://developers.webflow.com/data/docs/working-with-webhooks (headers, example body, signature
over `{x-webflow-timestamp}:{raw body}`, 5-minute window), .../reference/webhooks/events/form-submission
(payload fields), .../v1.0.0/docs/verifying-webhook-signatures ("Webhooks created via a site's dashboard
or with a Site's API Key will not include request signatures"); answer rules from
tests/fixtures/providers/README.md ("webflow" row and the `webflow-hmac-sha256` scheme).

Because dashboard-made webhooks are unsigned, a source may set `auth: url-token` and carry a token in
the URL query instead (connectors/_tokens.py); the signed scheme stays the default.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict

from connectors import _answers
from connectors._hashing import hmac_digest
from connectors._schemes import epoch_number, matches_any
from connectors._tokens import TOKEN_PARAM, verify_query_token
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
from hub.submission import Submission, iso_utc

_SUBMITTED = "form_submission"
_TIMESTAMP = "x-webflow-timestamp"
_SIGNATURE = "x-webflow-signature"


class WebflowOptions(BaseModel):
    """`auth: signature` (default) for API/app webhooks; `auth: url-token` for dashboard webhooks."""

    model_config = ConfigDict(extra="forbid")

    auth: Literal["signature", "url-token"] = "signature"


def _options(source: SourceSettings) -> WebflowOptions:
    options = source.options
    return options if isinstance(options, WebflowOptions) else WebflowOptions()


def _signature(secret: str, timestamp: str, body: bytes) -> str:
    return hmac_digest(secret.encode("utf-8"), timestamp.encode("ascii") + b":" + body).hex()


def _verify_signature(request: InboundRequest, source: SourceSettings, now: float) -> None:
    secrets_ = require_secrets(source)
    signature = (request.header(_SIGNATURE) or "").strip()
    timestamp = (request.header(_TIMESTAMP) or "").strip()
    if not signature:
        raise VerificationFailed(f"missing {_SIGNATURE} header (dashboard webhooks are unsigned: see auth)")
    if not timestamp:
        raise VerificationFailed(f"missing {_TIMESTAMP} header")
    # Epoch milliseconds. Both directions: a far-future timestamp is as replayable as an old one.
    if abs(now * 1000 - epoch_number(timestamp, _TIMESTAMP)) > source.tolerance * 1000:
        raise VerificationFailed("timestamp outside tolerance")
    expected = [_signature(s, timestamp, request.body) for s in secrets_]
    # Webflow sends lower-case hex; lower() only forgives an upper-case re-encoding on the way.
    if not matches_any([signature.lower()], expected):
        raise VerificationFailed("signature mismatch")


def _payload(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    trigger = body.get("triggerType")
    if not isinstance(trigger, str):
        if "_id" in body or "d" in body:
            raise UnsupportedPayload(
                "legacy Webflow v1 webhook body (site, d, _id): recreate the webhook with the v2 Data API"
            )
        raise UnsupportedPayload('body.triggerType is missing: expected {"triggerType", "payload"}')
    return trigger, _answers.obj(body, "payload", "body")


class WebflowConnector(Connector):
    provider = "webflow"
    title = "Webflow"
    scheme = "webflow-hmac-sha256"
    stored_headers = frozenset({_SIGNATURE, _TIMESTAMP})
    credential_query = frozenset({TOKEN_PARAM})
    Options = WebflowOptions

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        if _options(source).auth == "url-token":
            verify_query_token(request, source)
        else:
            _verify_signature(request, source, now)

    def envelope(self, request: InboundRequest) -> Envelope:
        trigger, payload = _payload(_answers.parse_json_object(request.body))
        form_id = _answers.optional_text(payload, "formId")
        if trigger != _SUBMITTED:
            # Other triggers share the endpoint; their `payload.id` (if any) names an object that
            # changes many times (a CMS item), so the body hash is the only safe dedupe key.
            return Envelope(
                event_id=f"sha256:{request.body_sha256()}",
                kind="ignored",
                form_id=form_id,
                note=f"trigger type {trigger!r} is not {_SUBMITTED!r}",
            )
        event_id = _answers.text(payload, "id", "body.payload")
        _answers.obj(payload, "data", "body.payload")
        return Envelope(event_id=event_id, form_id=form_id)

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        trigger, payload = _payload(_answers.parse_json_object(request.body))
        if trigger != _SUBMITTED:
            raise UnsupportedPayload(f"trigger type {trigger!r} is not {_SUBMITTED!r}")
        data = _answers.obj(payload, "data", "body.payload")
        schema = {
            name: f
            for f in _answers.items(payload, "schema", "body.payload")
            if (name := _answers.key(f.get("fieldName")))
        }
        answers = _answers.collect(
            _answers.answer(
                schema.get(name, {}).get("fieldElementId") or name,
                name,
                schema.get(name, {}).get("fieldType") or "unknown",
                value,  # as sent: numbers stay numbers, checkboxes booleans
            )
            for name, value in data.items()
        )
        metadata = {k: payload[k] for k in ("siteId", "formElementId") if payload.get(k) is not None}
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=_answers.optional_text(payload, "formId"),
            form_title=_answers.optional_text(payload, "name"),
            event_id=_answers.text(payload, "id", "body.payload"),
            submitted_at=_answers.instant(
                payload.get("submittedAt"), "payload.submittedAt", context.received_at
            ),
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        secret = require_secrets(source)[0]
        fields = [
            ("Name", "FormTextInput", "Ada Lovelace"),
            ("Email", "FormTextInput", "ada@example.org"),
            ("Tickets", "FormTextInput", 2),
            ("Newsletter", "FormCheckboxInput", True),
        ]
        payload = {
            "triggerType": _SUBMITTED,
            "payload": {
                "name": "hookhub test form",
                "siteId": "hookhubtestsite000000000",
                "data": {name: value for name, _, value in fields},
                "schema": [
                    {"fieldName": name, "fieldType": type_, "fieldElementId": f"hookhub-test-field-{i}"}
                    for i, (name, type_, _) in enumerate(fields, start=1)
                ],
                "submittedAt": iso_utc(datetime.fromtimestamp(now, UTC)),
                # Webflow ids are 24 hex digits (MongoDB ObjectIds); fresh per submission.
                "id": secrets.token_hex(12),
                "formId": "hookhubtestform000000000",
                "formElementId": "hookhub-test-form",
            },
        }
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"content-type": "application/json", "user-agent": "hookhub-send-test"}
        if _options(source).auth == "url-token":
            url = f"{url}{'&' if '?' in url else '?'}{urlencode({TOKEN_PARAM: secret})}"
        else:
            timestamp = str(int(now * 1000))
            headers |= {_TIMESTAMP: timestamp, _SIGNATURE: _signature(secret, timestamp, body)}
        return InboundRequest(method="POST", url=url, headers=headers, body=body)


connector = WebflowConnector()
