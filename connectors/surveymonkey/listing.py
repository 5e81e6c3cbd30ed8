"""Reconciliation of a SurveyMonkey source: `GET /v3/surveys/{id}/responses/bulk` in a window, and
`GET /v3/webhooks` (+ `/v3/webhooks/{id}`) for the webhook's health.

The source's Options hold the access token and the API host; the `reconcile:` block adds the survey to
list (a webhook callback names its survey, the source does not) and may give its own token or host.
Bulk items have the shape of `/responses/{id}/details`, so they become Submissions through the fetch
step's own `sm_api.completed`: a listed response and a fetched webhook's carry the same answers.

Followed (docs/providers/surveymonkey.md, "Reconciliation", lists the sources): bulk takes `page`,
`per_page` (max 100), `status` (completed), `start_modified_at`/`end_modified_at`,
`sort_by=date_modified`, `sort_order=ASC`, and answers `data`, `total`, `links.next`; dates are
`YYYY-MM-DDTHH:MM:SS+HH:MM`, UTC. Whether the date bounds are inclusive is not documented: the request
asks for one second more on each side and the window is applied here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr, field_validator

from connectors.base import SourceSettings
from connectors.reconciling import (
    Credentials,
    Read,
    ReconcileFailed,
    Reconciler,
    ReconcileSettings,
    ResponsePage,
    Sleep,
    WebhookHealth,
    Window,
    bare_url,
    checked_id,
    get_json,
    page_of,
    read_response,
    same_endpoint,
    url_host,
)
from connectors.surveymonkey import api as sm_api
from hub.sender import Sender
from hub.submission import Submission, parse_instant

PER_PAGE = 100
"""The bulk endpoint's maximum."""
MAX_PAGES = 2000
_SUBMITTED = "response_completed"
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
DENIED = (
    "SurveyMonkey refused the access token (revoked, expired, from another app, or without the "
    "View Responses / View Response Details scopes): put a valid token in the source's access_token "
    "(or reconcile.credentials.access_token)"
)
NOT_FOUND = (
    "no such survey for this token: check survey_id, and api_base_url for accounts in the EU or "
    "Canadian data centre"
)


class SurveyMonkeyCredentials(Credentials):
    access_token: SecretStr = Field(description="the app's access token, e.g. ${SURVEYMONKEY_ACCESS_TOKEN}")
    env_hint: ClassVar[str] = "SURVEYMONKEY_ACCESS_TOKEN"

    @classmethod
    def problem(cls, token: str) -> str | None:
        if len(token) >= 16:
            return None
        return (
            "does not look like a SurveyMonkey access token (16 or more "
            "characters, from your app's Settings page in the Developer Portal)"
        )


class SurveyMonkeyReconcileSettings(ReconcileSettings):
    """`reconcile:` of a surveymonkey source."""

    survey_id: Annotated[
        str,
        checked_id(
            _ID, "the survey's API id (digits, as GET /v3/surveys lists it), not its URL", before=True
        ),
    ] = Field(description="the survey to list (GET /v3/surveys lists their ids)", examples=["405631222"])
    credentials: SurveyMonkeyCredentials | None = Field(
        default=None, description="default: the source's access_token"
    )
    api_base_url: str | None = Field(default=None, description="default: the source's api_base_url")

    @field_validator("api_base_url")
    @classmethod
    def _base(cls, value: str | None) -> str | None:
        return None if value is None else sm_api.api_base(value)


def _access(settings: SurveyMonkeyReconcileSettings, source: SourceSettings) -> tuple[str, str]:
    """(API base, token) for the run: the reconcile block's, else the source's."""
    options = source.options
    own = options if isinstance(options, sm_api.FetchOptions) else sm_api.FetchOptions()
    if settings.credentials is not None:
        token: str | None = settings.credentials.access_token.get_secret_value()
    else:
        token = own.access_token
    if not token:
        raise ReconcileFailed(
            "no access token: set access_token on the source (or reconcile.credentials.access_token)",
            permanent=True,
        )
    return settings.api_base_url or own.api_base_url, token


