"""HubSpot form submissions, pushed by a workflow's "Send a webhook" action; the reconciler over HubSpot's
Forms API is in api.py.

Sources: HubSpot's "how do I use webhooks with HubSpot workflows"
(https://knowledge.hubspot.com/workflows/how-do-i-use-webhooks-with-hubspot-workflows), webhook information
(https://developers.hubspot.com/docs/methods/workflows/webhook_information), "Validating requests" v3/v2
(https://developers.hubspot.com/docs/api/webhooks/validating-requests) and the v3 changelog
(https://developers.hubspot.com/changelog/introducing-version-3-of-webhook-signatures); answer rules from
tests/fixtures/providers/README.md ("hubspot" row,
`expect.email`) and its "Schemes" table (`hubspot-signature-v3`). HubSpot's Python SDK
(`hubspot/utils/signature.py`) builds the v3 source string the same way: method + URI + body +
timestamp, HMAC-SHA256 keyed with the app's client secret, base64.

The body is the enrolled contact "as the object API returns it" (legacy contact JSON with property
history): the triggering submission is the newest `form-submissions[]` entry, dedupe key its
`conversion-id`; its answers are the properties with a version written by that submission
(`source-type` FORM, `source-id` = form id, same timestamp) [reference: obs/design, unconfirmed for
today's workflows].
"""

from __future__ import annotations

import json
import uuid
from typing import Any, ClassVar

from connectors import _answers
from connectors._hashing import hmac_digest
from connectors._schemes import b64, epoch_number, matches_any
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
from connectors.hubspot.api import HubSpotReconciler, full_name, instant, millis, stripped
from connectors.reconciling import Reconciler
from hub.submission import Answer, Submission

SIGNATURE = "x-hubspot-signature-v3"
TIMESTAMP = "x-hubspot-request-timestamp"
# HubSpot's v3 instructions: these escapes in the request URI are decoded before hashing. We try the
# URL both as configured and decoded, so either way of writing `public_url` verifies.
_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_FORM = "FORM"


def _decode_uri(url: str) -> str:
    for escaped, char in _DECODED.items():
        url = url.replace(escaped, char).replace(escaped.lower(), char)
    return url


def sign_v3(secret: str, method: str, url: str, body: bytes, timestamp: str) -> str:
    signed = f"{method.upper()}{url}".encode() + body + timestamp.encode("ascii")
    return b64(hmac_digest(secret.encode("utf-8"), signed))


