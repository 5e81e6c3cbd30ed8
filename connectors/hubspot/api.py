"""HubSpot's Forms API (the submissions of a form), for reconciliation (connectors/reconciling).

`GET /form-integrations/v1/submissions/forms/{formGuid}`: its `conversionId` is the webhook's
`conversion-id`. The API facts relied on, with their sources: docs/providers/hubspot.md,
"Reconciliation (missed webhooks)".
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, SecretStr

from connectors import _answers
from connectors.base import NormalizeContext, SourceSettings, UnsupportedPayload
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
from hub.submission import Submission

if TYPE_CHECKING:
    from hub.sender import Sender

from connectors import hubspot

API_BASE = "https://api.hubapi.com"
"""HubSpot's API host for every account (EU accounts included); `api_base_url` is for tests."""
PAGE_SIZE = 50
"""`limit`: the documented maximum (default 20)."""
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MULTIPLE = ";"
"""How HubSpot writes a multi-checkbox property's values in one string (the webhook's property values)."""

# Shared with the connector (connectors/hubspot/__init__.py): epoch-millisecond times and names.

_MAX_MILLIS_DIGITS = 15  # epoch milliseconds have 13 digits until the year 2286


def millis(value: object, where: str) -> int:
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    digits = text.removeprefix("-")
    # Bounded before int(): a 4,301-digit number would raise, and no longer one is a time.
    if not (digits.isascii() and digits.isdigit()) or len(digits) > _MAX_MILLIS_DIGITS:
        raise UnsupportedPayload(f"{where} is not an epoch-milliseconds number")
    return int(text)


def instant(ms: int, where: str) -> datetime:
    # Integer arithmetic: a float division would round 14:03:27.501 to .500999.
    try:
        return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)
    except (OverflowError, OSError, ValueError):
        raise UnsupportedPayload(f"{where} is not a time a computer calendar holds") from None


def stripped(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def full_name(first: str | None, last: str | None) -> str | None:
    return " ".join(filter(None, (first, last))) or None


class HubSpotCredentials(Credentials):
    access_token: SecretStr = Field(
        description="the access token of a private app with the `forms` scope (Settings > Integrations > "
        "Private Apps > the app > Auth)"
    )
    env_hint: ClassVar[str] = "HUBSPOT_ACCESS_TOKEN"

    @classmethod
    def problem(cls, token: str) -> str | None:
        if _GUID.fullmatch(token):
            # The source's `secret` (an app's client secret) and the sunset hapikey are GUIDs; a token is not.
            return (
                "looks like an app's client secret or an old API key (a GUID): "
                "use the access token of a private app with the forms scope (Settings > Integrations > "
                "Private Apps > the app > Auth, pat-...)"
            )
        if len(token) < 20:
            return (
                "must be the whole access token of a private app (pat-...), "
                "from Settings > Integrations > Private Apps > the app > Auth"
            )
        return None


class HubSpotReconcileSettings(ReconcileSettings):
    form_id: Annotated[
        str,
        checked_id(
            _GUID,
            "the form's GUID, e.g. 8a127002-724d-46be-a109-b1b34d544d1e (in the form editor's URL, "
            "app.hubspot.com/forms/<portal>/<GUID>/..., or the webhook's form-submissions[].form-id)",
            lower=True,
        ),
    ] = Field(
        min_length=1,
        description="the form's GUID (in the form editor's URL)",
        examples=["8a127002-724d-46be-a109-b1b34d544d1e"],
    )
    credentials: HubSpotCredentials
    api_base_url: Annotated[str, checked_base_url(API_BASE)] = API_BASE


def _values(item: dict[str, Any]) -> dict[str, Any]:
    """`values[{name, value}]` by name, a name listed more than once (a multi-checkbox, if the API
    lists its choices apart) joined with `;` as the contact property holds it; order kept."""
    grouped: defaultdict[str, list[Any]] = defaultdict(list)
    for pair in _answers.items(item, "values", "results[]"):
        name = pair.get("name")
        if not isinstance(name, str) or not name:
            raise UnsupportedPayload("results[].values[] has an entry without a name")
        grouped[name].append(pair.get("value"))
    return {
        name: found[0]
        if len(found) == 1
        else _MULTIPLE.join(str(v) for v in found if not _answers.is_empty(v))
        for name, found in grouped.items()
    }


def _listed_submission(
    item: dict[str, Any], form_id: str, conversion_id: str, submitted_at: datetime
) -> Submission:
    values = _values(item)
    answers = _answers.collect(
        _answers.answer(name, name, "property", value) for name, value in values.items()
    )
    page_url = item.get("pageUrl")
    return _answers.submission(
        hubspot.connector.provider,
        NormalizeContext("pending", "pending", submitted_at),
        answers,
        form_id=form_id,
        event_id=conversion_id,
        submitted_at=submitted_at,
        respondent_email=stripped(values.get("email")),
        name=full_name(stripped(values.get("firstname")), stripped(values.get("lastname"))),
        metadata={"page_url": page_url} if page_url not in (None, "") else {},
    )


def _listed(item: object, form_id: str, what: str) -> Read:
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("conversionId"), str)
        or not item["conversionId"]
    ):
        raise ReconcileFailed(f"{what}: a submission has no conversionId")
    conversion_id: str = item["conversionId"]
    try:
        at = millis(item.get("submittedAt"), "submittedAt")
        submitted_at = instant(at, "submittedAt")
    except UnsupportedPayload:
        raise ReconcileFailed(f"{what}: submission {conversion_id} has no readable submittedAt") from None
    return read_response(
        conversion_id, submitted_at, partial(_listed_submission, item, form_id, conversion_id, submitted_at)
    )


