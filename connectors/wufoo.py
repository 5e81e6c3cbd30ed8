"""Wufoo webhooks (one form-encoded POST per new entry).

Sources: Wufoo's API docs (https://github.com/wufoo/docs/blob/master/source/includes/_webhooks.md:
`handshakeKey` and `metadata` parameters; field layout observed in n8n's Wufoo trigger,
https://github.com/n8n-io/n8n/blob/master/packages/nodes-base/nodes/Wufoo/WufooTrigger.node.ts); answer
rules from tests/fixtures/providers/README.md ("wufoo" row and the `handshake-key-body` scheme).

Wufoo signs nothing. The only proof of origin is the webhook's Handshake Key, which Wufoo echoes in
the body as `HandshakeKey`; we compare it in constant time with every configured secret. It travels
inside the body, so it is stored with the raw request (the spool keeps bodies byte for byte).

Entry ids (`EntryId`) are numbered per form, so one source should receive one form: the spool
dedupes on (source, event id). Without `metadata=true` Wufoo sends no titles, no types and no form
hash: answers are labelled by field id and `form_id` is unknown.

Reconciliation lists the form's entries through Wufoo's REST API v3 (`WufooReconciler`); the facts it
relies on, with their sources and what is unconfirmed: docs/providers/wufoo.md, "Reconciliation
(missed webhooks)". Its response id is `EntryId`, kept per form like the event id.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self
from urllib.parse import unquote_plus, urlencode
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, model_validator

from connectors import _answers
from connectors._tokens import verify_token
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
    Window,
    checked_base_url,
    checked_id,
    checked_zone,
    get_json,
    list_in,
    page_of,
    read_response,
)
from hub.submission import Answer, Submission

if TYPE_CHECKING:
    from hub.sender import Sender

HANDSHAKE = "HandshakeKey"
_FIELD_ID = re.compile(r"^Field\d+$")
_YYYYMMDD = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DATE_TYPES = frozenset({"date", "eurodate"})
_NAME_TYPES = frozenset({"shortname", "name"})
_ENTRY_INFO = {"CreatedBy": "created_by", "LastUpdated": "last_updated", "UpdatedBy": "updated_by"}
# The key is read straight from the raw body: verification runs for anyone who posts, and parsing
# the whole form first cost ~0.12 s of event-loop CPU per 100,000 fields (~1.3 s for a 10 MiB body)
# before anything was checked. bytes.rfind scans in C (a few ms for 10 MiB; a regex with `(?:^|&)`
# took ~40 ms per MiB).
_HANDSHAKE_FIELD = HANDSHAKE.encode() + b"="


def _form(request: InboundRequest) -> dict[str, str]:
    return _answers.parse_form_urlencoded(request.body)


def _handshake_key(body: bytes) -> str | None:
    """The last `HandshakeKey` field of a form body, as `parse_form_urlencoded` would read it."""
    end = len(body)
    while (start := body.rfind(_HANDSHAKE_FIELD, 0, end)) >= 0:
        if start == 0 or body[start - 1] == ord("&"):
            break
        end = start
    else:
        return None
    value_at = start + len(_HANDSHAKE_FIELD)
    value_end = body.find(b"&", value_at)
    value = body[value_at:] if value_end < 0 else body[value_at:value_end]
    try:
        return unquote_plus(value.decode("ascii"), encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise VerificationFailed("HandshakeKey is not form-encoded UTF-8 text") from None


def _structure(form: dict[str, str], key: str) -> dict[str, Any]:
    """A metadata JSON string (`FieldStructure`, `FormStructure`) as an object; {} when not sent."""
    raw = form.get(key)
    if not raw:
        return {}
    value = _answers.parse_json(raw, f"{key} (Wufoo sends it as a JSON string)")
    if not isinstance(value, dict):
        raise UnsupportedPayload(f"{key} is not a JSON object")
    return value


def _form_id(form: dict[str, str]) -> str | None:
    structure = _structure(form, "FormStructure")
    return _answers.optional_text(structure, "Hash") or _answers.optional_text(structure, "Url")


def _date(value: str) -> str:
    # Wufoo posts dates as YYYYMMDD whatever the display format (fixtures; unconfirmed in docs).
    match = _YYYYMMDD.match(value)
    return "-".join(match.groups()) if match else value


def _field_answers(field: dict[str, Any], form: dict[str, str]) -> tuple[list[Answer | None], set[str]]:
    """Answers of one FieldStructure entry, and the body keys it consumed."""
    field_id = _answers.text(field, "ID", "FieldStructure.Fields[]")
    title = str(field.get("Title") or field_id)
    type_ = str(field.get("Type") or "unknown")
    subfields = _answers.items(field, "SubFields", f"FieldStructure field {field_id}")
    if subfields:
        ids = [_answers.text(s, "ID", f"{field_id}.SubFields[]") for s in subfields]
        values = [form.get(i, "") for i in ids]
        if type_ == "checkbox":
            # Every choice has its own id; a ticked one holds the choice text, an unticked one "".
            return [_answers.answer(field_id, title, type_, [v for v in values if v])], set(ids)
        if type_ == "likert":
            # A matrix: one answer per statement (row), the chosen column as its value.
            rows = [
                _answers.answer(i, f"{title}: {s.get('Label') or i}", type_, v)
                for i, s, v in zip(ids, subfields, values, strict=False)  # a short list ends the rows
            ]
            return rows, set(ids)
        separator = " " if type_ in _NAME_TYPES else ", "  # names "First Last"; addresses one line
        return [_answers.answer(field_id, title, type_, separator.join(v for v in values if v))], set(ids)
    value = form.get(field_id, "")
    if type_ == "file":
        value = form.get(f"{field_id}-url") or value  # the plain value is "name (size)"
    elif type_ in _DATE_TYPES:
        value = _date(value)
    return [_answers.answer(field_id, title, type_, value)], {field_id, f"{field_id}-url"}


def _bare_answer(field_id: str, form: dict[str, str], email_named: bool) -> Answer | None:
    value = form.get(f"{field_id}-url") or form[field_id]
    if not email_named and _answers.is_email(value):
        # No titles without metadata. The first e-mail address gets the stable label "Email" so routes
        # and templates can address the respondent's address; everything else keeps its field id.
        return _answers.answer(field_id, "Email", "email", value)
    return _answers.answer(field_id, field_id, "text", value)


def _collect_answers(form: dict[str, str]) -> list[Answer]:
    fields = _answers.items(_structure(form, "FieldStructure"), "Fields", "FieldStructure")
    out: list[Answer | None] = []
    used: set[str] = set()
    for field in fields:
        answers, keys = _field_answers(field, form)
        out.extend(answers)
        used |= keys
    email_named = any(a is not None and a.type == "email" for a in out)
    # Field ids the structure does not describe (or all of them, without metadata), in body order.
    for key in form:
        if _FIELD_ID.match(key) and key not in used:
            answer = _bare_answer(key, form, email_named)
            email_named |= answer is not None and answer.label == "Email"
            out.append(answer)
    return _answers.collect(out)


# -- reconciliation: the entries API (v3) ------------------------------------------------------

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
        description="the API key of a Wufoo user who can see the form (XXXX-XXXX-XXXX-XXXX)"
    )
    env_hint: ClassVar[str] = "WUFOO_API_KEY"

    @classmethod
    def problem(cls, key: str) -> str | None:
        if _API_KEY.fullmatch(key):
            return None
        return (
            "must be a Wufoo API key, four groups of four letters or digits ("
            "XXXX-XXXX-XXXX-XXXX) from Form Manager > the form's More > API Information"
        )


class WufooReconcileSettings(ReconcileSettings):
    subdomain: Annotated[
        str,
        checked_id(
            _NAME, "the account's subdomain: letters, digits and '-', as in <subdomain>.wufoo.com", lower=True
        ),
    ] = Field(description="the account's subdomain: <subdomain>.wufoo.com")
    form_id: Annotated[
        str,
        checked_id(
            _NAME, "the form's hash (such as s1afea8b1vk0jf7, under API Information) or its URL title"
        ),
    ] = Field(description="the form's hash (API Information) or its URL title")
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
        if not _FIELD_ID.match(key) or value is None:
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
            {"Fields": [f for f in fields if _FIELD_ID.match(str(f.get("ID")))]}
        )
        body["FormStructure"] = json.dumps({k: form[k] for k in ("Name", "Url", "Hash") if k in form})
    return urlencode(body).encode("ascii")


def _normalized(
    entry: dict[str, Any], fields: list[dict[str, Any]], form: dict[str, Any] | None, at: datetime
) -> Submission:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    request = InboundRequest("GET", "", headers, _entry_form(entry, fields, form))
    submission = connector.normalize(request, NormalizeContext("pending", "pending", at))
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


class WufooConnector(Connector):
    provider = "wufoo"
    title = "Wufoo"
    scheme = "handshake-key-body"
    event_ids_per_form = True
    content_types = frozenset({"application/x-www-form-urlencoded"})
    reconciler: ClassVar[Reconciler | None] = WufooReconciler()

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        # No signature and no timestamp: the echoed Handshake Key is all there is (`now` unused).
        require_secrets(source)
        verify_token(_handshake_key(request.body), source, f"body field {HANDSHAKE!r}")

    def envelope(self, request: InboundRequest) -> Envelope:
        form = _form(request)
        if "EntryId" not in form:
            raise UnsupportedPayload("no EntryId field: not a Wufoo entry webhook")
        # Wufoo only posts new entries; it has no test or ping event. `EntryId` is the entries API's
        # `EntryId` too: the response id, per form like the event id.
        entry_id = _answers.text(form, "EntryId", "body")
        return Envelope(event_id=entry_id, form_id=_form_id(form), response_id=entry_id)

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        form = _form(request)
        event_id = _answers.text(form, "EntryId", "body")
        answers = _collect_answers(form)
        structure = _structure(form, "FormStructure")
        metadata: dict[str, Any] = {m: form[k] for k, m in _ENTRY_INFO.items() if form.get(k)}
        if structure.get("Url"):
            metadata["form_url"] = structure["Url"]
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=_form_id(form),
            form_title=_answers.optional_text(structure, "Name"),
            event_id=event_id,
            # "YYYY-MM-DD HH:MM:SS" without a zone: read as UTC (unconfirmed, see the docs page).
            submitted_at=_answers.instant(form.get("DateCreated"), "DateCreated", context.received_at),
            name=_answers.pick_name(answers, _NAME_TYPES),
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        key = require_secrets(source)[0]
        at = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S")
        fields = [
            {
                "Title": "Full name",
                "Type": "shortname",
                "ID": "Field1",
                "SubFields": [{"ID": "Field1", "Label": "First"}, {"ID": "Field2", "Label": "Last"}],
            },
            {"Title": "Email", "Type": "email", "ID": "Field3"},
            {
                "Title": "Sessions",
                "Type": "checkbox",
                "ID": "Field4",
                "SubFields": [{"ID": "Field4", "Label": "Keynote"}, {"ID": "Field5", "Label": "Workshop"}],
            },
            {"Title": "Arrival date", "Type": "date", "ID": "Field6"},
        ]
        form_hash = "hookhubtest01"
        body = {
            "Field1": "Ada",
            "Field2": "Lovelace",
            "Field3": "ada@example.org",
            "Field4": "Keynote",
            "Field5": "",
            "Field6": at[:10].replace("-", ""),
            "CreatedBy": "public",
            "DateCreated": at,
            "EntryId": str(secrets.randbelow(10**9) + 1),
            "IP": "192.0.2.1",
            HANDSHAKE: key,
            "FieldStructure": json.dumps({"Fields": fields}),
            "FormStructure": json.dumps({"Name": "hookhub test form", "Url": form_hash, "Hash": form_hash}),
        }
        headers = {"content-type": "application/x-www-form-urlencoded", "user-agent": "hookhub-send-test"}
        return InboundRequest(method="POST", url=url, headers=headers, body=urlencode(body).encode("ascii"))


connector = WufooConnector()
