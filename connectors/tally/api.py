"""Tally's submissions and webhooks APIs, for reconciliation (connectors/reconciling).

The API facts relied on, with their sources and what is unconfirmed: docs/providers/tally.md,
"Reconciliation (missed webhooks)". A listed submission is rebuilt as the webhook's body and
normalized by the connector itself, so both paths give the same answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, SecretStr

from connectors.base import (
    InboundRequest,
    NormalizeContext,
    SourceSettings,
    UnsupportedPayload,
)
from connectors.reconciling import (
    Credentials,
    Read,
    ReconcileFailed,
    Reconciler,
    ReconcileSettings,
    ResponsePage,
    WebhookHealth,
    Window,
    bare_url,
    checked_base_url,
    checked_id,
    get_json,
    hosts,
    list_in,
    page_of,
    read_response,
    same_endpoint,
)
from hub.submission import Submission, iso_utc, parse_instant

if TYPE_CHECKING:
    from hub.sender import Sender

from connectors import tally

SUBMITTED = "FORM_RESPONSE"
"""The event type of a submission: the webhook's, and the one a rebuilt listed submission gets."""
API_BASE = "https://api.tally.so"
PAGE_SIZE = 50
"""Submissions per page: Tally's default (`"limit": 50` in its documented answer); no `limit` is sent."""
_KEY_PREFIXES = ("tly-", "tly_")
_FORM_ID = re.compile(r"[A-Za-z0-9]+")
_SLACK = timedelta(seconds=1)
"""The window is widened by this much on both sides when asked (whether Tally's bounds are inclusive to
the millisecond is not documented), then cut to [since, until) here."""


class TallyCredentials(Credentials):
    api_key: SecretStr = Field(description="a Tally API key (Settings > API keys), `tly-...`")
    env_hint: ClassVar[str] = "TALLY_API_KEY"

    @classmethod
    def problem(cls, key: str) -> str | None:
        if key.startswith(_KEY_PREFIXES):
            return None
        return (
            "must be a Tally API key, which starts with 'tly-' (create one at "
            "https://tally.so/settings/api-keys)"
        )


class TallyReconcileSettings(ReconcileSettings):
    form_id: Annotated[
        str, checked_id(_FORM_ID, "the form's id, letters and digits as in tally.so/r/<form id>")
    ] = Field(
        min_length=1, description="the form's id, as in its URL (tally.so/r/<form id>)", examples=["mBzNlP"]
    )
    credentials: TallyCredentials
    api_base_url: Annotated[str, checked_base_url(API_BASE)] = API_BASE


def _question_options(question: dict[str, Any]) -> list[Any]:
    # Where the API lists a question's options (observed in receiver code, not documented), choice ids
    # resolve to their labels as in the webhook; otherwise the answer is kept as the API sent it.
    options = question.get("options")
    if isinstance(options, list):
        return options
    return [o for f in question.get("fields") or [] if isinstance(f, dict) for o in f.get("options") or []]


