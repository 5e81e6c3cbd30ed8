"""HubSpot form submissions, pushed by a workflow's "Send a webhook" action.

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

Reconciliation lists the form's submissions through HubSpot's Forms API (`HubSpotReconciler`,
`GET /form-integrations/v1/submissions/forms/{formGuid}`): its `conversionId` is the webhook's
`conversion-id`. The facts it relies on, with their sources: docs/providers/hubspot.md,
"Reconciliation (missed webhooks)".
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, SecretStr

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
from hub.submission import Answer, Submission

if TYPE_CHECKING:
    from hub.sender import Sender

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


_MAX_MILLIS_DIGITS = 15  # epoch milliseconds have 13 digits until the year 2286


def _millis(value: object, where: str) -> int:
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    digits = text.removeprefix("-")
    # Bounded before int(): a 4,301-digit number would raise, and no longer one is a time.
    if not (digits.isascii() and digits.isdigit()) or len(digits) > _MAX_MILLIS_DIGITS:
        raise UnsupportedPayload(f"{where} is not an epoch-milliseconds number")
    return int(text)


def _instant(ms: int, where: str) -> datetime:
    # Integer arithmetic: a float division would round 14:03:27.501 to .500999.
    try:
        return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)
    except (OverflowError, OSError, ValueError):
        raise UnsupportedPayload(f"{where} is not a time a computer calendar holds") from None


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
        (_millis(s.get("timestamp"), "form-submissions[].timestamp"), i, s) for i, s in enumerate(submissions)
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
    return _stripped(value)


def _stripped(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _full_name(first: str | None, last: str | None) -> str | None:
    return " ".join(filter(None, (first, last))) or None


# -- reconciliation: the Forms API's submissions of a form ------------------------------------

API_BASE = "https://api.hubapi.com"
"""HubSpot's API host for every account (EU accounts included); `api_base_url` is for tests."""
PAGE_SIZE = 50
"""`limit`: the documented maximum (default 20)."""
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MULTIPLE = ";"
"""How HubSpot writes a multi-checkbox property's values in one string (the webhook's property values)."""


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
    ] = Field(min_length=1, description="the form's GUID (in the form editor's URL)")
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
        connector.provider,
        NormalizeContext("pending", "pending", submitted_at),
        answers,
        form_id=form_id,
        event_id=conversion_id,
        submitted_at=submitted_at,
        respondent_email=_stripped(values.get("email")),
        name=_full_name(_stripped(values.get("firstname")), _stripped(values.get("lastname"))),
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
        at = _millis(item.get("submittedAt"), "submittedAt")
        submitted_at = _instant(at, "submittedAt")
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
        at = _millis(latest.get("timestamp"), "form-submissions[].timestamp")
        properties: dict[str, Any] = body["properties"]
        answers = _collect_answers(properties, form_id, at, conversion_id)
        name = _full_name(_property(properties, "firstname"), _property(properties, "lastname"))
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
            submitted_at=_instant(at, "form-submissions[].timestamp"),
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
