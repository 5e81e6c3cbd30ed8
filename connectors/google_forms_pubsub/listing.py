"""Reconciliation of a Forms API watch source: forms.responses.list in a window, forms.watches.list.

The source's Options already hold everything the API needs (access_token or service_account_file,
api_base_url, and usually form_id): the `reconcile:` block adds only the schedule and, where the source
has no `form_id`, the form to list. Tokens are minted by the fetch step's `FormsClient`; every GET goes
through `connectors.reconciling.get_json` (retries 429/5xx, honours Retry-After).

Followed (docs/providers/google_forms_pubsub.md, "Reconciliation", lists the sources):
forms.responses.list `filter` accepts only `timestamp > N` and `timestamp >= N` (RFC3339 UTC "Zulu"), so the
window's end is applied here; `pageSize` (at most 5000; this asks for 1000 so that a page stays far below
the 16 MiB get_json reads); `pageToken` needs the same filter as the first request; `nextPageToken` is absent
on the last page. forms.watches.list returns the invoking project's watches (at most one per event type per
form) with `state` ACTIVE or SUSPENDED and the most recent delivery `errorType`; watches.renew clears it.
Identity: the fetch step stores each response under `event_id` = `responseId`, which is what the listing
gives as `response_id`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from functools import partial
from typing import Annotated, Any

from pydantic import Field

from connectors.base import FetchFailed, NormalizeContext, SourceSettings, UnsupportedPayload
from connectors.google_forms_pubsub import forms_api
from connectors.google_forms_pubsub.answers import (
    form_title,
    questions_of,
    response_submission,
)
from connectors.reconciling import (
    Read,
    ReconcileFailed,
    Reconciler,
    ReconcileSettings,
    ResponsePage,
    Sleep,
    WebhookHealth,
    Window,
    checked_id,
    get_json,
    page_of,
    read_response,
)
from hub.sender import Sender
from hub.submission import Submission, iso_utc, parse_instant

MAX_PAGES = 1000
_RESPONSES = "RESPONSES"
_FORM_ID = re.compile(r"[^/\s]+")
DENIED = (
    "Google refused the credentials: an access_token expires after 1 h (use service_account_file); "
    "otherwise share the form with the service account's e-mail and enable the Google Forms API "
    "in its Cloud project"
)


class GoogleFormsReconcileSettings(ReconcileSettings):
    """`reconcile:` of a google_forms_pubsub source. Credentials and api_base_url are the source's own."""

    form_id: Annotated[
        str | None,
        checked_id(_FORM_ID, "the form's id (the part after /forms/d/ in the form's edit URL), not a URL"),
    ] = Field(default=None, description="the form to list; default: the source's form_id (the watched form)")


def _options(source: SourceSettings) -> forms_api.FetchOptions:
    options = source.options
    if not isinstance(options, forms_api.FetchOptions):
        raise ReconcileFailed("the source's options are not Google Forms options", permanent=True)
    if not options.has_credentials:
        raise ReconcileFailed(
            "the source has no access_token or service_account_file: the Forms API cannot be read "
            "(set service_account_file)",
            permanent=True,
        )
    return options


def _form_id(settings: GoogleFormsReconcileSettings, options: forms_api.FetchOptions) -> str:
    form_id = settings.form_id or options.form_id
    if not form_id:
        raise ReconcileFailed(
            "no form to list: set form_id on the source (or under reconcile:)", permanent=True
        )
    return form_id


def _answered(response: dict[str, Any]) -> list[str]:
    """The question ids a response answers (none where its answers are not an object)."""
    answers = response.get("answers")
    return [str(q) for q in answers] if isinstance(answers, dict) else []


def _submission(
    form_id: str,
    title: str | None,
    questions: dict[str, tuple[str, str, bool]],
    response: dict[str, Any],
    at: datetime,
) -> Submission:
    """A listed response as the fetch step makes it from the same FormResponse."""
    if not isinstance(response.get("answers", {}), dict):
        raise UnsupportedPayload("the response's answers are not an object by question id")
    context = NormalizeContext("pending", "pending", at)
    return response_submission(context, form_id, title, questions, response, {})


def _in_window(response: dict[str, Any], window: Window) -> datetime | None:
    """When the response was submitted within the window (last, else first submission), or None."""
    for key in ("lastSubmittedTime", "createTime"):
        value = response.get(key)
        if not isinstance(value, str):
            continue
        try:
            at = parse_instant(value)
        except (ValueError, OverflowError):
            continue
        if window.since <= at < window.until:
            return at
    return None


