"""Typeform webhooks (`form_response`).

Sources: Typeform's webhook documentation: example payload
(https://www.typeform.com/developers/webhooks/example-payload/), "secure your webhooks"
(https://www.typeform.com/developers/webhooks/secure-your-webhooks/), create-or-update webhook
(https://www.typeform.com/developers/webhooks/reference/create-or-update-webhook/); answer rules from
tests/fixtures/providers/README.md ("typeform" row). Reconciliation (listing a form's responses
through Typeform's API): connectors/typeform/api.py.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from connectors import _answers
from connectors._schemes import BodyHmacEvents, EventKeys
from connectors.base import Connector, InboundRequest, NormalizeContext, SourceSettings
from connectors.typeform.api import TypeformReconciler
from hub.spool.ids import new_id
from hub.submission import Answer, Submission, iso_utc

_SUBMITTED = "form_response"


def _answer_value(raw: dict[str, Any]) -> Any:
    kind = raw.get("type")
    value = raw.get(kind) if isinstance(kind, str) else None
    if kind == "choice" and isinstance(value, dict):
        return value.get("label") or value.get("other")
    if kind == "choices" and isinstance(value, dict):
        # Labels come in selection (ranking: rank) order; a free-text "other" goes last.
        labels = list(value.get("labels") or [])
        return labels + [value["other"]] if value.get("other") else labels
    if kind == "payment" and isinstance(value, dict):
        return value.get("amount")
    return value


_NOTES = {"form_response_partial": "partial response (form_response_partial), not a submission"}


class TypeformConnector(BodyHmacEvents, Connector):
    provider = "typeform"
    title = "Typeform"
    scheme = "typeform-hmac-sha256"
    signature_header = "typeform-signature"
    signature_prefix = "sha256="
    stored_headers = frozenset({signature_header})
    # The response id: the Responses API lists the same response under the same `token` (the
    # `event_id` is the delivery's, not the response's).
    event_keys = EventKeys(
        event_id="event_id",
        event_type="event_type",
        payload="form_response",
        form_id="form_id",
        response_id="token",
    )
    submitted = _SUBMITTED
    notes = _NOTES
    reconciler = TypeformReconciler()

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        body = _answers.parse_json_object(request.body)
        response = _answers.obj(body, "form_response", "body")
        definition = _answers.maybe_obj(response, "definition")
        fields = {
            _answers.key(f.get("id")): f
            for f in _answers.items(definition, "fields", "form_response.definition")
        }

        answers: list[Answer | None] = []
        for position, raw in enumerate(_answers.items(response, "answers", "form_response"), start=1):
            ref = _answers.maybe_obj(raw, "field")
            field = fields.get(_answers.key(ref.get("id"))) or {}
            key = ref.get("ref") or ref.get("id") or f"answer_{position}"
            label = field.get("title") or key
            type_ = ref.get("type") or field.get("type") or raw.get("type") or "unknown"
            answers.append(_answers.answer(key, label, type_, _answer_value(raw)))
        hidden = _answers.maybe_obj(response, "hidden")
        answers.extend(_answers.answer(name, name, "hidden", value) for name, value in hidden.items())
        collected = _answers.collect(answers)

        metadata: dict[str, Any] = {
            k: response[k] for k in ("token", "landed_at") if response.get(k) is not None
        }
        score = _answers.maybe_obj(response, "calculated").get("score")
        if score is not None:
            metadata["score"] = score
        variables = {
            v["key"]: v.get(str(v.get("type")))
            for v in _answers.items(response, "variables", "form_response")
            if isinstance(v.get("key"), str)
        }
        if variables:
            metadata["variables"] = variables
        ending = response.get("ending")
        if isinstance(ending, dict) and ending.get("ref"):
            metadata["ending"] = ending["ref"]

        return _answers.submission(
            self.provider,
            context,
            collected,
            form_id=_answers.optional_text(response, "form_id") or _answers.optional_text(definition, "id"),
            form_title=_answers.optional_text(definition, "title"),
            event_id=_answers.text(body, "event_id", "body"),
            submitted_at=_answers.instant(
                response.get("submitted_at"), "form_response.submitted_at", context.received_at
            ),
            hidden=dict(hidden),
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        at = datetime.fromtimestamp(now, UTC).replace(microsecond=0)
        form_id = "hookhubTest"
        fields = [
            {"id": "nameFld00001", "ref": "full_name", "type": "short_text", "title": "Full name"},
            {"id": "emailFld0001", "ref": "email", "type": "email", "title": "Email"},
            {"id": "ticketFld001", "ref": "tickets", "type": "number", "title": "How many tickets?"},
        ]
        answers = [
            {
                "type": "text",
                "text": "Ada Lovelace",
                "field": {"id": "nameFld00001", "type": "short_text", "ref": "full_name"},
            },
            {
                "type": "email",
                "email": "ada@example.org",
                "field": {"id": "emailFld0001", "type": "email", "ref": "email"},
            },
            {
                "type": "number",
                "number": 2,
                "field": {"id": "ticketFld001", "type": "number", "ref": "tickets"},
            },
        ]
        payload = {
            # Typeform event ids are ULIDs (time-ordered, unique per delivery), and so are the
            # samples': the spool's dedupe index then grows at its end as with real traffic
            # (random ids cost SQLite ~60 % more per stored row).
            "event_id": new_id(now),
            "event_type": _SUBMITTED,
            "form_response": {
                "form_id": form_id,
                "token": secrets.token_hex(16),
                "landed_at": iso_utc(at),
                "submitted_at": iso_utc(at),
                "hidden": {"utm_source": "hookhub-send-test"},
                "calculated": {"score": 0},
                "definition": {"id": form_id, "title": "hookhub test form", "fields": fields},
                "answers": answers,
            },
        }
        return self.signed_request(source, url, payload)


connector = TypeformConnector()
