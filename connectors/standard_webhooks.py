"""Generic signed JSON: any sender that signs per Standard Webhooks and sends hookhub's canonical body.

Sources: the Standard Webhooks spec
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md; canonical
body is hookhub's design); answer rules from tests/fixtures/providers/README.md ("standard_webhooks" row).

Body: `{"type": "form.submission.created", "timestamp", "data": {form_id, form_name, submission_id,
submitted_at, respondent_email, answers: [{label, type, value, key?}], hidden?}}`. `hookhub.ping` is a
signed connectivity test.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from connectors import _answers
from connectors._schemes import StandardWebhooksMessages, signed_request
from connectors.base import InboundRequest, SourceSettings
from hub.submission import Answer, iso_utc

SUBMITTED = "form.submission.created"


class StandardWebhooksConnector(StandardWebhooksMessages):
    provider = "standard_webhooks"
    title = "Standard Webhooks (generic signed JSON)"
    submitted = SUBMITTED
    kept_data = ("submission_id",)

    def answers(self, data: dict[str, Any]) -> list[Answer]:
        return _answers.collect(
            _answers.answer(
                a.get("key") or a.get("id") or a.get("label") or f"answer_{i}",
                a.get("label") or a.get("key") or f"answer_{i}",
                a.get("type") or "unknown",
                a.get("value"),
            )
            for i, a in enumerate(_answers.items(data, "answers", "data"), start=1)
        )

    def form_title(self, data: dict[str, Any]) -> str | None:
        return _answers.optional_text(data, "form_name") or _answers.optional_text(data, "form_title")

    def hidden(self, data: dict[str, Any]) -> dict[str, Any] | None:
        return _answers.maybe_obj(data, "hidden")

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        at = datetime.fromtimestamp(now, UTC)
        payload = {
            "type": SUBMITTED,
            "timestamp": iso_utc(at),
            "data": {
                "form_id": "frm_hookhub_test",
                "form_name": "hookhub test form",
                "submission_id": "sub_" + secrets.token_urlsafe(12),
                "submitted_at": iso_utc(at.replace(microsecond=0)),
                "respondent_email": "ada@example.org",
                "answers": [
                    {"label": "Full name", "type": "name", "value": "Ada Lovelace"},
                    {"label": "Email", "type": "email", "value": "ada@example.org"},
                    {"label": "How many tickets?", "type": "number", "value": 2},
                    {"label": "Sessions", "type": "multi", "value": ["Keynote", "Party"]},
                ],
            },
        }
        return signed_request(source, url, now, "msg_" + uuid.uuid4().hex, payload)


connector = StandardWebhooksConnector()
