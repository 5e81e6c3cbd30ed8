"""Wufoo's REST API v3 (entries, fields and the form), for reconciliation (connectors/reconciling).

The API facts relied on, with their sources and what is unconfirmed: docs/providers/wufoo.md,
"Reconciliation (missed webhooks)". A listed entry is rebuilt as the webhook's form body and normalized
by the connector itself, so both paths give the same answers; its response id is `EntryId`, kept per
form like the event id.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, model_validator

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
    Window,
    checked_base_url,
    checked_id,
    checked_zone,
    get_json,
    list_in,
    page_of,
    read_response,
)
from hub.submission import Submission

if TYPE_CHECKING:
    from hub.sender import Sender

from connectors import wufoo

FIELD_ID = re.compile(r"^Field\d+$")
"""A body key holding a field's value (`Field<N>`): the webhook's, and a listed entry's."""
PAGE_SIZE = 100
"""`pageSize`: the most Wufoo's entries API returns per call (default 25)."""
FILTER_ZONE = ZoneInfo("America/Los_Angeles")
"""Wufoo reads filter dates as PST/PDT, whatever the account's zone."""
_STAMP = "%Y-%m-%d %H:%M:%S"
_SLACK = timedelta(seconds=1)
"""`DateCreated` has whole seconds and `Is_after`/`Is_before` compare strictly: the asked range is widened
by this on both sides (a response listed twice is one key, so the margin costs nothing)."""
_API_KEY = re.compile(r"[A-Za-z0-9]{4}(?:-[A-Za-z0-9]{4}){3}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_FILE_VALUE = re.compile(r"^(?P<name>.*?)\s*\((?P<url>https?://\S+)\)\s*$", re.DOTALL)
_PARTIAL = "0"


class WufooCredentials(Credentials):
    api_key: SecretStr = Field(
        description="the API key of a Wufoo user who can see the form (such as AB12-CD34-EF56-GH78)"
    )
    env_hint: ClassVar[str] = "WUFOO_API_KEY"

    @classmethod
    def problem(cls, key: str) -> str | None:
        if _API_KEY.fullmatch(key):
            return None
        return (
            "must be a Wufoo API key, four groups of four letters or digits ("
            "such as AB12-CD34-EF56-GH78) from Form Manager > the form's More > API Information"
        )


class WufooReconcileSettings(ReconcileSettings):
    subdomain: Annotated[
        str,
        checked_id(
            _NAME, "the account's subdomain: letters, digits and '-', as in <subdomain>.wufoo.com", lower=True
        ),
    ] = Field(description="the account's subdomain: <subdomain>.wufoo.com", examples=["acme"])
    form_id: Annotated[
        str,
        checked_id(
            _NAME, "the form's hash (such as s1afea8b1vk0jf7, under API Information) or its URL title"
        ),
    ] = Field(description="the form's hash (API Information) or its URL title", examples=["s1afea8b1vk0jf7"])
    credentials: WufooCredentials
    webhook_metadata: bool = Field(
        default=True,
        description="whether the webhook sends Field and Form Structures (metadata=true): without them the "
        "webhook has no form id and labels answers by field id, and a listed entry must look the same",
    )
    timezone: Annotated[str, checked_zone("America/Chicago or UTC")] = Field(
        default="UTC", description="the zone of the API key's user, in which DateCreated is"
    )
    api_base_url: Annotated[str | None, checked_base_url("https://<subdomain>.wufoo.com")] = Field(
        default=None, description="https://<subdomain>.wufoo.com unless set"
    )

    @model_validator(mode="after")
    def _default_base(self) -> Self:
        if self.api_base_url is None:
            self.api_base_url = f"https://{self.subdomain}.wufoo.com"
        return self


def _entry_form(entry: dict[str, Any], fields: list[dict[str, Any]], form: dict[str, Any] | None) -> bytes:
    """The webhook's form body for this listed entry: its `Field<N>` values (an upload's "name (url)" split
    into the value and `<id>-url`), entry info, and, where the webhook sends them, the structures."""
    files = {str(f.get("ID")) for f in fields if f.get("Type") == "file"}
    files |= {str(s.get("ID")) for f in fields if f.get("Type") == "file" for s in f.get("SubFields") or []}
    body: dict[str, str] = {}
    for key, value in entry.items():
        if not FIELD_ID.match(key) or value is None:
            continue
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UnsupportedPayload(f"entry field {key} is not text")
        text = str(value)
        upload = _FILE_VALUE.match(text) if key in files else None
        body[key] = upload.group("name") if upload else text
        if upload:
            body[f"{key}-url"] = upload.group("url")
    info = {"CreatedBy": entry.get("CreatedBy"), "LastUpdated": entry.get("DateUpdated")}
    info |= {"UpdatedBy": entry.get("UpdatedBy"), "DateCreated": entry.get("DateCreated")}
    body |= {k: str(v) for k, v in info.items() if isinstance(v, str) and v}
    body["EntryId"] = str(entry["EntryId"])
    if form is not None:
        body["FieldStructure"] = json.dumps(
            {"Fields": [f for f in fields if FIELD_ID.match(str(f.get("ID")))]}
        )
        body["FormStructure"] = json.dumps({k: form[k] for k in ("Name", "Url", "Hash") if k in form})
    return urlencode(body).encode("ascii")


def _normalized(
    entry: dict[str, Any], fields: list[dict[str, Any]], form: dict[str, Any] | None, at: datetime
) -> Submission:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    request = InboundRequest("GET", "", headers, _entry_form(entry, fields, form))
    submission = wufoo.connector.normalize(request, NormalizeContext("pending", "pending", at))
    return submission.model_copy(update={"submitted_at": at})


class WufooReconciler(Reconciler):
    """`GET /api/v3/forms/{form}/entries.json` by `pageStart` (oldest `EntryId` first), filtered on
    `DateCreated`; `GET /forms/{form}.json` and `/fields.json` once when anything is listed.

    Wufoo's API can add and delete a webhook but not list one, so `webhook_health` stays None."""

    Settings: ClassVar[type[ReconcileSettings]] = WufooReconcileSettings
    page_size: ClassVar[int] = PAGE_SIZE
    api: ClassVar[str] = "Wufoo API"

    def _call(self, settings: WufooReconcileSettings) -> dict[str, Any]:
        # Basic auth: the API key as user name; Wufoo does not read the password.
        user = base64.b64encode(
            f"{settings.credentials.api_key.get_secret_value()}:hookhub".encode()
        ).decode()
        return {
            "headers": {"authorization": f"Basic {user}", "accept": "application/json"},
            "sleep": self.sleep,
            "denied": "the Wufoo API key was refused (reset, its user removed, or the user may not see this "
            "form): copy the key from the form's API Information (Form Manager > More) into "
            "reconcile.credentials.api_key, and check reconcile.subdomain",
            "not_found": f"no form {settings.form_id!r} on {settings.subdomain}.wufoo.com: check "
            "reconcile.form_id (the form's hash, under API Information) and reconcile.subdomain",
        }

    def warnings(self, settings: Any) -> list[str]:
        assert isinstance(settings, WufooReconcileSettings)
        sends = "sends" if settings.webhook_metadata else "does not send"
        return [
            f"reconcile.webhook_metadata says the webhook {sends} Field and Form Structures: if it is"
            " otherwise, every entry looks missing once (one key has the form id, the other not). Run"
            " `hookhub reconcile <source> --dry-run --since 1d` and check that entries whose webhooks"
            " arrived are not listed as missing"
        ]

    async def _get(
        self, http: Sender, settings: WufooReconcileSettings, path: str, what: str, **params: str
    ) -> Any:
        url = f"{settings.api_base_url}/api/v3/forms/{settings.form_id}{path}"
        return await get_json(http, url, what=what, params=params or None, **self._call(settings))

    async def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        assert isinstance(settings, WufooReconcileSettings)
        zone = ZoneInfo(settings.timezone)
        since = (window.since - _SLACK).astimezone(FILTER_ZONE).strftime(_STAMP)
        until = (window.until + _SLACK).astimezone(FILTER_ZONE).strftime(_STAMP)
        query = {
            "Filter1": f"DateCreated Is_after {since}",
            "Filter2": f"DateCreated Is_before {until}",
            "match": "AND",
            "sort": "EntryId",
            "sortDirection": "ASC",
            "system": "true",
            "pageSize": str(PAGE_SIZE),
        }
        structure: tuple[list[dict[str, Any]], dict[str, Any] | None] | None = None
        seen: set[str] = set()
        start = 0
        while True:
            what = f"list entries of Wufoo form {settings.form_id} (from {start})"
            body = await self._get(http, settings, "/entries.json", what, **query, pageStart=str(start))
            entries = list_in(body, "Entries", what)
            found = [r for entry in entries if (r := self._entry(entry, zone, what)) and r[1] not in seen]
            if found and structure is None:
                structure = await self._structure(http, settings)
            read: list[Read] = []
            for entry, entry_id, at in found:
                seen.add(entry_id)
                fields, form = structure or ([], None)
                # An unreadable entry keeps the key its webhook has: `<form Hash>/<EntryId>`.
                form_id = (
                    (_answers.optional_text(form, "Hash") or _answers.optional_text(form, "Url"))
                    if form
                    else None
                )
                normalize = partial(_normalized, entry, fields, form, at)
                read.append(read_response(entry_id, at, normalize, form_id))
            yield page_of(read)
            if len(entries) < PAGE_SIZE:
                return
            start += len(entries)

    @staticmethod
    def _entry(entry: Any, zone: ZoneInfo, what: str) -> tuple[dict[str, Any], str, datetime] | None:
        if not isinstance(entry, dict):
            raise ReconcileFailed(f"{what}: an entry is not an object")
        if str(entry.get("CompleteSubmission", "1")) == _PARTIAL:
            return None  # a partial entry: no webhook is sent for it
        entry_id, created = entry.get("EntryId"), entry.get("DateCreated")
        if not isinstance(entry_id, (str, int)) or isinstance(entry_id, bool) or not str(entry_id).strip():
            raise ReconcileFailed(f"{what}: an entry has no EntryId")
        try:
            at = datetime.strptime(str(created).strip(), _STAMP).replace(tzinfo=zone).astimezone(UTC)
        except ValueError:
            raise ReconcileFailed(f"{what}: entry {entry_id} has no readable DateCreated") from None
        return entry, str(entry_id).strip(), at

    async def _structure(
        self, http: Sender, settings: WufooReconcileSettings
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The form's fields (for uploads, and the webhook's FieldStructure) and, where the webhook sends
        structures, the form (`Hash`, `Name`, `Url`: its FormStructure)."""
        what = f"list fields of Wufoo form {settings.form_id}"
        body = await self._get(http, settings, "/fields.json", what)
        fields = list_in(body, "Fields", what)
        if not settings.webhook_metadata:
            return [f for f in fields if isinstance(f, dict)], None
        what = f"read Wufoo form {settings.form_id}"
        body = await self._get(http, settings, ".json", what)
        forms = body.get("Forms") if isinstance(body, dict) else None
        if (
            not isinstance(forms, list)
            or not forms
            or not isinstance(forms[0], dict)
            or not forms[0].get("Hash")
        ):
            raise ReconcileFailed(f"{what}: the answer has no form with a Hash")
        return [f for f in fields if isinstance(f, dict)], forms[0]
