"""WPForms Webhooks addon (a request per submission, body mapped by the site admin).

Sources: none from the vendor — no WPForms
documentation was available, so everything here is the addon's generally known settings (request URL,
method, JSON or FORM format, custom request headers, a Request Body table mapping keys to fields or
smart tags) plus hookhub's recommended mapping [design]; answer rules from
tests/fixtures/providers/README.md ("wpforms" row and the `header-token` scheme).

The addon signs nothing: the admin adds a request header `X-Hookhub-Token: <secret>` (or
`Authorization: Bearer <secret>`), compared in constant time (connectors/_tokens.py). The recommended
mapping sends `entry_id` = {entry_id}, `form_id` = {form_id} and `submitted_at` = {date format="c"};
every other key is an answer, under the key the admin chose. Without `entry_id` (entry storage
disabled, or not mapped) the dedupe key is a hash of the body.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from connectors import _answers
from connectors._tokens import TOKEN_HEADER
from connectors._wordpress import WordPressAddOn
from connectors.base import (
    Envelope,
    InboundRequest,
    NormalizeContext,
    SourceSettings,
    UnsupportedPayload,
    require_secrets,
)
from hub.submission import Answer, Submission, parse_instant

_NOT_ANSWERS = frozenset({"entry_id", "form_id", "submitted_at"})


def _id(body: dict[str, Any], key: str) -> str | None:
    """A smart-tag id as text; None when unmapped or empty ({entry_id} is 0 when entries are not stored)."""
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text if text and text != "0" else None


def _event_id(request: InboundRequest, body: dict[str, Any]) -> str:
    return _id(body, "entry_id") or f"sha256:{request.body_sha256()}"


def _submitted_at(body: dict[str, Any], fallback: datetime) -> datetime:
    value = body.get("submitted_at")
    if _answers.is_empty(value):
        return fallback
    try:
        return parse_instant(str(value))
    except (ValueError, OverflowError):  # OverflowError: an offset that moves it out of years 1-9999
        raise UnsupportedPayload(
            f'submitted_at {str(value)[:40]!r} is not ISO 8601: map it to the smart tag {{date format="c"}}'
        ) from None


def _collect_answers(body: dict[str, Any]) -> list[Answer]:
    return _answers.collect(
        _answers.answer(k, k, "text", v) for k, v in body.items() if k not in _NOT_ANSWERS
    )


class WPFormsConnector(WordPressAddOn):
    provider = "wpforms"
    title = "WPForms (Webhooks addon)"

    def envelope(self, request: InboundRequest) -> Envelope:
        body = _answers.parse_body_object(request)
        # The addon fires on submission only; it has no test or ping request.
        return Envelope(event_id=_event_id(request, body), form_id=_id(body, "form_id"))

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        body = _answers.parse_body_object(request)
        answers = _collect_answers(body)
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=_id(body, "form_id"),
            event_id=_event_id(request, body),
            submitted_at=_submitted_at(body, context.received_at),
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        token = require_secrets(source)[0]
        # A site in UTC+1, as {date format="c"} renders local time with its offset.
        local = datetime.fromtimestamp(now, UTC).astimezone(timezone(timedelta(hours=1)))
        payload = {
            "entry_id": str(secrets.randbelow(10**9) + 1),
            "form_id": "1",
            "submitted_at": local.replace(microsecond=0).isoformat(),
            "name": "Ada Lovelace",
            "email": "ada@example.org",
            "tickets": "2",
            "sessions": "Keynote\nWorkshop",  # checkbox values arrive newline-joined, as text
        }
        return self.wordpress_request(url, payload, {TOKEN_HEADER: token})


connector = WPFormsConnector()
