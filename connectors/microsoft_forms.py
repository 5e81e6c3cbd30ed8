"""Microsoft Forms, pushed by hookhub's Power Automate flow (docs/providers/microsoft_forms.md).

Sources: the Microsoft Forms connector (trigger "When a new response is submitted", action "Get
response details",
https://learn.microsoft.com/en-us/dotnet/api/azure.connectors.sdk.microsoftforms.microsoftformsclient.getformresponsebyidasync)
and the Logic Apps HTTP action retry policy
(https://learn.microsoft.com/azure/logic-apps/logic-apps-exception-handling); answer rules from
tests/fixtures/providers/README.md
("microsoft_forms" row, `expect.email`) and its `header-token` scheme.

Microsoft Forms has no webhook and Power Automate cannot sign, so the flow's HTTP action sends a
static `Authorization: Bearer <token>` header, compared in constant time (connectors/_tokens.py).
The body is hookhub's own template [design]; "Get response details" hands every answer over as a
string, multi-choice answers as a JSON-array string and file uploads as a JSON string of objects
with `link` [obs/unconfirmed]. `response_id` is numbered per form: the dedupe key is (form_id,
response_id), which the per-source spool key honours as long as each form has its own source (the
documented setup).
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

from connectors import _answers
from connectors._schemes import PING
from connectors._tokens import HEADER_TOKEN, verify_header_token
from connectors.base import (
    Connector,
    Envelope,
    InboundRequest,
    NormalizeContext,
    SourceSettings,
    UnsupportedPayload,
    require_secrets,
)
from hub.submission import Answer, Submission, iso_utc, parse_instant

_SOURCE = "microsoft_forms"
_ANONYMOUS = "anonymous"
# Unformatted, "Get response details" may give submitDate as "11/20/2026 2:03:27 PM" (UTC) [unconfirmed].
_US_TIME = "%m/%d/%Y %I:%M:%S %p"


def _body(request: InboundRequest) -> dict[str, Any]:
    body = _answers.parse_json_object(request.body)
    marker = body.get("source")
    if marker is not None and marker != _SOURCE:
        raise UnsupportedPayload(
            f'body.source is {marker!r}, expected "microsoft_forms": is another flow posting to this source?'
        )
    return body


def _response_id(body: dict[str, Any]) -> str:
    value = body.get("response_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise UnsupportedPayload(
        "body.response_id is missing: map it to the trigger's 'Response Id' in the flow's HTTP action"
    )


def _form_id(body: dict[str, Any]) -> str:
    value = body.get("form_id")
    if not isinstance(value, str) or not value.strip():
        raise UnsupportedPayload("body.form_id is missing: put the form's id in the flow's HTTP action body")
    return value.strip()


def _submitted_at(value: object, fallback: datetime) -> datetime:
    if value is None or value == "":
        return fallback
    if not isinstance(value, str):
        raise UnsupportedPayload("body.submitted_at is not a string")
    try:
        return parse_instant(value)
    except (ValueError, OverflowError):  # OverflowError: an offset that moves it out of years 1-9999
        pass
    try:
        return datetime.strptime(value.strip(), _US_TIME).replace(tzinfo=UTC)
    except ValueError:
        raise UnsupportedPayload(
            f"body.submitted_at is not a date-time: {value[:40]!r}; format it in the flow with "
            "formatDateTime(..., 'yyyy-MM-ddTHH:mm:ssZ')"
        ) from None


def _decoded(value: str) -> tuple[str, Any]:
    """(type, value) of one answer string: JSON-array strings become choices or file links."""
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return "text", value
    try:
        items = _answers.parse_json(text, "answer")
    except UnsupportedPayload:
        return "text", value  # e.g. "[draft] my notes": an ordinary answer that looks like a list
    if isinstance(items, list) and all(isinstance(i, str) for i in items):
        return "choices", items
    if isinstance(items, list) and items and all(isinstance(i, dict) and "link" in i for i in items):
        return "file", _answers.file_value(str(i["link"]) for i in items if isinstance(i["link"], str))
    return "text", value  # an array of something else: keep the answer verbatim rather than guess


def _answer(question: str, raw: Any) -> Answer | None:
    if isinstance(raw, str):
        type_, value = _decoded(raw)
    elif isinstance(raw, bool):
        type_, value = "boolean", raw
    elif isinstance(raw, (int, float)):
        type_, value = "number", raw  # a flow that converts with int()/float() keeps the JSON type
    else:
        type_, value = "text", raw
    return _answers.answer(question, question, type_, value)


class MicrosoftFormsConnector(Connector):
    provider = "microsoft_forms"
    title = "Microsoft Forms (Power Automate flow)"
    scheme = HEADER_TOKEN
    stored_headers = frozenset({"x-ms-workflow-run-id"})  # normalize() reads it
    event_ids_per_form = True
    content_types = frozenset({"application/json"})
    credential_headers = frozenset({"authorization"})

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        # Power Automate signs nothing and sends no timestamp: the bearer token is all there is.
        verify_header_token(request, source)

    def envelope(self, request: InboundRequest) -> Envelope:
        body = _body(request)
        if body.get("type") == PING:
            # Hand-made connectivity check from the docs; no response id, so key on the exact bytes.
            form_id = _answers.optional_text(body, "form_id")
            note = "hookhub.ping test message"
            event_id = f"sha256:{request.body_sha256()}"
            return Envelope(event_id=event_id, kind="test", form_id=form_id, note=note)
        form_id = _form_id(body)
        event_id = _response_id(body)
        if not isinstance(body.get("answers"), dict):
            raise UnsupportedPayload('body.answers is missing or not an object {"<question>": <answer>}')
        return Envelope(event_id=event_id, form_id=form_id)

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        body = _body(request)
        form_id = _form_id(body)
        raw_answers = body.get("answers")
        if not isinstance(raw_answers, dict):
            raise UnsupportedPayload('body.answers is missing or not an object {"<question>": <answer>}')
        answers = _answers.collect(_answer(str(q), v) for q, v in raw_answers.items())
        responder = body.get("responder")
        metadata: dict[str, Any] = {}
        if isinstance(responder, str) and responder and not _answers.is_email(responder):
            metadata["responder"] = responder  # "anonymous", or a name when the tenant hides e-mails
        run_id = request.header("x-ms-workflow-run-id")
        if run_id:
            metadata["flow_run_id"] = run_id
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=form_id,
            form_title=_answers.optional_text(body, "form_title"),
            event_id=_response_id(body),
            submitted_at=_submitted_at(body.get("submitted_at"), context.received_at),
            respondent_email=responder if responder != _ANONYMOUS else None,
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        token = require_secrets(source)[0]
        at = iso_utc(datetime.fromtimestamp(int(now), UTC))
        payload = {
            "source": _SOURCE,
            "form_id": "hookhubTestForm",
            "form_title": "hookhub test form",
            # Real ids count up per form; a random one keeps repeated send-tests from being duplicates.
            "response_id": random.randint(1_000_000, 2**31 - 1),
            "submitted_at": at,
            "responder": "ada@example.org",
            "answers": {
                "Full name": "Ada Lovelace",
                "How many tickets?": "2",
                "Which sessions will you attend?": json.dumps(["Keynote", "Closing party"]),
                "Upload your ID": json.dumps(
                    [{"name": "id.pdf", "link": "https://contoso.sharepoint.com/sites/Forms/id.pdf"}]
                ),
                "Anything else we should know?": "",
            },
        }
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {
            "content-type": "application/json; charset=utf-8",
            "user-agent": "hookhub-send-test",
            "authorization": f"Bearer {token}",
            "x-ms-workflow-run-id": uuid.uuid4().hex.upper(),
        }
        return InboundRequest(method="POST", url=url, headers=headers, body=body)


connector = MicrosoftFormsConnector()
