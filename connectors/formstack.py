"""Formstack Forms webhooks (URL-encoded by default, or JSON).

Sources: Formstack's developer docs (https://developers.formstack.com/docs/webhook-setup and the API
reference https://developers.formstack.com/reference/createwebhook-1):
developers.formstack.com/docs/webhook-setup and /docs/webhook-examples (body: field keys, `FormID`,
`UniqueID`, sub-fields as `key = value` lines when URL-encoded and objects when JSON, "include field type"
wrapping), the API's create-webhook parameters (`hmac_secret`, `content_type`, `include_field_type`) and,
from a secondary source only, `X-FS-Signature`; classic `HandshakeKey` echo [2nd]. Answer rules from
tests/fixtures/providers/README.md ("formstack" row).

Verification (`auth` option): `signature` (default) = `X-FS-Signature` holding HMAC-SHA256 of the raw body.
Its text format is unconfirmed (fixtures: `sha256=<hex>`), so `sha256=` is optional and hex or base64 are
both accepted: every form still needs the secret. `handshake-key` = the body's `HandshakeKey` field equals
the secret (classic webhooks); `url-token` = `?token=` in the webhook URL. Formstack sends no submission
time (the receive time is used) and no test events; dedupe key is `UniqueID`, which is also the response id.

Reconciliation lists the form's submissions through Formstack's API v2 (`FormstackReconciler`); the
facts it relies on, with their sources and what is unconfirmed: docs/providers/formstack.md,
"Reconciliation (missed webhooks)".
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors import _answers
from connectors._hashing import hmac_digest
from connectors._schemes import b64, matches_any
from connectors._tokens import TOKEN_PARAM, verify_query_token, verify_token
from connectors.base import (
    Connector,
    Envelope,
    InboundRequest,
    NormalizeContext,
    SourceSettings,
    UnsupportedPayload,
    VerificationFailed,
    require_secrets,
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

_SIGNATURE = "x-fs-signature"
_URLENCODED = "application/x-www-form-urlencoded"
_HANDSHAKE = "HandshakeKey"
_NOT_ANSWERS = frozenset({"FormID", "UniqueID", _HANDSHAKE})
_NAME_PARTS = ("prefix", "first", "middle", "initial", "last", "suffix")
_ADDRESS_PARTS = ("address", "address2", "city", "state", "zip", "country")
# Only these keys make a multi-line value a sub-field block, so free text with "a = b" lines stays text.
_SUB_KEYS = frozenset(_NAME_PARTS) | frozenset(_ADDRESS_PARTS) | {"field_type"}
_SUB_LINE = re.compile(r"^([A-Za-z0-9_]+) ?= ?(.*)$")


class FormstackOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auth: Literal["signature", "handshake-key", "url-token"] = "signature"


def _options(source: SourceSettings) -> FormstackOptions:
    options = source.options
    return options if isinstance(options, FormstackOptions) else FormstackOptions()


def _fields(request: InboundRequest) -> dict[str, Any]:
    """The body as key → value, whichever of Formstack's two encodings it uses."""
    media = request.media_type
    if media == "application/json" or (media != _URLENCODED and request.body.lstrip()[:1] == b"{"):
        return _answers.parse_json_object(request.body)
    try:
        pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise UnsupportedPayload("body is not UTF-8 text (after percent-decoding)") from None
    fields: dict[str, Any] = {}
    for key, value in pairs:
        # A repeated key (multi-select) becomes a list in the order sent.
        if key in fields:
            previous = fields[key]
            fields[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[key] = value
    return fields


def _sub_fields(text: str) -> dict[str, str] | None:
    matches = [_SUB_LINE.match(line) for line in text.split("\n")]
    if not all(m and m.group(1) in _SUB_KEYS for m in matches):
        return None
    return {m.group(1): m.group(2).strip() for m in matches if m}


def _joined(parts: list[Any], sep: str) -> str:
    return sep.join(str(p).strip() for p in parts if not _answers.is_empty(p) and str(p).strip())


def _typed(raw: Any) -> tuple[str, Any]:
    """(type, value): unwraps "include field type", folds name/address sub-fields into one string."""
    type_ = "text"
    if isinstance(raw, dict) and "field_type" in raw:
        type_ = str(raw["field_type"])
        rest = {k: v for k, v in raw.items() if k != "field_type"}
        raw = rest["value"] if set(rest) == {"value"} else rest
    if isinstance(raw, str):
        raw = _sub_fields(raw) or raw
        if isinstance(raw, dict) and "field_type" in raw:
            type_ = raw.pop("field_type")
    if isinstance(raw, dict) and raw and set(raw) <= set(_NAME_PARTS):
        return (type_ if type_ != "text" else "name"), _joined([raw.get(k) for k in _NAME_PARTS], " ")
    if isinstance(raw, dict) and raw and set(raw) <= set(_ADDRESS_PARTS):
        state_zip = _joined([raw.get("state"), raw.get("zip")], " ")
        parts = [raw.get("address"), raw.get("address2"), raw.get("city"), state_zip, raw.get("country")]
        return (type_ if type_ != "text" else "address"), _joined(parts, ", ")
    return type_, raw  # as sent; other objects become compact JSON text in _answers.answer


def _event_id(fields: dict[str, Any]) -> str:
    if _answers.is_empty(fields.get("UniqueID")):
        raise UnsupportedPayload("no UniqueID field: not a Formstack submission webhook")
    return _answers.text(fields, "UniqueID", "body")


def _form_id(fields: dict[str, Any]) -> str | None:
    value = fields.get("FormID")
    return str(value) if isinstance(value, (str, int)) and value != "" else None


# -- reconciliation: the submissions API (v2) ---------------------------------------------------

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
    ] = Field(description="the form's id: the digits in its builder URL (/admin/form/builder/<id>)")
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
    submission = connector.normalize(request, NormalizeContext("pending", "pending", at))
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


