"""Formstack's API v2 (submissions, fields and webhooks), for reconciliation (connectors/reconciling).

The API facts relied on, with their sources and what is unconfirmed: docs/providers/formstack.md,
"Reconciliation (missed webhooks)". A listed submission is rebuilt as the webhook's JSON body and
normalized by the connector itself, so both paths give the same answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator

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
    checked_zone,
    get_json,
    list_in,
    page_of,
    read_response,
    url_health,
)
from hub.submission import Submission

if TYPE_CHECKING:
    from hub.sender import Sender

from connectors import formstack

API_BASE = "https://www.formstack.com/api/v2"
PAGE_SIZE = 100
"""`per_page`: the most Formstack's API v2 returns per call (default 25)."""
TIMEZONE = "America/New_York"
"""The zone of `min_time`/`max_time` and of a listed submission's `timestamp` ("EST" in Formstack's own
PHP client); `timezone` overrides it."""
_STAMP = "%Y-%m-%d %H:%M:%S"
_SLACK = timedelta(seconds=1)
"""`timestamp` has whole seconds and whether `min_time`/`max_time` are inclusive is not documented: the
asked range is widened by this on both sides, then cut to [since, until) here."""
_FORM_ID = re.compile(r"[0-9]+")
_TOKEN = re.compile(r"[A-Za-z0-9]{16,128}")
FieldKeys = Literal["field_names", "field_ids", "api_friendly"]


class FormstackCredentials(Credentials):
    token: SecretStr = Field(description="an API v2 access token (Settings > API > your application)")
    encryption_password: SecretStr | None = Field(
        default=None, description="the form's encryption password, for an encrypted form"
    )
    env_hint: ClassVar[str] = "FORMSTACK_TOKEN"

    @classmethod
    def problem(cls, token: str) -> str | None:
        if _TOKEN.fullmatch(token):
            return None
        return (
            "must be a Formstack API access token: the letters and digits shown as "
            "the access token of your application (Settings > API, https://www.formstack.com/admin/apiKey/main)"
        )

    @field_validator("encryption_password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        # A password may hold spaces: only what is never a password is refused.
        text = None if value is None else value.get_secret_value()
        if text is not None and (not text.strip() or "${" in text or "\n" in text):
            raise ValueError(
                "credentials.encryption_password is empty, an unexpanded ${...} or more than one line: set "
                "its environment variable (e.g. FORMSTACK_ENCRYPTION_PASSWORD) where hookhub runs"
            )
        return value


class FormstackReconcileSettings(ReconcileSettings):
    form_id: Annotated[
        str, checked_id(_FORM_ID, "the form's id: the digits in its builder URL", before=True)
    ] = Field(
        description="the form's id: the digits in its builder URL (/admin/form/builder/<id>)",
        examples=["5123456"],
    )
    credentials: FormstackCredentials
    field_keys: FieldKeys = Field(
        default="field_names",
        description="how the webhook keys its fields: its 'post using field names / IDs / API-friendly keys'",
    )
    timezone: Annotated[str, checked_zone(TIMEZONE)] = Field(
        default=TIMEZONE, description="the IANA zone of the API's timestamps"
    )
    api_base_url: Annotated[str, checked_base_url(API_BASE)] = API_BASE


def _field_key(field: dict[str, Any], keys: FieldKeys) -> str | None:
    """The key the webhook posts this field under, as its `field_keys` setting says."""
    fid = str(field.get("id") or "")
    label, name = field.get("label"), field.get("name")
    if keys == "field_ids":
        return fid or None
    if keys == "api_friendly" and isinstance(name, str) and name:
        return name
    return label if isinstance(label, str) and label else (fid or None)


def _data_values(data: Any) -> dict[str, Any]:
    """A listed submission's `data` as field id -> value: an object of {field, value} by field id, or a
    list of them."""
    if data in (None, [], {}):
        return {}
    if isinstance(data, dict):
        pairs: list[tuple[str | None, Any]] = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, list):
        pairs = [(None, v) for v in data]
    else:
        raise UnsupportedPayload("the submission's data is neither an object nor a list of fields")
    out: dict[str, Any] = {}
    for key, item in pairs:
        if isinstance(item, dict) and "value" in item:
            out[str(item.get("field") or key)] = item["value"]
        elif key is not None:
            out[key] = item  # a bare value by field id
        else:
            raise UnsupportedPayload("a field of the submission's data has no field id and value")
    return out


def _webhook_body(item: dict[str, Any], form_id: str, fields: dict[str, str]) -> bytes:
    """The webhook's JSON body for this listed submission: `FormID`, each answer under the key the webhook
    uses (`fields`: field id -> key, in form order), `UniqueID` = the submission id."""
    values = _data_values(item.get("data"))
    body: dict[str, Any] = {"FormID": form_id}
    known = [fid for fid in fields if fid in values] + [fid for fid in values if fid not in fields]
    for fid in known:
        body[fields.get(fid, fid)] = values[fid]
    body["UniqueID"] = str(item["id"])
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _normalized(item: dict[str, Any], form_id: str, fields: dict[str, str], at: datetime) -> Submission:
    request = InboundRequest(
        "GET", "", {"content-type": "application/json"}, _webhook_body(item, form_id, fields)
    )
    submission = formstack.connector.normalize(request, NormalizeContext("pending", "pending", at))
    return submission.model_copy(update={"submitted_at": at})


