"""Fillout form webhooks.

Sources: Fillout's docs: https://www.fillout.com/help/api-reference/create-a-webhook
and .../get-all-submissions (the submission object: submissionId, submissionTime, questions[], calculations[],
urlParameters[], quiz, documents, scheduling, payments), fillout.com/help/webhook; the `{"submission": ...}`
wrapper is observed in receiver code (n8n community trigger), sibling `formId`/`formName` are unconfirmed;
answer rules from tests/fixtures/providers/README.md ("fillout" row).

Fillout documents no request signature, so the source's secret is a token in the webhook URL query
(`?token=...`, connectors/_tokens.py). Dedupe key: `submission.submissionId` (Fillout's test/resend
re-delivers the same id, so it is acknowledged as a duplicate).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from connectors import _answers
from connectors._tokens import TOKEN_PARAM, UrlTokenVerification
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
from hub.submission import Answer, Submission, iso_utc

# Parts of the submission object that are not questions but worth keeping for the admin.
_EXTRA_PARTS = ("quiz", "documents", "scheduling", "payments", "login")
_ADDRESS_PARTS = ("address", "address2", "city", "state", "zipCode", "zip", "postalCode", "country")


def _submission(body: dict[str, Any]) -> dict[str, Any]:
    submission = body.get("submission")
    if isinstance(submission, dict):
        return submission
    # Tolerate a bare submission object (the API's list-entry shape) as well as the wrapper.
    if "submissionId" in body and "questions" in body:
        return body
    raise UnsupportedPayload(
        'body.submission is missing: expected {"formId", "submission": {"submissionId", "questions", ...}}'
    )


def _value(type_: str, value: Any) -> Any:
    # Files (and anything else sent as [{url, filename}]) become their URL(s).
    if isinstance(value, list) and value and all(isinstance(v, dict) and "url" in v for v in value):
        return _answers.file_value(str(v.get("url") or "") for v in value)
    if isinstance(value, dict) and "url" in value and type_ in {"FileUpload", "Signature"}:
        return value.get("url")
    if type_ == "Address" and isinstance(value, dict):
        parts = [value.get(k) for k in _ADDRESS_PARTS]
        return ", ".join(str(p) for p in parts if not _answers.is_empty(p))
    return value  # as sent: numbers, booleans, lists of choices, YYYY-MM-DD dates


def _collect_answers(submission: dict[str, Any]) -> tuple[list[Answer], dict[str, Any]]:
    out: list[Answer | None] = []
    for i, q in enumerate(_answers.items(submission, "questions", "submission"), start=1):
        type_ = str(q.get("type") or "unknown")
        label = str(q.get("name") or q.get("id") or f"question_{i}")
        out.append(_answers.answer(q.get("id") or label, label, type_, _value(type_, q.get("value"))))
    hidden: dict[str, Any] = {}
    for p in _answers.items(submission, "urlParameters", "submission"):
        name = p.get("name") or p.get("id")
        if isinstance(name, str) and not _answers.is_empty(p.get("value")):
            hidden[name] = p["value"]
            out.append(_answers.answer(p.get("id") or name, name, "url_parameter", p["value"]))
    return _answers.collect(out), hidden


class FilloutConnector(UrlTokenVerification, Connector):
    provider = "fillout"
    title = "Fillout"

    def envelope(self, request: InboundRequest) -> Envelope:
        body = _answers.parse_json_object(request.body)
        submission = _submission(body)
        _answers.items(
            submission, "questions", "submission"
        )  # shape check, so a broken body is flagged on arrival
        return Envelope(
            event_id=_answers.text(submission, "submissionId", "submission"),
            form_id=_answers.optional_text(body, "formId"),
        )

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        body = _answers.parse_json_object(request.body)
        submission = _submission(body)
        answers, hidden = _collect_answers(submission)
        metadata: dict[str, Any] = {}
        calculations = {
            c["name"]: c.get("value")
            for c in _answers.items(submission, "calculations", "submission")
            if isinstance(c.get("name"), str) and not _answers.is_empty(c.get("value"))
        }
        if calculations:
            metadata["calculations"] = calculations
        if submission.get("lastUpdatedAt"):
            metadata["last_updated_at"] = submission["lastUpdatedAt"]
        metadata |= {k: submission[k] for k in _EXTRA_PARTS if not _answers.is_empty(submission.get(k))}
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=_answers.optional_text(body, "formId"),
            form_title=_answers.optional_text(body, "formName"),
            event_id=_answers.text(submission, "submissionId", "submission"),
            submitted_at=_answers.instant(
                submission.get("submissionTime"), "submission.submissionTime", context.received_at
            ),
            hidden=hidden,
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        token = require_secrets(source)[0]
        at = iso_utc(datetime.fromtimestamp(now, UTC).replace(microsecond=0))
        questions = [
            ("nameQ00001", "Full name", "ShortAnswer", "Ada Lovelace"),
            ("emailQ0001", "Email", "EmailInput", "ada@example.org"),
            ("ticketQ001", "How many tickets?", "NumberInput", 2),
            ("sessionQ01", "Sessions", "Checkboxes", ["Keynote", "Workshop"]),
            (
                "fileQ00001",
                "Upload",
                "FileUpload",
                [{"url": "https://example.org/hookhub-send-test.pdf", "filename": "hookhub-send-test.pdf"}],
            ),
        ]
        payload = {
            "formId": "hookhubTest1",
            "formName": "hookhub test form",
            "submission": {
                "submissionId": str(uuid.uuid4()),
                "submissionTime": at,
                "lastUpdatedAt": at,
                "questions": [{"id": i, "name": n, "type": t, "value": v} for i, n, t, v in questions],
                "calculations": [],
                "urlParameters": [{"id": "utm_source", "name": "utm_source", "value": "hookhub-send-test"}],
                "quiz": {},
                "documents": [],
                "scheduling": [],
                "payments": [],
            },
        }
        signed_url = f"{url}{'&' if '?' in url else '?'}{urlencode({TOKEN_PARAM: token})}"
        return send_test_request(signed_url, payload)


connector = FilloutConnector()