class FormstackConnector(Connector):
    provider = "formstack"
    title = "Formstack Forms"
    scheme = "formstack-hmac-sha256"
    stored_headers = frozenset({_SIGNATURE})
    content_types = frozenset({_URLENCODED, "application/json"})
    credential_query = frozenset({TOKEN_PARAM})
    Options = FormstackOptions
    reconciler: ClassVar[Reconciler | None] = FormstackReconciler()

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        # No scheme here carries a timestamp: `now` does not apply, dedupe on UniqueID stops replays.
        auth = _options(source).auth
        if auth == "url-token":
            return verify_query_token(request, source)
        if auth == "handshake-key":
            try:
                received = _fields(request).get(_HANDSHAKE)
            except UnsupportedPayload:
                received = None
            return verify_token(received if isinstance(received, str) else None, source, f"body {_HANDSHAKE}")
        secrets_ = require_secrets(source)
        received = (request.header(_SIGNATURE) or "").strip()
        if not received:
            raise VerificationFailed(f"missing {_SIGNATURE} header (is the webhook's HMAC secret set?)")
        if received[:7].lower() == "sha256=":
            received = received[7:]
        digests = [hmac_digest(s.encode("utf-8"), request.body) for s in secrets_]
        # `|`, not `or`: both comparisons always run.
        if not (
            matches_any([received.lower()], [d.hex() for d in digests])
            | matches_any([received], [b64(d) for d in digests])
        ):
            raise VerificationFailed("signature mismatch")

    def envelope(self, request: InboundRequest) -> Envelope:
        fields = _fields(request)
        # `UniqueID` is the submission's id, the API's submission `id`: the response id too.
        unique_id = _event_id(fields)
        return Envelope(event_id=unique_id, form_id=_form_id(fields), response_id=unique_id)

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        fields = _fields(request)
        event_id = _event_id(fields)
        answers = _answers.collect(
            _answers.answer(key, key, type_, value)
            for key, (type_, value) in ((k, _typed(v)) for k, v in fields.items() if k not in _NOT_ANSWERS)
        )
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=_form_id(fields),
            event_id=event_id,
            submitted_at=context.received_at,  # Formstack posts no submission time
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        secret = require_secrets(source)[0]
        auth = _options(source).auth
        payload: dict[str, Any] = {
            "FormID": "5000001",
            "Name": {"first": "Ada", "last": "Lovelace"},
            "Email": "ada@example.org",
            "How many tickets?": "2",
            "Address": {
                "address": "12 St James's Square",
                "city": "London",
                "zip": "SW1Y 4JH",
                "country": "United Kingdom",
            },
            "UniqueID": str(secrets.randbelow(9 * 10**9) + 10**9),  # 10 digits, fresh per sample
        }
        if auth == "handshake-key":
            payload[_HANDSHAKE] = secret
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {
            "content-type": "application/json",
            "user-agent": "FormstackWebhook/1.0 (hookhub-send-test)",
        }
        if auth == "signature":
            headers[_SIGNATURE] = "sha256=" + hmac_digest(secret.encode("utf-8"), body).hex()
        elif auth == "url-token":
            url = f"{url}{'&' if '?' in url else '?'}{urlencode({TOKEN_PARAM: secret})}"
        return InboundRequest(method="POST", url=url, headers=headers, body=body)


connector = FormstackConnector()
