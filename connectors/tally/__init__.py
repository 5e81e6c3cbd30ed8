"""Tally webhooks (`FORM_RESPONSE`); the reconciler over Tally's submissions API is in api.py.

Sources: Tally's docs (https://tally.so/help/webhooks, webhook API:
https://developers.tally.so/api-reference/endpoint/webhooks/post; option-id values and CHECKBOXES
sub-fields observed in receiver code); answer rules from tests/fixtures/providers/README.md ("tally" row).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from connectors import _answers
from connectors._schemes import BodyHmacEvents, EventKeys
from connectors.base import Connector, InboundRequest, NormalizeContext, SourceSettings
from connectors.reconciling import Reconciler
from connectors.tally.api import SUBMITTED, TallyReconciler
from hub.submission import Answer, Submission, iso_utc

_SUBMITTED = SUBMITTED
_ONE_OPTION = frozenset({"MULTIPLE_CHOICE", "DROPDOWN"})
_MANY_OPTIONS = frozenset({"CHECKBOXES", "MULTI_SELECT", "RANKING"})
_FILES = frozenset({"FILE_UPLOAD", "SIGNATURE"})


def _field_value(field: dict[str, Any]) -> Any:
    type_ = _answers.key(field.get("type"))
    value = field.get("value")
    if type_ in _ONE_OPTION or type_ in _MANY_OPTIONS:
        options = {
            _answers.key(o.get("id")): o.get("text") for o in _answers.items(field, "options", "field")
        }
        chosen = value if isinstance(value, list) else [value]
        # An id missing from options[] is kept as sent rather than dropped.
        labels = [options.get(v, v) if isinstance(v, str) else v for v in chosen if not _answers.is_empty(v)]
        if type_ in _ONE_OPTION and len(labels) == 1:
            return labels[0]
        return labels
    if type_ in _FILES and isinstance(value, list):
        return _answers.file_value(f.get("url", "") for f in value if isinstance(f, dict))
    return value


def _collect_answers(fields: list[dict[str, Any]]) -> list[Answer]:
    out: list[Answer | None] = []
    checkbox_parents: list[str] = []
    for field in fields:
        key = str(field.get("key") or "")
        # A CHECKBOXES question is followed by one boolean per option (`<parent>_<option id>`):
        # the parent already carries the selection.
        if field.get("type") == "CHECKBOXES" and any(key.startswith(p + "_") for p in checkbox_parents):
            continue
        if field.get("type") == "CHECKBOXES":
            checkbox_parents.append(key)
        label = field.get("label") or key
        out.append(
            _answers.answer(key or label, label, str(field.get("type") or "unknown"), _field_value(field))
        )
    return _answers.collect(out)


class TallyConnector(BodyHmacEvents, Connector):
    provider = "tally"
    title = "Tally"
    scheme = "tally-hmac-sha256"
    signature_header = "tally-signature"
    stored_headers = frozenset({signature_header})
    # A submission's `data.responseId` is the API's submission `id` (the eventId is the delivery's).
    event_keys = EventKeys(
        event_id="eventId", event_type="eventType", payload="data", form_id="formId", response_id="responseId"
    )
    submitted = _SUBMITTED
    reconciler: ClassVar[Reconciler | None] = TallyReconciler()

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        body = _answers.parse_json_object(request.body)
        data = _answers.obj(body, "data", "body")
        fields = _answers.items(data, "fields", "data")
        answers = _collect_answers(fields)
        hidden = {
            str(f.get("label") or f.get("key")): f["value"]
            for f in fields
            if f.get("type") == "HIDDEN_FIELDS" and not _answers.is_empty(f.get("value"))
        }
        metadata = {
            k: data[k] for k in ("responseId", "submissionId", "respondentId") if data.get(k) is not None
        }
        if body.get("createdAt"):
            metadata["event_created_at"] = body["createdAt"]
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=_answers.optional_text(data, "formId"),
            form_title=_answers.optional_text(data, "formName"),
            event_id=_answers.text(body, "eventId", "body"),
            submitted_at=_answers.instant(data.get("createdAt"), "data.createdAt", context.received_at),
            hidden=hidden,
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        at = iso_utc(datetime.fromtimestamp(now, UTC))
        response_id = secrets.token_urlsafe(4)[:6]
        options = [{"id": str(uuid.uuid4()), "text": t} for t in ("Keynote", "Workshop", "Party")]
        fields = [
            {"key": "question_name", "label": "Full name", "type": "INPUT_TEXT", "value": "Ada Lovelace"},
            {"key": "question_mail", "label": "Email", "type": "INPUT_EMAIL", "value": "ada@example.org"},
            {
                "key": "question_sess",
                "label": "Sessions",
                "type": "CHECKBOXES",
                "value": [options[0]["id"], options[2]["id"]],
                "options": options,
            },
            *(
                {
                    "key": f"question_sess_{o['id']}",
                    "label": f"Sessions ({o['text']})",
                    "type": "CHECKBOXES",
                    "value": o is not options[1],
                }
                for o in options
            ),
            {
                "key": "question_utms",
                "label": "utm_source",
                "type": "HIDDEN_FIELDS",
                "value": "hookhub-send-test",
            },
        ]
        payload = {
            "eventId": str(uuid.uuid4()),
            "eventType": _SUBMITTED,
            "createdAt": at,
            "data": {
                "responseId": response_id,
                "submissionId": response_id,
                "respondentId": secrets.token_urlsafe(4)[:6],
                "formId": "hhTest",
                "formName": "hookhub test form",
                "createdAt": at,
                "fields": fields,
            },
        }
        return self.signed_request(source, url, payload)


connector = TallyConnector()