def _next_after(body: dict[str, Any]) -> str | None:
    paging = body.get("paging")
    following = paging.get("next") if isinstance(paging, dict) else None
    after = following.get("after") if isinstance(following, dict) else None
    return after if isinstance(after, str) and after else None


class HubSpotReconciler(Reconciler):
    """`GET /form-integrations/v1/submissions/forms/{formGuid}`: newest first, by `after` cursor, no date
    filter, so the listing stops at the first page that reaches back before the window.

    HubSpot's workflow API (the only place the "Send a webhook" action lives) is in beta and does not
    document that action's fields, so `webhook_health` stays None."""

    Settings: ClassVar[type[ReconcileSettings]] = HubSpotReconcileSettings
    page_size: ClassVar[int] = PAGE_SIZE
    api: ClassVar[str] = "HubSpot Forms API"

    def warnings(self, settings: Any) -> list[str]:
        return [
            "HubSpot does not document that a workflow webhook's conversion-id is the Forms API's"
            " conversionId: before scheduling, run `hookhub reconcile <source> --dry-run --since 1d` and"
            " check that submissions whose webhooks arrived are not listed as missing"
        ]

    async def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        assert isinstance(settings, HubSpotReconcileSettings)
        url = f"{settings.api_base_url}/form-integrations/v1/submissions/forms/{settings.form_id}"
        seen: set[str] = set()
        after: str | None = None
        page = 0
        while True:
            page += 1
            what = f"list submissions of HubSpot form {settings.form_id} (page {page})"
            body = await get_json(
                http,
                url,
                what=what,
                headers=settings.credentials.bearer(),
                params={"limit": str(PAGE_SIZE), **({"after": after} if after else {})},
                sleep=self.sleep,
                denied="the HubSpot access token was refused (rotated, its private app deleted, or "
                "without the forms scope): copy the current token from Settings > Integrations > Private "
                "Apps > the app > Auth into reconcile.credentials.access_token",
                not_found=f"no form {settings.form_id} in this HubSpot account: check reconcile.form_id (the "
                "GUID in the form editor's URL) and that the private app belongs to the form's account",
            )
            items = list_in(body, "results", what)
            read: list[Read] = []
            reached_back = False
            for item in items:
                response = _listed(item, settings.form_id, what)
                if response.submitted_at < window.since:
                    reached_back = True  # newest first: every later one is older still
                elif response.submitted_at < window.until and response.response_id not in seen:
                    seen.add(response.response_id)
                    read.append(response)
            yield page_of(reversed(read))  # oldest first within the page; the API has no total
            after = _next_after(body)
            if reached_back or after is None or not items:
                return
