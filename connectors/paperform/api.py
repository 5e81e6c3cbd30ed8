"""Paperform's submissions, fields and webhooks API, for reconciliation (connectors/reconciling).

The API facts relied on, their sources and what is unconfirmed: docs/providers/paperform.md,
"Reconciliation (missed webhooks)". A listed submission is rebuilt as the webhook's body and normalized
by the connector itself, so both paths give the same answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, SecretStr

from connectors import _answers
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
    checked_base_url,
    checked_id,
    get_json,
    page_of,
    read_response,
    url_health,
)
from hub.submission import Submission, iso_utc, parse_instant

if TYPE_CHECKING:
    from hub.sender import Sender

from connectors import paperform

SUBMISSION = "submission"
"""The trigger of a completed submission: the webhook's, and the one a rebuilt listed submission gets."""
API_BASE = "https://api.paperform.co"
"""Paperform's API server; its paths start with /v1 (the OpenAPI `servers` entry is .../v1)."""
PAGE_SIZE = 100
"""`limit`: the most Paperform's list endpoints take (default 20)."""
_FORM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_SLACK = timedelta(seconds=1)
"""The window is widened by this much on both sides when asked (Paperform's reference describes
`after_date`/`before_date` contradictorily), then cut to [since, until) here."""
_STAMP = "%Y-%m-%d %H:%M:%S"
"""The webhook's `created_at` form, which the connector reads as UTC."""
_HOW_TO_ADD = (
    "add it again (After Submission > Integrations & Webhooks > Webhooks), triggered on New Submission"
)


class PaperformCredentials(Credentials):
    api_key: SecretStr = Field(description="a Paperform API key (your account's Developer page)")
    env_hint: ClassVar[str] = "PAPERFORM_API_KEY"

    @classmethod
    def problem(cls, key: str) -> str | None:
        if len(key) >= 20:
            return None
        return (
            "must be the whole Paperform API key, as generated on your account's "
            "Developer page (https://paperform.co/account/developer)"
        )


class PaperformReconcileSettings(ReconcileSettings):
    form_id: Annotated[
        str,
        checked_id(
            _FORM_ID,
            "the form's slug or id as in its address (https://<slug>.paperform.co): letters, digits, - and _",
        ),
    ] = Field(min_length=1, description="the form's slug, custom slug or id", examples=["pyconf-2026"])
    credentials: PaperformCredentials
    api_base_url: Annotated[str, checked_base_url(API_BASE, "/v1")] = API_BASE
    webhook_check: bool = Field(
        default=True,
        description="ask Paperform's webhooks API whether the form's webhook still exists (a Business "
        "API feature: set false where the plan lacks it)",
    )


