"""Jotform's API for reconciliation: a form's submissions, and the form's webhook URLs.

The facts relied on, their sources and what could not be confirmed: docs/providers/jotform.md,
"Reconciliation (missed webhooks)". In short: `GET /form/{id}/submissions` (`offset`, `limit` up to
1000, a JSON `filter` on `created_at`, `orderby`) answers `{"content": [submission, ...]}`, each with
`id` (the webhook's `submissionID`), `created_at` ("YYYY-MM-DD HH:MM:SS", a wall-clock time without
zone: `timezone` says which), `status` and `answers` by question id (`name`, `text`, `type`,
`answer`, `order`); `GET /form/{id}` gives the form's `title`; `GET /form/{id}/webhooks` the URLs.
The API key goes in the `APIKEY` header, never in the URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr

from connectors import _answers
from connectors.base import NormalizeContext, SourceSettings, UnsupportedPayload
from connectors.jotform.values import deep_empty, shape
from connectors.reconciling import (
    Credentials,
    ListedResponse,
    Read,
    ReconcileFailed,
    Reconciler,
    ReconcileSettings,
    ResponsePage,
    WebhookHealth,
    Window,
    checked_base_url,
    checked_id,
    checked_zone,
    get_json,
    page_of,
    read_response,
    url_health,
)
from hub.submission import Answer, Submission

if TYPE_CHECKING:
    from hub.sender import Sender

API_BASE = "https://api.jotform.com"
PAGE_SIZE = 1000
"""Submissions per call: the most `limit` takes."""
TIMEZONE = "America/New_York"
"""The zone Jotform's `created_at` is read in unless `timezone` says otherwise (observed, not documented)."""
_SLACK = timedelta(seconds=1)
"""`created_at` has whole seconds and the filter compares strictly: the asked range is widened by this
on both sides, then cut to [since, until) here."""
_API_KEY = re.compile(r"[A-Za-z0-9]{20,64}")
_FORM_ID = re.compile(r"[0-9]+")
_FILE_TYPES = frozenset({"control_fileupload"})
_STAMP = "%Y-%m-%d %H:%M:%S"


class JotformCredentials(Credentials):
    api_key: SecretStr = Field(description="a Jotform API key (Settings > API); Read Access is enough")
    env_hint: ClassVar[str] = "JOTFORM_API_KEY"

    @classmethod
    def problem(cls, key: str) -> str | None:
        if _API_KEY.fullmatch(key):
            return None
        return (
            "must be a Jotform API key: the letters and digits shown under "
            "Settings > API (https://www.jotform.com/myaccount/api), without 'apiKey='"
        )


class JotformReconcileSettings(ReconcileSettings):
    form_id: Annotated[
        str, checked_id(_FORM_ID, "the form's id: the digits in its URL (form.jotform.com/<id>)")
    ] = Field(
        description="the form's id: the digits in its URL (form.jotform.com/<form id>)",
        examples=["243231271343446"],
    )
    credentials: JotformCredentials
    api_base_url: Annotated[str, checked_base_url("https://eu-api.jotform.com")] = Field(
        default=API_BASE,
        description="https://eu-api.jotform.com (EU Safe), https://hipaa-api.jotform.com (HIPAA), "
        "or an Enterprise domain's https://<domain>/API",
    )
    timezone: Annotated[str, checked_zone(TIMEZONE)] = Field(
        default=TIMEZONE, description="the IANA zone the API's created_at times are in (America/New_York)"
    )


# -- the reconciler ----------------------------------------------------------------------------


