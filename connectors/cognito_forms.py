"""Cognito Forms "Post JSON data to a website" (Submit Entry / Update Entry endpoints).

Sources: Cognito Forms' webhook help page
(https://www.cognitoforms.com/support/66/data-integration/webhooks: endpoints, plans, short-lived file
links; the entry JSON shape is observed, not documented in detail); answer rules from
tests/fixtures/providers/README.md ("cognito_forms" row and the `url-token` scheme).

Cognito signs nothing and cannot add headers, so the webhook URL carries a secret `?token=` that we
compare in constant time (connectors/_tokens.py). The body is the entry: fields under their internal
names, plus `Form`, `Id` (`<form id>-<entry number>`, the dedupe key) and `Entry` metadata.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from connectors import _answers
from connectors._tokens import UrlTokenVerification, url_with_token
from connectors.base import (
    Connector,
    Envelope,
    InboundRequest,
    NormalizeContext,
    SourceSettings,
    UnsupportedPayload,
    require_secrets,
    send_test_request,
)
from hub.submission import Answer, Submission, iso_utc

_NOT_ANSWERS = frozenset({"Form", "Entry", "Id"})
_UPDATE = "Update"
_NAME_TYPES = frozenset({"name"})  # `_field` joins a Name field's parts into one answer of this type
_ENTRY_META = {
    "Number": "entry_number",
    "Status": "status",
    "Action": "action",
    "Version": "version",
    "AdminLink": "admin_link",
}


def _entry(request: InboundRequest) -> dict[str, Any]:
    body = _answers.parse_json_object(request.body)
    if not isinstance(body.get("Form"), dict):
        raise UnsupportedPayload(
            "body has no Form object: not a Cognito Forms entry (Post JSON data to a website)"
        )
    return body


def _event_id(body: dict[str, Any]) -> str:
    if isinstance(entry_id := body.get("Id"), str) and entry_id:
        return entry_id
    number = _answers.maybe_obj(body, "Entry").get("Number")
    form_id = _answers.maybe_obj(body, "Form").get("Id")
    if number is None or form_id is None:
        raise UnsupportedPayload("body has no Id (or Form.Id and Entry.Number): not a Cognito Forms entry")
    return f"{form_id}-{number}"


def _form_id(body: dict[str, Any]) -> str | None:
    value = _answers.maybe_obj(body, "Form").get("Id")
    return str(value) if value is not None else None


def _is_file(item: object) -> bool:
    return isinstance(item, dict) and "File" in item


def _field(key: str, value: Any) -> list[Answer | None]:
    """One entry property as answers: sections are flattened to `Section.Field` keys."""
    if isinstance(value, dict):
        if "FirstAndLast" in value:  # Name: also has First, Last, LastFirst, Prefix...
            full = value.get("FirstAndLast") or " ".join(
                str(value[p]) for p in ("First", "Last") if value.get(p)
            )
            return [_answers.answer(key, key, "name", full)]
        if "FullAddress" in value:  # Address: also has Line1, City, PostalCode...
            return [_answers.answer(key, key, "address", value.get("FullAddress"))]
        out: list[Answer | None] = []
        for sub_key, sub_value in value.items():
            out.extend(_field(f"{key}.{sub_key}", sub_value))
        return out
    if isinstance(value, list) and value and all(_is_file(v) for v in value):
        # File links expire after about 30 minutes (Cognito docs): destinations must fetch promptly.
        return [
            _answers.answer(key, key, "file", _answers.file_value(str(v.get("File") or "") for v in value))
        ]
    if isinstance(value, bool):
        type_ = "yesno"
    elif isinstance(value, (int, float)):
        type_ = "number"
    elif isinstance(value, list):
        type_ = "choices"
    else:
        type_ = "text"
    return [_answers.answer(key, key, type_, value)]


def _collect_answers(body: dict[str, Any]) -> list[Answer]:
    out: list[Answer | None] = []
    for key, value in body.items():
        # `$type`/`$etag`-style keys are serializer metadata, never field internal names.
        if key not in _NOT_ANSWERS and not key.startswith("$"):
            out.extend(_field(key, value))
    return _answers.collect(out)


class CognitoFormsConnector(UrlTokenVerification, Connector):
    provider = "cognito_forms"
    title = "Cognito Forms"

    def envelope(self, request: InboundRequest) -> Envelope:
        body = _entry(request)
        event_id = _event_id(body)
        entry = _answers.maybe_obj(body, "Entry")
        action = entry.get("Action")
        if action == _UPDATE:
            # Posted to the Update Entry Endpoint. Keyed per version so it never shadows the
            # submission's own id (a later retry of the submission must still be accepted).
            version = entry.get("Version")
            revision = f"v{version}" if version is not None else f"sha256:{request.body_sha256()}"
            return Envelope(
                event_id=f"{event_id}:update:{revision}",
                kind="ignored",
                form_id=_form_id(body),
                note="entry update (Entry.Action = Update), not a new submission",
            )
        # Cognito has no test or ping event; any other action (Submit, or a workflow action's
        # name) creates the entry.
        return Envelope(event_id=event_id, form_id=_form_id(body))

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        body = _entry(request)
        form = _answers.maybe_obj(body, "Form")
        entry = _answers.maybe_obj(body, "Entry")
        answers = _collect_answers(body)
        submitted = entry.get("DateSubmitted") or entry.get("DateCreated")
        metadata: dict[str, Any] = {m: entry[k] for k, m in _ENTRY_META.items() if entry.get(k) is not None}
        if form.get("InternalName"):
            metadata["form_internal_name"] = form["InternalName"]
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=_form_id(body),
            form_title=_answers.optional_text(form, "Name"),
            event_id=_event_id(body),
            submitted_at=_answers.instant(submitted, "Entry.DateSubmitted", context.received_at),
            name=_answers.pick_name(answers, _NAME_TYPES),
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        token = require_secrets(source)[0]
        at = iso_utc(datetime.fromtimestamp(now, UTC))
        number = secrets.randbelow(10**9) + 1
        payload = {
            "Form": {"Id": "999", "InternalName": "HookhubTest", "Name": "hookhub test form"},
            "Name": {"First": "Ada", "Last": "Lovelace", "FirstAndLast": "Ada Lovelace", "Middle": None},
            "Email": "ada@example.org",
            "Sessions": ["Keynote", "Workshop"],
            "Tickets": 2,
            "Id": f"999-{number}",
            "Entry": {
                "Action": "Submit",
                "Number": number,
                "Status": "Submitted",
                "Version": 1,
                "DateCreated": at,
                "DateSubmitted": at,
                "DateUpdated": at,
            },
        }
        return send_test_request(url_with_token(url, token), payload, "application/json; charset=utf-8")


connector = CognitoFormsConnector()