def _paperform_time(value: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ`, the form of Paperform's examples (UTC)."""
    return iso_utc(value.astimezone(UTC).replace(microsecond=0))


def _webhook_question(key: str, field: dict[str, Any] | None, value: Any) -> dict[str, Any]:
    """One entry of the webhook's `data`: the form field's title, type and custom key with the value.
    A key the form no longer has (a deleted question) keeps its key as title."""
    field = field or {}
    return {
        "title": field.get("title") if isinstance(field.get("title"), str) else None,
        "description": field.get("description"),
        "type": field.get("type") if isinstance(field.get("type"), str) else None,
        "key": key,
        "custom_key": field.get("custom_key") if isinstance(field.get("custom_key"), str) else None,
        "value": value,
    }


def _listed_submission(
    item: dict[str, Any], fields: list[dict[str, Any]], form_id: str, at: datetime
) -> Submission:
    """The webhook's body for this listed submission, normalized by the connector itself: the API keys
    `data` by question key (never the custom key), the webhook lists each question with its title,
    type, key and custom key, in form order."""
    data = item.get("data")
    if data is None or data == []:  # none, or PHP's empty array
        data = {}
    if not isinstance(data, dict):
        raise UnsupportedPayload("the submission's data is not an object of answers by question key")
    by_key = {f["key"]: f for f in fields if isinstance(f.get("key"), str)}
    ordered = [k for k in by_key if k in data] + [k for k in data if k not in by_key]
    device = _answers.maybe_obj(item, "device")
    body = {
        "data": [_webhook_question(k, by_key.get(k), data[k]) for k in ordered],
        "form_id": item.get("form_id") if isinstance(item.get("form_id"), str) else form_id,
        "submission_id": item["id"],
        "created_at": at.strftime(_STAMP),
        "ip_address": device.get("ip_address"),
        "charge": item.get("charge"),
        "trigger": SUBMISSION,
    }
    request = InboundRequest("GET", "", {"content-type": "application/json"}, json.dumps(body).encode())
    return paperform.connector.normalize(request, NormalizeContext("pending", "pending", at))


class PaperformReconciler(Reconciler):
    """`GET /v1/forms/{form}/submissions` (completed submissions: partial ones have an endpoint of their
    own) oldest first by `skip`, `GET /v1/forms/{form}/fields` once for titles and types, and
    `GET /v1/forms/{form}/webhooks` for the webhook check."""

    Settings: ClassVar[type[ReconcileSettings]] = PaperformReconcileSettings
    page_size: ClassVar[int] = PAGE_SIZE
    api: ClassVar[str] = "Paperform API"

    def warnings(self, settings: Any) -> list[str]:
        return [
            "Paperform does not document that a webhook's submission_id is the API's submission id (it is"
            " observed in public integrations): before scheduling, run `hookhub reconcile <source> --dry-run"
            " --since 1d` and check that submissions whose webhooks arrived are not listed as missing"
        ]

    def _call(self, settings: PaperformReconcileSettings) -> dict[str, Any]:
        return {
            "headers": settings.credentials.bearer(),
            "sleep": self.sleep,
            "denied": "the Paperform API key was refused (regenerated or deleted, or the plan has no API "
            "access): generate one on your account's Developer page (https://paperform.co/account/developer) "
            "and put it in reconcile.credentials.api_key",
            "not_found": f"no form {settings.form_id!r} for this API key: check reconcile.form_id (the "
            "form's slug, custom slug or id)",
        }

    async def _results(
        self, http: Sender, settings: PaperformReconcileSettings, path: str, key: str, what: str, **call: Any
    ) -> tuple[list[Any], dict[str, Any]]:
        """`results.<key>` of a GET under /v1, and the whole answer (for `has_more` and `total`)."""
        body = await get_json(
            http, f"{settings.api_base_url}/v1{path}", what=what, **(self._call(settings) | call)
        )
        results = body.get("results") if isinstance(body, dict) else None
        items = results.get(key) if isinstance(results, dict) else None
        if not isinstance(items, list):
            raise ReconcileFailed(f"{what}: the answer has no results.{key} list")
        return items, body

    async def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        assert isinstance(settings, PaperformReconcileSettings)
        form = settings.form_id
        query = {
            "limit": str(PAGE_SIZE),
            "sort": "ASC",
            "after_date": _paperform_time(window.since - _SLACK),
            "before_date": _paperform_time(window.until + _SLACK),
        }
        fields: list[dict[str, Any]] | None = None
        seen: set[str] = set()
        skip = 0
        while True:
            what = f"list submissions of Paperform form {form} (from {skip})"
            items, body = await self._results(
                http,
                settings,
                f"/forms/{form}/submissions",
                "submissions",
                what,
                params={**query, "skip": str(skip)},
            )
            if fields is None and items:
                found, _ = await self._results(
                    http, settings, f"/forms/{form}/fields", "fields", f"list fields of Paperform form {form}"
                )
                fields = [f for f in found if isinstance(f, dict)]
            read: list[Read] = []
            for item in items:
                response = self._listed(item, fields or [], form, what)
                if response.response_id not in seen and window.since <= response.submitted_at < window.until:
                    seen.add(response.response_id)
                    read.append(response)
            total = body.get("total")
            yield page_of(read, total if isinstance(total, int) and not isinstance(total, bool) else None)
            skip += len(items)
            if body.get("has_more") is not True or not items:
                return

    @staticmethod
    def _listed(item: Any, fields: list[dict[str, Any]], form_id: str, what: str) -> Read:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise ReconcileFailed(f"{what}: a submission has no id")
        sid = item["id"]
        try:
            at = parse_instant(str(item.get("created_at_utc")))
        except (ValueError, OverflowError):
            raise ReconcileFailed(f"{what}: submission {sid} has no readable created_at_utc") from None
        return read_response(sid, at, partial(_listed_submission, item, fields, form_id, at))

    async def webhook_health(
        self, source: SourceSettings, settings: Any, expected_url: str | None, http: Sender
    ) -> WebhookHealth | None:
        assert isinstance(settings, PaperformReconcileSettings)
        if not settings.webhook_check:
            return None
        form = settings.form_id
        denied = (
            "Paperform refused to list the form's webhooks: that API is part of Paperform's Business API; "
            "on another plan set reconcile.webhook_check: false (if the key was regenerated, put the new "
            "one in reconcile.credentials.api_key)"
        )
        hooks: list[dict[str, Any]] = []
        skip = 0
        while True:
            what = f"list webhooks of Paperform form {form} (from {skip})"
            items, body = await self._results(
                http,
                settings,
                f"/forms/{form}/webhooks",
                "webhooks",
                what,
                params={"limit": str(PAGE_SIZE), "skip": str(skip)},
                denied=denied,
            )
            hooks += [h for h in items if isinstance(h, dict)]
            skip += len(items)
            if body.get("has_more") is not True or not items:
                break
        # A webhook triggered on partial submissions only is not the one that brings submissions.
        urls = [
            str(h.get("target_url") or "")
            for h in hooks
            if not isinstance(h.get("triggers"), list) or SUBMISSION in h["triggers"]
        ]
        return url_health(urls, expected_url, f"Paperform form {form}", _HOW_TO_ADD)
