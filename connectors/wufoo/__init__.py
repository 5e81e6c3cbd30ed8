"""Wufoo webhooks (one form-encoded POST per new entry); the reconciler over Wufoo's API v3 is in api.py.

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
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import unquote_plus, urlencode

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
from connectors.reconciling import Reconciler
from connectors.wufoo.api import FIELD_ID, WufooReconciler
from hub.submission import Answer, Submission

HANDSHAKE = "HandshakeKey"
_FIELD_ID = FIELD_ID
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