class FormsReconciler(Reconciler):
    Settings = GoogleFormsReconcileSettings
    page_size = 1000
    api = "Google Forms API (forms.responses.list)"

    def __init__(self, sleep: Sleep = asyncio.sleep, client: forms_api.FormsClient | None = None) -> None:
        super().__init__(sleep)
        self.client = client or forms_api.FormsClient()
        """Its own token cache: a run does not wait on the fetch step's."""

    async def _get(
        self,
        http: Sender,
        options: forms_api.FetchOptions,
        path: str,
        what: str,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            token = await self.client.token(http, options)
        except forms_api.ApiError as exc:
            raise ReconcileFailed(str(exc), permanent=exc.status in (400, 401, 403)) from None
        except FetchFailed as exc:
            raise ReconcileFailed(str(exc), permanent=exc.permanent) from None
        try:
            data = await get_json(
                http,
                f"{options.api_base_url}/v1/{path}",
                what=what,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                params=params,
                sleep=self.sleep,
                denied=DENIED,
                not_found="no such form, or the credentials cannot open it: check form_id",
            )
        except ReconcileFailed as exc:
            if exc.permanent:
                self.client.forget_token(options)  # a refused token is minted anew next run
            raise
        if not isinstance(data, dict):
            raise ReconcileFailed(f"{what}: the answer is not a JSON object")
        return data

    async def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        options = _options(source)
        form_id = _form_id(settings, options)
        form = await self._get(http, options, f"forms/{form_id}", f"read form {form_id}")
        questions, title = questions_of(form), form_title(form)
        # The API has no upper bound: responses after `until` are read and left out.
        params = {"filter": f"timestamp >= {iso_utc(window.since)}", "pageSize": str(self.page_size)}
        for _ in range(MAX_PAGES):
            page = await self._get(
                http, options, f"forms/{form_id}/responses", f"list responses of form {form_id}", params
            )
            found = [r for r in page.get("responses") or [] if isinstance(r, dict) and r.get("responseId")]
            if any(q not in questions for r in found for q in _answered(r)):
                form = await self._get(http, options, f"forms/{form_id}", f"read form {form_id}")
                questions, title = questions_of(form), form_title(form)  # edited since the run began
            read: list[Read] = []
            for response in found:
                at = _in_window(response, window)
                if at is None:
                    continue
                normalize = partial(_submission, form_id, title, questions, response, at)
                read.append(read_response(str(response["responseId"]), at, normalize))
            yield page_of(read)
            next_token = page.get("nextPageToken")
            if not next_token or next_token == params.get("pageToken"):
                return
            params = {**params, "pageToken": str(next_token)}
        raise ReconcileFailed(f"form {form_id} has more than {MAX_PAGES} pages of responses in the window")

    async def webhook_health(
        self, source: SourceSettings, settings: Any, expected_url: str | None, http: Sender
    ) -> WebhookHealth | None:
        """The form's RESPONSES watch (the push subscription behind the topic is Pub/Sub's, which the
        Forms API cannot see: `expected_url` is not judged)."""
        options = _options(source)
        form_id = _form_id(settings, options)
        data = await self._get(
            http, options, f"forms/{form_id}/watches", f"list the watches of form {form_id}"
        )
        watches = [
            w for w in data.get("watches") or [] if isinstance(w, dict) and w.get("eventType") == _RESPONSES
        ]
        if not watches:
            return WebhookHealth(
                "missing",
                f"form {form_id} has no RESPONSES watch owned by the credentials' Cloud project (a watch "
                "expires 7 days after its creation or last renewal): set watch_id and topic_name to have "
                "hookhub renew or re-create it",
            )
        watch = next((w for w in watches if w.get("id") == options.watch_id), watches[0])
        watch_id = str(watch.get("id") or "?")
        topic = str(((watch.get("target") or {}).get("topic") or {}).get("topicName") or "")
        if watch.get("state") == "SUSPENDED":
            error = watch.get("errorType") or "no error type given"
            return WebhookHealth(
                "disabled",
                f"watch {watch_id} of form {form_id} is SUSPENDED ({error}): fix the cause, then renew the "
                "watch (watches.renew clears the error; hookhub renews it daily when watch_id is set)",
            )
        if options.topic_name and topic and topic != options.topic_name:
            return WebhookHealth(
                "elsewhere",
                f"watch {watch_id} of form {form_id} publishes to {topic}, not to the source's "
                f"topic_name {options.topic_name}",
            )
        expires = watch.get("expireTime") or "?"
        return WebhookHealth(
            "ok", f"watch {watch_id} of form {form_id} is {watch.get('state') or 'ACTIVE'}, expires {expires}"
        )
