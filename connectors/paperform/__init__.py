"""Paperform webhooks (new submissions; partial submissions are acknowledged and ignored); the reconciler
over Paperform's submissions API is in api.py.

Sources: Paperform's help article (https://paperform.co/help/articles/how-to-use-webhooks/:
no signature, no custom headers, "Test" re-sends the latest submission; payload
ids observed in Activepieces' Paperform piece); the `trigger` key and the partial-submission body
(`submission_id: null`) are observed in Pipedream's Paperform sources (test events) and Paperform's
webhook API (`triggers: submission | partial_submission`). Answer rules from
tests/fixtures/providers/README.md ("paperform" row and the `url-token` scheme).

Paperform can neither sign nor add headers, so the webhook URL carries a secret `?token=` compared
in constant time (connectors/_tokens.py). Value encodings per question type are unconfirmed: values
are kept as sent, except uploads (objects with a `url`), which become their URL(s).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, ClassVar

from connectors import _answers
from connectors._tokens import UrlTokenVerification, url_with_token
from connectors.base import (
    Connector,
    Envelope,
    InboundRequest,
    NormalizeContext,
    SourceSettings,
    UnsupportedPayload,
    require_secrets,
    send_test_request,
)
from connectors.paperform.api import SUBMISSION, PaperformReconciler
from connectors.reconciling import Reconciler
from hub.submission import Answer, Submission

_SUBMISSION = SUBMISSION


def _body(request: InboundRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    body = _answers.parse_json_object(request.body)
    if not isinstance(body.get("data"), list):
        raise UnsupportedPayload("body.data is missing or not a list: not a Paperform webhook")
    return body, _answers.items(body, "data", "body")


def _urls(value: Any) -> list[str] | None:
    """URLs of upload-like values (an object with `url`, or a list of them); None for other values."""
    objects = value if isinstance(value, list) else [value]
    if not objects or not all(isinstance(o, dict) and isinstance(o.get("url"), str) for o in objects):
        return None
    return [o["url"] for o in objects]


def _answer(item: dict[str, Any]) -> Answer | None:
    key = str(item.get("custom_key") or item.get("key") or item.get("title") or "")
    label = str(item.get("title") or key)
    type_ = str(item.get("type") or "unknown")
    value = item.get("value")
    urls = _urls(value)
    if urls is not None:
        return _answers.answer(key, label, type_, _answers.file_value(urls))
    return _answers.answer(key, label, type_, value)


class PaperformConnector(UrlTokenVerification, Connector):
    provider = "paperform"
    title = "Paperform"
    reconciler: ClassVar[Reconciler | None] = PaperformReconciler()

    def envelope(self, request: InboundRequest) -> Envelope:
        body, _ = _body(request)
        form_id = _answers.optional_text(body, "form_id")
        trigger = body.get("trigger")
        submission_id = _answers.optional_text(body, "submission_id")
        if submission_id and trigger in (None, _SUBMISSION):
            # The "Test" button re-sends the latest submission: same id, so a duplicate. The
            # submission id is also the API's `id` of the submission (reconciliation's identity).
            return Envelope(event_id=submission_id, form_id=form_id, response_id=submission_id)
        # Partial submissions carry no submission_id (or trigger "partial_submission") and no id
        # per delivery: key each on its body, never on a submission id it might later share.
        return Envelope(
            event_id=f"sha256:{request.body_sha256()}",
            kind="ignored",
            form_id=form_id,
            note=(
                f"event trigger {trigger!r} is not a completed submission"
                if trigger is not None
                else "partial submission (no submission_id), not a completed submission"
            ),
        )

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        body, data = _body(request)
        answers = _answers.collect(_answer(item) for item in data)
        hidden = {a.label: a.value for a in answers if a.type == "hidden"}
        metadata = {k: body[k] for k in ("slug", "charge", "team_id") if body.get(k) is not None}
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=_answers.optional_text(body, "form_id"),
            event_id=_answers.text(body, "submission_id", "body"),
            # "YYYY-MM-DD HH:MM:SS" without a zone: read as UTC (unconfirmed, see the docs page).
            submitted_at=_answers.instant(body.get("created_at"), "created_at", context.received_at),
            hidden=hidden,
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        token = require_secrets(source)[0]
        form_id = "hookhubtestform000000000"
        data = [
            {
                "title": "Full name",
                "type": "text",
                "key": "nm001",
                "custom_key": None,
                "value": "Ada Lovelace",
            },
            {
                "title": "Email",
                "type": "email",
                "key": "em001",
                "custom_key": None,
                "value": "ada@example.org",
            },
            {
                "title": "Sessions",
                "type": "choices",
                "key": "se001",
                "custom_key": None,
                "value": ["Keynote", "Workshop"],
            },
            {"title": "Tickets", "type": "number", "key": "tk001", "custom_key": None, "value": 2},
            {
                "title": "utm_source",
                "type": "hidden",
                "key": "ut001",
                "custom_key": "utm_source",
                "value": "hookhub-send-test",
            },
        ]
        payload = {
            "data": data,
            "form_id": form_id,
            "slug": "hookhub-test",
            "submission_id": secrets.token_hex(12),  # Paperform ids are 24 hex digits
            "created_at": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "ip_address": "192.0.2.1",
            "charge": None,
            "trigger": _SUBMISSION,
        }
        return send_test_request(url_with_token(url, token), payload)


connector = PaperformConnector()