def _webhook_fields(item: dict[str, Any], questions: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The submission's answers as the webhook's `data.fields`: the webhook's key is `question_<question id>`
    and its label the question's title."""
    fields: list[dict[str, Any]] = []
    responses = item.get("responses") or []
    if not isinstance(responses, list):
        raise UnsupportedPayload("the submission's responses is not a list")
    for response in responses:
        if not isinstance(response, dict) or not isinstance(response.get("questionId"), str):
            continue
        qid = response["questionId"]
        question = questions.get(qid, {})
        value = response.get("answer", response.get("value"))
        type_ = question.get("type") or "unknown"
        title = question.get("title") or qid
        if type_ == "HIDDEN_FIELDS" and isinstance(value, dict):
            # Several hidden fields under one question (unconfirmed): one field each, as the webhook has.
            fields += [
                {"key": f"question_{qid}_{k}", "label": k, "type": type_, "value": v}
                for k, v in value.items()
            ]
            continue
        field: dict[str, Any] = {"key": f"question_{qid}", "label": title, "type": type_, "value": value}
        options = _question_options(question)
        if options:
            field["options"] = options
        fields.append(field)
    return fields


class TallyReconciler(Reconciler):
    """`GET /forms/{formId}/submissions` (completed only), and `GET /webhooks` for the webhook's state."""

    Settings: ClassVar[type[ReconcileSettings]] = TallyReconcileSettings
    page_size: ClassVar[int] = PAGE_SIZE
    api: ClassVar[str] = "Tally API"

    @staticmethod
    def _call(settings: TallyReconcileSettings) -> dict[str, Any]:
        return {
            "headers": settings.credentials.bearer(),
            "denied": "the Tally API key was refused (deleted, or its user left the organization): create a "
            "new key at https://tally.so/settings/api-keys and put it in reconcile.credentials.api_key",
            "not_found": f"no form {settings.form_id!r} for this API key: check reconcile.form_id "
            "(the id in the form's tally.so/r/<id> link) and that the key's user can see the form",
        }

    async def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        assert isinstance(settings, TallyReconcileSettings)
        url = f"{settings.api_base_url}/forms/{settings.form_id}/submissions"
        base = {
            "filter": "completed",
            "startDate": iso_utc(window.since - _SLACK),
            "endDate": iso_utc(window.until + _SLACK),
        }
        seen: set[str] = set()
        page = 1
        while True:
            what = f"list submissions of Tally form {settings.form_id} (page {page})"
            body = await get_json(
                http,
                url,
                what=what,
                params={**base, "page": str(page)},
                sleep=self.sleep,
                **self._call(settings),
            )
            if not isinstance(body, dict) or not isinstance(body.get("submissions"), list):
                raise ReconcileFailed(f"{what}: the answer has no submissions list")
            questions = {
                q["id"]: q
                for q in body.get("questions") or []
                if isinstance(q, dict) and isinstance(q.get("id"), str)
            }
            read: list[Read] = []
            for item in body["submissions"]:
                response = self._listed(item, questions, settings.form_id, what)
                if (
                    response
                    and response.response_id not in seen
                    and window.since <= response.submitted_at < window.until
                ):
                    seen.add(response.response_id)
                    read.append(response)
            totals = body.get("totalNumberOfSubmissionsPerFilter")
            total = totals.get("completed") if isinstance(totals, dict) else None
            yield page_of(read, total=total if isinstance(total, int) else None)
            if body.get("hasMore") is not True or not body["submissions"]:
                return
            page += 1

    @staticmethod
    def _listed(item: Any, questions: dict[str, dict[str, Any]], form_id: str, what: str) -> Read | None:
        if not isinstance(item, dict) or item.get("isCompleted") is False:
            return None  # partial submissions are never webhooks' business
        response_id, submitted = item.get("id"), item.get("submittedAt")
        if not isinstance(response_id, str) or not response_id or not isinstance(submitted, str):
            raise ReconcileFailed(f"{what}: a submission has no id or submittedAt")
        try:
            at = parse_instant(submitted)
        except ValueError:
            raise ReconcileFailed(f"{what}: submission {response_id} has an unreadable submittedAt") from None
        return read_response(response_id, at, partial(_normalized, item, questions, form_id, at))

    async def webhook_health(
        self, source: SourceSettings, settings: Any, expected_url: str | None, http: Sender
    ) -> WebhookHealth | None:
        assert isinstance(settings, TallyReconcileSettings)
        ours: list[dict[str, Any]] = []
        page = 1
        while True:
            what = f"list Tally webhooks (page {page})"
            body = await get_json(
                http,
                f"{settings.api_base_url}/webhooks",
                what=what,
                params={"page": str(page), "limit": "100"},
                sleep=self.sleep,
                **self._call(settings),
            )
            hooks = list_in(body, "webhooks", what)
            hooks = [h for h in hooks if isinstance(h, dict)]
            if any("formId" not in h for h in hooks):
                return None  # a list without the form of each webhook (undocumented field) cannot say
            ours += [h for h in hooks if h.get("formId") == settings.form_id]
            if body.get("hasMore") is not True or not hooks:
                break
            page += 1
        return _health(ours, settings.form_id, expected_url)


def _normalized(
    item: dict[str, Any], questions: dict[str, dict[str, Any]], form_id: str, at: datetime
) -> Submission:
    """The webhook's body for this listed submission (without its event id, which the API does not
    have), normalized by the connector itself, so both give the same answers."""
    data = {
        "responseId": item["id"],
        "submissionId": item["id"],
        "respondentId": item.get("respondentId"),
        "formId": item.get("formId") or form_id,
        "createdAt": item["submittedAt"],
        "fields": _webhook_fields(item, questions),
    }
    body = {"eventId": item["id"], "eventType": SUBMITTED, "data": data}
    request = InboundRequest("GET", "", {"content-type": "application/json"}, json.dumps(body).encode())
    return tally.connector.normalize(request, NormalizeContext("pending", "pending", at))


def _health(hooks: list[dict[str, Any]], form_id: str, expected_url: str | None) -> WebhookHealth:
    form = f"Tally form {form_id}"
    if not hooks:
        return WebhookHealth("missing", f"{form} has no webhook: add one (Integrations > Webhooks)")
    urls = [str(h.get("url") or "") for h in hooks]
    if expected_url is not None:
        pointing = [h for h, u in zip(hooks, urls, strict=True) if same_endpoint(u, expected_url)]
        if not pointing:
            return WebhookHealth(
                "elsewhere",
                f"{form} has webhooks, none to {bare_url(expected_url)} "
                f"(they go to {hosts(u for u in urls if u)})",
            )
        hooks = pointing
    if any(h.get("isEnabled") is True for h in hooks):
        return WebhookHealth("ok", f"{form}: webhook enabled")
    return WebhookHealth(
        "disabled",
        f"{form}: the webhook is disabled in Tally (turn it on again under Integrations > Webhooks)",
    )