def _date(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _time(item: dict[str, Any], key: str) -> datetime | None:
    value = item.get(key)
    try:
        return parse_instant(value) if isinstance(value, str) and value else None
    except (ValueError, OverflowError):
        return None


def _submission(
    base: str, survey_id: str, survey: dict[str, Any], item: dict[str, Any], at: datetime
) -> Submission:
    """A bulk item as the fetch step completes a webhook's response (`sm_api.completed`)."""
    response_id = str(sm_api.id_text(item.get("id")))
    metadata: dict[str, Any] = {"response_id": response_id, "survey_id": survey_id}
    for key in ("collector_id", "recipient_id"):
        value = sm_api.id_text(item.get(key))
        if value is not None and value != "0":
            metadata[key] = value
    # No event id of the API's own: the response id stands for it (the hub sets id and source).
    thin = Submission(
        id="pending",
        source="pending",
        provider="surveymonkey",
        form_id=survey_id,
        event_id=response_id,
        submitted_at=at,
        metadata=metadata,
    )
    href = f"{base}/v3/surveys/{survey_id}/responses/{response_id}"
    return sm_api.completed(thin, item, survey, href)


class SurveyMonkeyReconciler(Reconciler):
    Settings = SurveyMonkeyReconcileSettings
    page_size = PER_PAGE
    api = "SurveyMonkey API v3 (GET /v3/surveys/{id}/responses/bulk)"

    def __init__(self, sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(sleep)

    async def _get(
        self, http: Sender, url: str, token: str, what: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        data = await get_json(
            http,
            url,
            what=what,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            params=params,
            sleep=self.sleep,
            denied=DENIED,
            not_found=NOT_FOUND,
        )
        if not isinstance(data, dict):
            raise ReconcileFailed(f"{what}: the answer is not a JSON object")
        return data

    async def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        base, token = _access(settings, source)
        survey_id = settings.survey_id
        survey_url = f"{base}/v3/surveys/{survey_id}/details"
        survey = await self._get(http, survey_url, token, f"read survey {survey_id}")
        # Completion sets date_modified: a response started before the window and completed in it is
        # listed; one created more than `lookback` before the window is an old response edited since.
        oldest = window.since - timedelta(seconds=settings.lookback)
        second = timedelta(seconds=1)
        params = {
            "status": "completed",
            "start_modified_at": _date(window.since - second),
            "end_modified_at": _date(window.until + second),
            "sort_by": "date_modified",
            "sort_order": "ASC",
            "per_page": str(PER_PAGE),
        }
        what = f"list responses of survey {survey_id}"
        for page in range(1, MAX_PAGES + 1):
            data = await self._get(
                http,
                f"{base}/v3/surveys/{survey_id}/responses/bulk",
                token,
                what,
                {**params, "page": str(page)},
            )
            items = [i for i in data.get("data") or [] if isinstance(i, dict) and sm_api.id_text(i.get("id"))]
            pages = [p for i in items if isinstance(i.get("pages"), list) for p in i["pages"]]
            if not set(sm_api.answered_ids({"pages": pages})) <= set(sm_api.questions_of(survey)):
                survey = await self._get(http, survey_url, token, f"read survey {survey_id}")  # edited
            read: list[Read] = []
            for item in items:
                at, created = _time(item, "date_modified"), _time(item, "date_created")
                if at is None or not window.since <= at < window.until or (created and created < oldest):
                    continue
                if item.get("response_status") not in (None, "completed"):
                    continue
                response_id = str(sm_api.id_text(item.get("id")))
                normalize = partial(_submission, base, survey_id, survey, item, at)
                read.append(read_response(response_id, at, normalize))
            total = data.get("total")
            yield page_of(read, total if isinstance(total, int) else None)
            if not items or not (data.get("links") or {}).get("next"):
                return
        raise ReconcileFailed(
            f"survey {survey_id} has more than {MAX_PAGES} pages of responses in the window"
        )

    async def webhook_health(
        self, source: SourceSettings, settings: Any, expected_url: str | None, http: Sender
    ) -> WebhookHealth | None:
        """The account's `response_completed` webhooks on this survey (SurveyMonkey documents no
        enabled flag: a webhook is there or not, and sends to its subscription_url)."""
        base, token = _access(settings, source)
        survey_id = settings.survey_id
        ids: list[str] = []
        for page in range(1, MAX_PAGES + 1):
            data = await self._get(
                http, f"{base}/v3/webhooks", token, "list webhooks", {"page": str(page), "per_page": "100"}
            )
            found = [sm_api.id_text(w.get("id")) for w in data.get("data") or [] if isinstance(w, dict)]
            ids += [i for i in found if i]
            if not found or not (data.get("links") or {}).get("next"):
                break
        on_survey, to_us = [], []
        for webhook_id in ids:
            hook = await self._get(
                http, f"{base}/v3/webhooks/{webhook_id}", token, f"read webhook {webhook_id}"
            )
            if hook.get("event_type") != _SUBMITTED:
                continue
            url = str(hook.get("subscription_url") or "")
            objects = [str(o) for o in hook.get("object_ids") or []]
            if hook.get("object_type") == "survey" and survey_id in objects:
                on_survey.append((webhook_id, url))
            if expected_url and same_endpoint(url, expected_url):
                to_us.append(webhook_id)  # also a collector-filtered one sending here
        if expected_url and to_us:
            return WebhookHealth("ok", f"webhook {to_us[0]} sends response_completed to this source")
        if expected_url and on_survey:
            webhook_id, url = on_survey[0]
            return WebhookHealth(
                "elsewhere",
                f"webhook {webhook_id} for survey {survey_id} sends to {url_host(url)}, not to "
                f"{bare_url(expected_url)}",
            )
        if on_survey:
            return WebhookHealth(
                "ok", f"webhook {on_survey[0][0]} sends response_completed of survey {survey_id}"
            )
        return WebhookHealth(
            "missing",
            f"no response_completed webhook of this account covers survey {survey_id}: create one "
            "(POST /v3/webhooks, see docs/providers/surveymonkey.md)",
        )