def _contact(request: InboundRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    body = _answers.parse_json_object(request.body)
    if not isinstance(body.get("properties"), dict) or "form-submissions" not in body:
        # A customised body, or an object other than a contact: nothing says which form submission it was.
        raise UnsupportedPayload(
            "not HubSpot's contact JSON (need `properties` and `form-submissions`): in the workflow's "
            "'Send a webhook' action send all contact properties instead of a customised body"
        )
    return body, _answers.items(body, "form-submissions", "body")


def _latest(submissions: list[dict[str, Any]]) -> dict[str, Any]:
    # The order of form-submissions[] is unconfirmed: take the newest by timestamp, not the first entry.
    stamped = [
        (millis(s.get("timestamp"), "form-submissions[].timestamp"), i, s) for i, s in enumerate(submissions)
    ]
    return max(stamped)[2]


def _collect_answers(properties: dict[str, Any], form_id: str, at: int, conversion_id: str) -> list[Answer]:
    out: list[Answer | None] = []
    for name, prop in properties.items():
        if not isinstance(prop, dict):
            raise UnsupportedPayload(f"properties.{name} is not an object {{value, versions}}")
        written = [
            v
            for v in _answers.items(prop, "versions", f"properties.{name}")
            if v.get("source-type") == _FORM
            and v.get("source-id") in (form_id, conversion_id)
            and v.get("timestamp") == at
        ]
        if written:
            # The version holds what this submission wrote, even if a later change overwrote `value`.
            value = written[0].get("value", prop.get("value"))
            out.append(_answers.answer(name, name, "property", value))
    return _answers.collect(out)


def _property(properties: dict[str, Any], name: str) -> str | None:
    prop = properties.get(name)
    value = prop.get("value") if isinstance(prop, dict) else None
    return stripped(value)


class HubSpotConnector(Connector):
    provider = "hubspot"
    title = "HubSpot (workflow webhook)"
    scheme = "hubspot-signature-v3"
    stored_headers = frozenset({SIGNATURE, TIMESTAMP})
    reconciler: ClassVar[Reconciler | None] = HubSpotReconciler()

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        secrets = require_secrets(source)
        received = (request.header(SIGNATURE) or "").strip()
        if not received:
            raise VerificationFailed(f"missing {SIGNATURE} header (turn on 'Include request signature')")
        timestamp = (request.header(TIMESTAMP) or "").strip()
        if not timestamp:
            raise VerificationFailed(f"missing {TIMESTAMP} header")
        # Milliseconds. HubSpot only says "older than 5 minutes"; a future stamp is rejected too (replays).
        if abs(now * 1000 - epoch_number(timestamp, TIMESTAMP)) > source.tolerance * 1000:
            raise VerificationFailed("timestamp outside tolerance")
        urls = dict.fromkeys([request.url, _decode_uri(request.url)])
        expected = [sign_v3(s, request.method, u, request.body, timestamp) for s in secrets for u in urls]
        if not matches_any([received], expected):
            hint = "" if source.public_url else " (set public_url to the exact URL registered in HubSpot)"
            raise VerificationFailed("signature mismatch" + hint)

    def envelope(self, request: InboundRequest) -> Envelope:
        body, submissions = _contact(request)
        if not submissions:
            vid = body.get("vid") or body.get("canonical-vid")
            return Envelope(
                event_id=f"sha256:{request.body_sha256()}",
                kind="ignored",
                note=f"contact {vid} has no form submission: enrolled by something other than a form",
            )
        latest = _latest(submissions)
        conversion_id = _answers.text(latest, "conversion-id", "form-submissions[]")
        # The conversion id is the dedupe key and the Forms API's `conversionId` of the same submission.
        return Envelope(
            event_id=conversion_id,
            form_id=_answers.text(latest, "form-id", "form-submissions[]"),
            response_id=conversion_id,
        )

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        body, submissions = _contact(request)
        if not submissions:
            raise UnsupportedPayload("contact has no form-submissions entry: no form submission to normalize")
        latest = _latest(submissions)
        form_id = _answers.text(latest, "form-id", "form-submissions[]")
        conversion_id = _answers.text(latest, "conversion-id", "form-submissions[]")
        at = millis(latest.get("timestamp"), "form-submissions[].timestamp")
        properties: dict[str, Any] = body["properties"]
        answers = _collect_answers(properties, form_id, at, conversion_id)
        name = full_name(_property(properties, "firstname"), _property(properties, "lastname"))
        metadata: dict[str, Any] = {
            key.replace("-", "_"): latest[key]
            for key in ("page-url", "page-title", "form-type", "portal-id")
            if latest.get(key) not in (None, "")
        }
        if body.get("vid") is not None:
            metadata["contact_vid"] = body["vid"]
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=form_id,
            form_title=_answers.optional_text(latest, "title"),
            event_id=conversion_id,
            submitted_at=instant(at, "form-submissions[].timestamp"),
            respondent_email=_property(properties, "email"),
            name=name,
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        secret = require_secrets(source)[0]
        at = int(now * 1000) - 1500  # the workflow fires shortly after the submission
        form_id = "00000000-0000-4000-8000-686f6f6b6875"  # fixed: one test form, many conversions
        values = {
            "email": "ada@example.org",
            "firstname": "Ada",
            "lastname": "Lovelace",
            "company": "Analytical Engines Ltd",
            "how_did_you_hear_about_us_": "Newsletter;Event",
        }

        def prop(value: str, source_type: str = _FORM, source_id: str | None = form_id) -> dict[str, Any]:
            version = {
                "value": value,
                "source-type": source_type,
                "source-id": source_id,
                "source-label": None,
                "updated-by-user-id": None,
                "timestamp": at,
                "selected": False,
            }
            return {"value": value, "versions": [version]}

        properties = {k: prop(v) for k, v in values.items()}
        properties["lifecyclestage"] = prop("lead", "CALCULATED", None)
        payload = {
            "vid": 1,
            "canonical-vid": 1,
            "merged-vids": [],
            "portal-id": 1,
            "is-contact": True,
            "properties": properties,
            "form-submissions": [
                {
                    "conversion-id": str(uuid.uuid4()),
                    "timestamp": at,
                    "form-id": form_id,
                    "portal-id": 1,
                    "page-url": "https://www.example.org/contact",
                    "page-title": "Contact",
                    "title": "hookhub test form",
                    "form-type": "HUBSPOT",
                    "meta-data": [],
                }
            ],
            "list-memberships": [],
            "identity-profiles": [],
            "merge-audits": [],
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = str(int(now * 1000))
        headers = {
            "content-type": "application/json",
            "user-agent": "hookhub-send-test",
            SIGNATURE: sign_v3(secret, "POST", url, body, timestamp),
            TIMESTAMP: timestamp,
        }
        return InboundRequest(method="POST", url=url, headers=headers, body=body)


connector = HubSpotConnector()
