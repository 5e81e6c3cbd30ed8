"""Gravity Forms Webhooks Add-On (a feed on form submission, Request Body "All Fields"); the reconciler
over the Gravity Forms REST API v2 is in api.py.

Sources: Gravity Forms' documentation
(docs.gravityforms.com: triggering-webhooks-form-submissions, webhooks-feed-meta, the webhooks
filters, and creating-entries-with-the-rest-api-v2 for `date_created` being UTC; the entry layout and
the multi-file JSON string are observed); answer rules from tests/fixtures/providers/README.md
("gravity_forms" row and the `header-token` scheme). Partial entries reach a webhook feed only through
custom code that sets `status` to "partial" (docs.gravityforms.com/gform_partialentries_post_event/).

The add-on signs nothing, but its feed can add request headers: the admin adds
`Authorization: Bearer <secret>` (or `X-Hookhub-Token: <secret>`), compared in constant time
(connectors/_tokens.py). Request Format JSON or FORM are both accepted.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any, ClassVar

from connectors import _answers
from connectors._wordpress import WordPressAddOn
from connectors.base import (
    Envelope,
    InboundRequest,
    NormalizeContext,
    SourceSettings,
    UnsupportedPayload,
    require_secrets,
)
from connectors.gravity_forms.api import GravityFormsReconciler
from connectors.reconciling import Reconciler
from hub.submission import Answer, Submission

_INPUT_ID = re.compile(r"^\d+(\.\d+)?$")
# Entry properties of the "All Fields" body (GFAPI entry object) that a "Select Fields" mapping may
# also use as keys; never answers.
_ENTRY_META = frozenset(
    {
        "id",
        "form_id",
        "status",
        "date_created",
        "date_updated",
        "ip",
        "source_url",
        "user_agent",
        "currency",
        "post_id",
        "is_starred",
        "is_read",
        "created_by",
        "payment_status",
        "payment_date",
        "payment_amount",
        "payment_method",
        "transaction_id",
        "is_fulfilled",
        "transaction_type",
        "source_id",
    }
)
_KEPT_META = ("status", "source_url", "date_updated", "currency", "payment_status", "payment_amount")


def _entry_id(body: dict[str, Any]) -> str:
    value = body.get("id")
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
        return str(value)
    raise UnsupportedPayload(
        "body has no entry 'id': set the feed's Request Body to All Fields (or map the Entry ID to 'id')"
    )


def _form_id(body: dict[str, Any]) -> str | None:
    value = body.get("form_id")
    return (
        str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) else None
    )


def _value(raw: Any) -> tuple[str, Any]:
    """(type, value). Multi-file uploads arrive as a JSON-encoded array string of URLs: make it a list."""
    if isinstance(raw, str) and raw.startswith("[") and raw.endswith("]"):
        try:
            decoded = _answers.parse_json(raw, "answer")
        except UnsupportedPayload:
            return "text", raw
        if isinstance(decoded, list) and decoded and all(isinstance(v, str) and "://" in v for v in decoded):
            return "fileupload", _answers.file_value(decoded)
    return "text", raw


def _collect_answers(body: dict[str, Any]) -> list[Answer]:
    # "All Fields" (the entry; it always has date_created) keys answers by input id ("2", "1.3"), and
    # add-ons may add meta keys of their own; a "Select Fields" body uses the admin's own keys.
    all_fields = "date_created" in body
    out: list[Answer | None] = []
    for key, raw in body.items():
        if _INPUT_ID.match(key) or (not all_fields and key not in _ENTRY_META):
            type_, value = _value(raw)
            out.append(_answers.answer(key, key, type_, value))
    return _answers.collect(out)


class GravityFormsConnector(WordPressAddOn):
    provider = "gravity_forms"
    title = "Gravity Forms (Webhooks Add-On)"
    reconciler: ClassVar[Reconciler | None] = GravityFormsReconciler()

    def envelope(self, request: InboundRequest) -> Envelope:
        body = _answers.parse_body_object(request)
        event_id = _entry_id(body)
        form_id = _form_id(body)
        status = body.get("status")
        if status not in (None, "", "active"):
            # Spam, trashed or partial entries (custom code can send those to a feed).
            return Envelope(
                event_id=f"{event_id}:{status}",
                kind="ignored",
                form_id=form_id,
                note=f"entry status {status!r} is not a completed submission",
            )
        # Gravity Forms has no test or ping request; entry ids are unique per site, and the REST API
        # lists the entry under the same `id` (reconciliation's identity).
        return Envelope(event_id=event_id, form_id=form_id, response_id=event_id)

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        body = _answers.parse_body_object(request)
        answers = _collect_answers(body)
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=_form_id(body),
            event_id=_entry_id(body),
            # Entry date_created is UTC "YYYY-MM-DD HH:MM:SS" (REST API v2 docs).
            submitted_at=_answers.instant(body.get("date_created"), "date_created", context.received_at),
            metadata={k: body[k] for k in _KEPT_META if not _answers.is_empty(body.get(k))},
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        token = require_secrets(source)[0]
        at = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S")
        uploads = [
            "https://wp.example.org/wp-content/uploads/gravity_forms/1-x/a.pdf",
            "https://wp.example.org/wp-content/uploads/gravity_forms/1-x/b.pdf",
        ]
        payload = {
            "id": str(secrets.randbelow(10**9) + 1),
            "status": "active",
            "form_id": "1",
            "ip": "192.0.2.1",
            "source_url": "https://wp.example.org/register/",
            "date_created": at,
            "date_updated": at,
            "is_starred": 0,
            "is_read": 0,
            "user_agent": "hookhub-send-test",
            "payment_status": None,
            "created_by": None,
            "1.3": "Ada",
            "1.6": "Lovelace",
            "2": "ada@example.org",
            "3": "2",
            "4.1": "Keynote",
            "4.2": "",
            "5": json.dumps(uploads),
        }
        return self.wordpress_request(url, payload, {"authorization": f"Bearer {token}"})


connector = GravityFormsConnector()
