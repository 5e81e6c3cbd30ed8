"""Fillout form webhooks.

Sources: Fillout's docs: https://www.fillout.com/help/api-reference/create-a-webhook
and .../get-all-submissions (the submission object: submissionId, submissionTime, questions[], calculations[],
urlParameters[], quiz, documents, scheduling, payments), fillout.com/help/webhook; the `{"submission": ...}`
wrapper is observed in receiver code (n8n community trigger), sibling `formId`/`formName` are unconfirmed;
answer rules from tests/fixtures/providers/README.md ("fillout" row).

Fillout documents no request signature, so the source's secret is a token in the webhook URL query
(`?token=...`, connectors/_tokens.py). Dedupe key: `submission.submissionId` (Fillout's test/resend
re-delivers the same id, so it is acknowledged as a duplicate).

Reconciliation lists the form's submissions through Fillout's REST API (`FilloutReconciler`); the facts
it relies on, with their sources: docs/providers/fillout.md, "Reconciliation (missed webhooks)".
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar
from urllib.parse import urlencode

from pydantic import Field, SecretStr

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
from connectors.reconciling import (
    Credentials,
    Read,
    ReconcileFailed,
    Reconciler,
    ReconcileSettings,
    ResponsePage,
    Window,
    checked_base_url,
    checked_id,
    get_json,
    list_in,
    page_of,
    read_response,
)
from hub.submission import Answer, Submission, iso_utc, parse_instant

if TYPE_CHECKING:
    from hub.sender import Sender

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


# -- reconciliation: the submissions API ----------------------------------------------------

API_BASE = "https://api.fillout.com"
"""US accounts; the EU data centre is https://eu-api.fillout.com, and self-hosted Fillout shows its own
in the API dashboard (setting `api_base_url`). Paths start with /v1/api."""
PAGE_SIZE = 150
"""`limit`: Fillout's documented maximum (default 50)."""
_FORM_ID = re.compile(r"[A-Za-z0-9]+")
_SLACK = timedelta(seconds=1)
"""The window is widened by this much on both sides when asked (Fillout does not say whether `afterDate`
and `beforeDate` are inclusive), then cut to [since, until) here."""


class FilloutCredentials(Credentials):
    api_key: SecretStr = Field(
        description="a Fillout API key (Settings > Developer), or an integration's token"
    )
    env_hint: ClassVar[str] = "FILLOUT_API_KEY"

    @classmethod
    def problem(cls, key: str) -> str | None:
        if len(key) < 16:
            return "must be the whole Fillout API key from Settings > Developer (sk_prod_...)"
        return None


class FilloutReconcileSettings(ReconcileSettings):
    form_id: Annotated[
        str, checked_id(_FORM_ID, "the form's public id: letters and digits, as in its share link")
    ] = Field(min_length=1, description="the form's public id (in its share link)", examples=["vGkWW4cQ9pus"])
    credentials: FilloutCredentials
    # The API reference names servers with the path (https://eu-api.fillout.com/v1/api): accept either.
    api_base_url: Annotated[str, checked_base_url("https://eu-api.fillout.com", "/v1/api")] = API_BASE


def _fillout_time(value: datetime) -> str:
    """`YYYY-MM-DDTHH:mm:ss.sssZ`, the form Fillout's examples use."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FilloutReconciler(Reconciler):
    """`GET /v1/api/forms/{formId}/submissions`, finished submissions, oldest first, by offset.

    Fillout's API can create and remove a webhook but not list one, so `webhook_health` stays None."""

    Settings: ClassVar[type[ReconcileSettings]] = FilloutReconcileSettings
    page_size: ClassVar[int] = PAGE_SIZE
    api: ClassVar[str] = "Fillout REST API"

    async def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        assert isinstance(settings, FilloutReconcileSettings)
        url = f"{settings.api_base_url}/v1/api/forms/{settings.form_id}/submissions"
        query = {
            "limit": str(PAGE_SIZE),
            "afterDate": _fillout_time(window.since - _SLACK),
            "beforeDate": _fillout_time(window.until + _SLACK),
            "status": "finished",
            "sort": "asc",
        }
        seen: set[str] = set()
        offset = 0
        while True:
            what = f"list submissions of Fillout form {settings.form_id} (offset {offset})"
            body = await get_json(
                http,
                url,
                what=what,
                headers=settings.credentials.bearer(),
                params={**query, "offset": str(offset)},
                sleep=self.sleep,
                denied="the Fillout API key was refused (regenerated or revoked): copy the current key from "
                "Settings > Developer into reconcile.credentials.api_key (and check api_base_url: an EU "
                "account's key works only with https://eu-api.fillout.com)",
                not_found=f"no form {settings.form_id!r} for this API key: check reconcile.form_id (the "
                "public id in the form's share link)",
            )
            items = list_in(body, "responses", what)
            read: list[Read] = []
            for item in items:
                response = self._listed(item, settings.form_id, what)
                if response.response_id not in seen and window.since <= response.submitted_at < window.until:
                    seen.add(response.response_id)
                    read.append(response)
            total = body.get("totalResponses")
            total = total if isinstance(total, int) and not isinstance(total, bool) else None
            yield page_of(read, total=total)
            offset += len(items)
            if not items or len(items) < PAGE_SIZE or (total is not None and offset >= total):
                return

    @staticmethod
    def _listed(item: Any, form_id: str, what: str) -> Read:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("submissionId"), str)
            or not item["submissionId"]
        ):
            raise ReconcileFailed(f"{what}: a submission has no submissionId")
        response_id = item["submissionId"]
        try:
            at = parse_instant(str(item.get("submissionTime")))
        except ValueError:
            raise ReconcileFailed(
                f"{what}: submission {response_id} has no readable submissionTime"
            ) from None
        # The API's item is the webhook's `submission` object: wrapped as the webhook sends it and
        # normalized by the connector itself, so both give the same answers.
        body = json.dumps({"formId": form_id, "submission": item}).encode()
        request = InboundRequest("GET", "", {"content-type": "application/json"}, body)
        context = NormalizeContext("pending", "pending", at)
        return read_response(response_id, at, partial(connector.normalize, request, context))


class FilloutConnector(UrlTokenVerification, Connector):
    provider = "fillout"
    title = "Fillout"
    reconciler: ClassVar[Reconciler | None] = FilloutReconciler()

    def envelope(self, request: InboundRequest) -> Envelope:
        body = _answers.parse_json_object(request.body)
        submission = _submission(body)
        _answers.items(
            submission, "questions", "submission"
        )  # shape check, so a broken body is flagged on arrival
        submission_id = _answers.text(submission, "submissionId", "submission")
        # The submission id is both the dedupe key and the API's identity of the response.
        return Envelope(
            event_id=submission_id, form_id=_answers.optional_text(body, "formId"), response_id=submission_id
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