class FormstackReconciler(Reconciler):
    """`GET /form/{id}/submission.json` by page (oldest first), `GET /form/{id}/field.json` once for the
    webhook's keys when anything is listed, and `GET /form/{id}/webhook.json` for the webhook check."""

    Settings: ClassVar[type[ReconcileSettings]] = FormstackReconcileSettings
    page_size: ClassVar[int] = PAGE_SIZE
    api: ClassVar[str] = "Formstack API"

    def _call(self, settings: FormstackReconcileSettings) -> dict[str, Any]:
        headers = settings.credentials.bearer()
        if settings.credentials.encryption_password is not None:
            headers["x-fs-encryption-password"] = settings.credentials.encryption_password.get_secret_value()
        return {
            "headers": headers,
            "sleep": self.sleep,
            "denied": "the Formstack access token was refused (revoked, its application deleted, or its user "
            "cannot see the form): copy the access token of your application under Settings > API into "
            "reconcile.credentials.token",
            "not_found": f"no form {settings.form_id} for this token: check reconcile.form_id (the digits "
            "in the form's builder URL)",
        }

    async def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        assert isinstance(settings, FormstackReconcileSettings)
        zone = ZoneInfo(settings.timezone)
        url = f"{settings.api_base_url}/form/{settings.form_id}/submission.json"
        query = {
            "min_time": (window.since - _SLACK).astimezone(zone).strftime(_STAMP),
            "max_time": (window.until + _SLACK).astimezone(zone).strftime(_STAMP),
            "per_page": str(PAGE_SIZE),
            "sort": "ASC",
            "data": "true",
        }
        fields: dict[str, str] | None = None
        seen: set[str] = set()
        page = 1
        while True:
            what = f"list submissions of Formstack form {settings.form_id} (page {page})"
            body = await get_json(
                http, url, what=what, params={**query, "page": str(page)}, **self._call(settings)
            )
            items = list_in(body, "submissions", what)
            found = [self._time(item, zone, what) for item in items]
            found = [
                (i, sid, at) for i, sid, at in found if window.since <= at < window.until and sid not in seen
            ]
            if found and fields is None:
                fields = await self._fields(http, settings)
            read: list[Read] = []
            for item, sid, at in found:
                seen.add(sid)
                read.append(
                    read_response(sid, at, partial(_normalized, item, settings.form_id, fields or {}, at))
                )
            total, pages = body.get("total"), body.get("pages")
            yield page_of(read, total=_count(total))
            # `pages`, not a short page, says where the listing ends (pages are not always full).
            if not items or _count(pages) is None or page >= (_count(pages) or 0):
                return
            page += 1

    @staticmethod
    def _time(item: Any, zone: ZoneInfo, what: str) -> tuple[dict[str, Any], str, datetime]:
        sid = item.get("id") if isinstance(item, dict) else None
        if not isinstance(sid, (str, int)) or isinstance(sid, bool) or not str(sid):
            raise ReconcileFailed(f"{what}: a submission has no id")
        assert isinstance(item, dict)
        try:
            at = datetime.strptime(str(item.get("timestamp")).strip(), _STAMP).replace(tzinfo=zone)
        except ValueError:
            raise ReconcileFailed(f"{what}: submission {sid} has no readable timestamp") from None
        return item, str(sid), at.astimezone(UTC)

    async def _fields(self, http: Sender, settings: FormstackReconcileSettings) -> dict[str, str]:
        """Field id -> the key the webhook posts it under, in form order."""
        what = f"list fields of Formstack form {settings.form_id}"
        body = await get_json(
            http,
            f"{settings.api_base_url}/form/{settings.form_id}/field.json",
            what=what,
            **self._call(settings),
        )
        fields = body.get("fields") if isinstance(body, dict) else body
        if not isinstance(fields, list):
            raise ReconcileFailed(f"{what}: the answer is not a list of fields")
        out: dict[str, str] = {}
        for field in fields:
            key = _field_key(field, settings.field_keys) if isinstance(field, dict) else None
            if key is not None and field.get("id") not in (None, ""):
                out[str(field["id"])] = key
        return out

    def warnings(self, settings: Any) -> list[str]:
        return [
            "Formstack does not state in words that a webhook's UniqueID is the API's submission id, nor the"
            " zone of min_time/max_time (its own client says EST): before scheduling, run `hookhub reconcile"
            " <source> --dry-run --since 1d` and check that submissions whose webhooks arrived are not listed"
            " as missing"
        ]

    async def webhook_health(
        self, source: SourceSettings, settings: Any, expected_url: str | None, http: Sender
    ) -> WebhookHealth | None:
        assert isinstance(settings, FormstackReconcileSettings)
        what = f"list webhooks of Formstack form {settings.form_id}"
        body = await get_json(
            http,
            f"{settings.api_base_url}/form/{settings.form_id}/webhook.json",
            what=what,
            **self._call(settings),
        )
        hooks = list_in(body, "webhooks", what)
        urls = [str(h.get("url") or "") for h in hooks if isinstance(h, dict)]
        return url_health(
            urls,
            expected_url,
            f"Formstack form {settings.form_id}",
            "add it again (Settings > Emails & Actions > Add New > Webhook)",
        )


def _count(value: Any) -> int | None:
    """A count Formstack sends as a number or a numeric string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None
