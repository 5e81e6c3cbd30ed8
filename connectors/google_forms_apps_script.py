"""Google Forms through hookhub's Apps Script template (docs/providers/google_forms_apps_script.gs).

Sources: Apps Script's `FormResponse` reference (`onFormSubmit` → `UrlFetchApp`,
https://developers.google.com/apps-script/reference/forms/form-response; the body and the Standard
Webhooks signing are hookhub's design) and the Standard Webhooks spec
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md); answer
rules from tests/fixtures/providers/README.md ("google_forms_apps_script" row).

Body: `{"type": "form.response.submitted", "timestamp", "data": {form_id, form_title, response_id,
submitted_at, respondent_email, edit_response_url, items: [{item_id, title, type, response}]}}`;
`webhook-id` is the FormResponse id, so the script's retries dedupe; it is also the envelope's
`response_id`. No reconciler: the Forms API's `responseId` is not known to be the same string as
`FormResponse.getId()` (docs/providers/google_forms_apps_script.md, "Reconciliation").
"""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime
from typing import Any

from connectors import _answers
from connectors._schemes import StandardWebhooksMessages, signed_request
from connectors.base import Envelope, InboundRequest, SourceSettings
from hub.submission import Answer, iso_utc

SUBMITTED = "form.response.submitted"


def _item_answer(item: dict[str, Any]) -> Answer | None:
    title = item.get("title") or str(item.get("item_id", ""))
    type_ = str(item.get("type") or "unknown")
    value = item.get("response")
    if type_ == "FILE_UPLOAD" and isinstance(value, list):
        value = _answers.file_value(v for v in value if isinstance(v, str))
    return _answers.answer(str(item.get("item_id") or title), title, type_, value)


class GoogleFormsAppsScriptConnector(StandardWebhooksMessages):
    provider = "google_forms_apps_script"
    title = "Google Forms (Apps Script)"
    submitted = SUBMITTED
    kept_data = ("response_id", "edit_response_url")

    def envelope(self, request: InboundRequest) -> Envelope:
        envelope = super().envelope(request)
        if envelope.kind != "submission":
            return envelope
        # webhook-id is FormResponse.getId() (docs/providers/google_forms_apps_script.gs).
        return dataclasses.replace(envelope, response_id=envelope.event_id)

    def answers(self, data: dict[str, Any]) -> list[Answer]:
        return _answers.collect(_item_answer(item) for item in _answers.items(data, "items", "data"))

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        at = datetime.fromtimestamp(now, UTC)
        # FormResponse ids look like "2_ABaOnu..."; a fresh one per call keeps send-tests apart.
        response_id = "2_ABaOnu" + secrets.token_urlsafe(30)
        form_id = "1hookhubTestForm" + "x" * 28
        payload = {
            "type": SUBMITTED,
            "timestamp": iso_utc(at),
            "data": {
                "form_id": form_id,
                "form_title": "hookhub test form",
                "response_id": response_id,
                "submitted_at": iso_utc(at),
                "respondent_email": "ada@example.org",
                "edit_response_url": f"https://docs.google.com/forms/d/e/{form_id}/viewform?edit2={response_id}",
                "items": [
                    {"item_id": 100000001, "title": "Full name", "type": "TEXT", "response": "Ada Lovelace"},
                    {
                        "item_id": 100000002,
                        "title": "Sessions",
                        "type": "CHECKBOX",
                        "response": ["Keynote", "Party"],
                    },
                    {"item_id": 100000003, "title": "How would you rate it?", "type": "SCALE", "response": 5},
                ],
            },
        }
        return signed_request(source, url, now, response_id, payload)


connector = GoogleFormsAppsScriptConnector()