def _stamp(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime(_STAMP)


def _answer_list(answers: Any) -> list[Answer]:
    """The API's answers as the webhook's: key `q<id>_<name>`, the question text as label, and type and
    value shaped as `rawRequest`'s (connectors/jotform/values.py), in form order."""
    if deep_empty(answers):
        return []  # none, or PHP's empty array
    if not isinstance(answers, dict):
        raise UnsupportedPayload("the submission's answers are not an object of questions by id")
    questions = [(qid, q) for qid, q in answers.items() if isinstance(q, dict) and str(qid).isdigit()]

    def order(item: tuple[str, dict[str, Any]]) -> tuple[int, int]:
        raw = str(item[1].get("order") or "")
        return (int(raw) if raw.isdigit() else 1 << 30, int(item[0]))

    out: list[Answer | None] = []
    for qid, question in sorted(questions, key=order):
        value, name = question.get("answer"), question.get("name")
        if deep_empty(value) or not isinstance(name, str) or not name:
            continue  # headings, buttons and unanswered questions have no answer
        label = question.get("text") if isinstance(question.get("text"), str) else None
        if question.get("type") in _FILE_TYPES:
            urls = value if isinstance(value, list) else [value]
            type_, shaped = "file", _answers.file_value(u for u in urls if isinstance(u, str))
        else:
            type_, shaped, _, _ = shape(value)
        out.append(_answers.answer(f"q{qid}_{name}", (label or "").strip() or name, type_, shaped))
    return _answers.collect(out)


def _submission(item: dict[str, Any], sid: str, at: datetime) -> Submission:
    """A listed submission as the webhook's would be (the form's title is added per page)."""
    metadata = {"ip": item["ip"]} if isinstance(item.get("ip"), str) and item["ip"] else {}
    return _answers.submission(
        "jotform",
        NormalizeContext("pending", "pending", at),
        _answer_list(item.get("answers")),
        event_id=sid,
        submitted_at=at,
        form_id=_answers.optional_text(item, "form_id"),
        metadata=metadata,
    )


class JotformReconciler(Reconciler):
    """`GET /form/{id}/submissions` in pages of 1000, `GET /form/{id}` once for the title when anything is
    listed, and `GET /form/{id}/webhooks` for the webhook check."""

    Settings: ClassVar[type[ReconcileSettings]] = JotformReconcileSettings
    page_size: ClassVar[int] = PAGE_SIZE
    api: ClassVar[str] = "Jotform API"

    def _call(self, settings: JotformReconcileSettings) -> dict[str, Any]:
        return {
            "headers": {
                "APIKEY": settings.credentials.api_key.get_secret_value(),
                "accept": "application/json",
            },
            "sleep": self.sleep,
            "denied": "the Jotform API key was refused (deleted or disabled, or of another account): create "
            "one under Settings > API (https://www.jotform.com/myaccount/api) and put it in "
            "reconcile.credentials.api_key; an EU Safe or HIPAA account also needs reconcile.api_base_url",
            "not_found": f"no form {settings.form_id} for this API key: check reconcile.form_id (the "
            "digits in the form's URL) and reconcile.api_base_url (eu-api / hipaa-api for EU Safe / "
            "HIPAA accounts)",
        }

    async def _content(
        self, http: Sender, settings: JotformReconcileSettings, path: str, what: str, **params: str
    ) -> Any:
        body = await get_json(
            http, f"{settings.api_base_url}{path}", what=what, params=params, **self._call(settings)
        )
        if not isinstance(body, dict) or "content" not in body:
            raise ReconcileFailed(f"{what}: the answer has no content")
        return body["content"]

    async def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        assert isinstance(settings, JotformReconcileSettings)
        zone = ZoneInfo(settings.timezone)
        window_filter = json.dumps(
            {
                "created_at:gt": _stamp(window.since - _SLACK, zone),
                "created_at:lt": _stamp(window.until + _SLACK, zone),
            }
        )
        title: str | None = None
        seen: set[str] = set()
        offset = 0
        while True:
            what = f"list submissions of Jotform form {settings.form_id} (from {offset})"
            content = await self._content(
                http,
                settings,
                f"/form/{settings.form_id}/submissions",
                what,
                offset=str(offset),
                limit=str(PAGE_SIZE),
                filter=window_filter,
                orderby="created_at",
            )
            if not isinstance(content, list):
                raise ReconcileFailed(f"{what}: content is not a list of submissions")
            found = [r for item in content if (r := self._listed(item, zone, what))]
            found = [
                r
                for r in found
                if window.since <= r.submitted_at < window.until and r.response_id not in seen
            ]
            if title is None and any(isinstance(r, ListedResponse) for r in found):
                form = await self._content(
                    http, settings, f"/form/{settings.form_id}", f"read Jotform form {settings.form_id}"
                )
                title = str(form.get("title") or "") if isinstance(form, dict) else ""
            read = [self._titled(r, title or None, settings.form_id) for r in found]
            seen.update(r.response_id for r in read)
            yield page_of(read)
            if len(content) < PAGE_SIZE:
                return
            offset += len(content)

    @staticmethod
    def _listed(item: Any, zone: ZoneInfo, what: str) -> Read | None:
        if not isinstance(item, dict) or item.get("status") == "DELETED":
            return None  # a deleted submission is not missing: it is gone
        sid, created = item.get("id"), item.get("created_at")
        if (
            not isinstance(sid, (str, int))
            or isinstance(sid, bool)
            or not str(sid)
            or not isinstance(created, str)
        ):
            raise ReconcileFailed(f"{what}: a submission has no id or created_at")
        try:
            at = datetime.strptime(created.strip(), _STAMP).replace(tzinfo=zone).astimezone(UTC)
        except ValueError:
            raise ReconcileFailed(f"{what}: submission {sid} has an unreadable created_at") from None
        return read_response(str(sid), at, partial(_submission, item, str(sid), at))

    @staticmethod
    def _titled(response: Read, title: str | None, form_id: str) -> Read:
        if not isinstance(response, ListedResponse):
            return response
        submission: Submission = response.submission.model_copy(
            update={"form_title": title, "form_id": response.submission.form_id or form_id}
        )
        return ListedResponse(response.response_id, response.submitted_at, submission)

    async def webhook_health(
        self, source: SourceSettings, settings: Any, expected_url: str | None, http: Sender
    ) -> WebhookHealth | None:
        assert isinstance(settings, JotformReconcileSettings)
        what = f"list webhooks of Jotform form {settings.form_id}"
        content = await self._content(http, settings, f"/form/{settings.form_id}/webhooks", what)
        # {"0": url, "1": url} in the docs' example; a list is read the same way.
        values = (
            content.values() if isinstance(content, dict) else content if isinstance(content, list) else None
        )
        if values is None:
            raise ReconcileFailed(f"{what}: content is not a list of webhook URLs")
        urls = [v for v in values if isinstance(v, str)]
        return url_health(
            urls,
            expected_url,
            f"Jotform form {settings.form_id}",
            "add it again (Form Builder > Settings > Integrations > WebHooks)",
        )
