"""Webflow webhooks (`form_submission` trigger, Data API v2 body).

Sources: Webflow's developer documentation:
https://developers.webflow.com/data/docs/working-with-webhooks (headers, example body, signature
over `{x-webflow-timestamp}:{raw body}`, 5-minute window), .../reference/webhooks/events/form-submission
(payload fields), .../v1.0.0/docs/verifying-webhook-signatures ("Webhooks created via a site's dashboard
or with a Site's API Key will not include request signatures"); answer rules from
tests/fixtures/providers/README.md ("webflow" row and the `webflow-hmac-sha256` scheme).

Because dashboard-made webhooks are unsigned, a source may set `auth: url-token` and carry a token in
the URL query instead (connectors/_tokens.py); the signed scheme stays the default.

Reconciliation (missed webhooks) lists the form's submissions through the Data API v2
(`WebflowReconciler`); the facts it relies on, their sources and what is unconfirmed:
docs/providers/webflow.md, "Reconciliation (missed webhooks)".
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors import _answers
from connectors._hashing import hmac_digest
from connectors._schemes import epoch_number, matches_any
from connectors._tokens import TOKEN_PARAM, verify_query_token
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
    get_json,
    id_text,
    list_in,
    page_of,
    read_response,
    url_health,
)
from hub.submission import Submission, iso_utc, parse_instant

if TYPE_CHECKING:
    from hub.sender import Sender

_SUBMITTED = "form_submission"
_TIMESTAMP = "x-webflow-timestamp"
_SIGNATURE = "x-webflow-signature"


class WebflowOptions(BaseModel):
    """`auth: signature` (default) for API/app webhooks; `auth: url-token` for dashboard webhooks."""

    model_config = ConfigDict(extra="forbid")

    auth: Literal["signature", "url-token"] = Field(
        default="signature",
        description="signature: x-webflow-signature, for webhooks made through the API or an app;"
        " url-token: ?token=<secret> in the URL, for unsigned dashboard webhooks.",
    )


def _options(source: SourceSettings) -> WebflowOptions:
    options = source.options
    return options if isinstance(options, WebflowOptions) else WebflowOptions()


def _signature(secret: str, timestamp: str, body: bytes) -> str:
    return hmac_digest(secret.encode("utf-8"), timestamp.encode("ascii") + b":" + body).hex()


def _verify_signature(request: InboundRequest, source: SourceSettings, now: float) -> None:
    secrets_ = require_secrets(source)
    signature = (request.header(_SIGNATURE) or "").strip()
    timestamp = (request.header(_TIMESTAMP) or "").strip()
    if not signature:
        raise VerificationFailed(f"missing {_SIGNATURE} header (dashboard webhooks are unsigned: see auth)")
    if not timestamp:
        raise VerificationFailed(f"missing {_TIMESTAMP} header")
    # Epoch milliseconds. Both directions: a far-future timestamp is as replayable as an old one.
    if abs(now * 1000 - epoch_number(timestamp, _TIMESTAMP)) > source.tolerance * 1000:
        raise VerificationFailed("timestamp outside tolerance")
    expected = [_signature(s, timestamp, request.body) for s in secrets_]
    # Webflow sends lower-case hex; lower() only forgives an upper-case re-encoding on the way.
    if not matches_any([signature.lower()], expected):
        raise VerificationFailed("signature mismatch")


def _payload(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    trigger = body.get("triggerType")
    if not isinstance(trigger, str):
        if "_id" in body or "d" in body:
            raise UnsupportedPayload(
                "legacy Webflow v1 webhook body (site, d, _id): recreate the webhook with the v2 Data API"
            )
        raise UnsupportedPayload('body.triggerType is missing: expected {"triggerType", "payload"}')
    return trigger, _answers.obj(body, "payload", "body")


# -- reconciliation: the Data API v2 -----------------------------------------------------------

API_BASE = "https://api.webflow.com"
PAGE_SIZE = 100
"""Submissions per call: the most `limit` takes."""
_WEBFLOW_ID = re.compile(r"[0-9a-f]{24}")


class WebflowCredentials(Credentials):
    token: SecretStr = Field(
        description="a site or OAuth token with forms:read (and sites:read for the webhook check)"
    )
    env_hint: ClassVar[str] = "WEBFLOW_TOKEN"

    @classmethod
    def problem(cls, token: str) -> str | None:
        if len(token) >= 20 and all(c.isascii() and (c.isalnum() or c in "-_.") for c in token):
            return None
        return (
            "must be a Webflow API token (Site settings > Apps & integrations > "
            "API access, with Forms: read) or an OAuth access token"
        )


def _webflow_id(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    hint = (
        "a Webflow id: 24 hex digits (GET /v2/sites lists sites, "
        "GET /v2/sites/<site id>/forms a site's forms)"
    )
    return id_text(value.lower(), name, _WEBFLOW_ID, hint)


class WebflowReconcileSettings(ReconcileSettings):
    form_id: str = Field(
        description="the form's id (`id` in List Forms; the webhook's payload.formId)",
        examples=["984728902f3a9c462ab740cc"],
    )
    site_id: str | None = Field(default=None, description="the site's id: needed for the webhook check")
    credentials: WebflowCredentials
    api_base_url: Annotated[str, checked_base_url(API_BASE, "/v2")] = API_BASE

    @field_validator("form_id", "site_id")
    @classmethod
    def _ids(cls, value: str | None, info: Any) -> str | None:
        return _webflow_id(value, info.field_name)


class WebflowReconciler(Reconciler):
    """`GET /v2/forms/{form_id}/submissions` (every page: the API has no date filter) and
    `GET /v2/sites/{site_id}/webhooks` for the webhook check."""

    Settings: ClassVar[type[ReconcileSettings]] = WebflowReconcileSettings
    page_size: ClassVar[int] = PAGE_SIZE
    api: ClassVar[str] = "Webflow Data API v2"

    def _call(self, settings: WebflowReconcileSettings, scope: str) -> dict[str, Any]:
        return {
            "headers": settings.credentials.bearer(),
            "sleep": self.sleep,
            "denied": f"the Webflow token was refused (revoked, expired, or without the {scope} scope): "
            f"create a site token with {scope} (Site settings > Apps & integrations > API access) and put "
            "it in reconcile.credentials.token",
        }

    async def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        assert isinstance(settings, WebflowReconcileSettings)
        url = f"{settings.api_base_url}/v2/forms/{settings.form_id}/submissions"
        seen: set[str] = set()
        offset = 0
        while True:
            what = f"list submissions of Webflow form {settings.form_id} (from {offset})"
            body = await get_json(
                http,
                url,
                what=what,
                params={"offset": str(offset), "limit": str(PAGE_SIZE)},
                not_found=f"no form {settings.form_id} for this token: check reconcile.form_id "
                "(GET /v2/sites/<site id>/forms lists a site's forms) and that the token is of its site",
                **self._call(settings, "forms:read"),
            )
            items = list_in(body, "formSubmissions", what)
            read: list[Read] = []
            for item in items:
                response = _listed(item, settings.form_id, what)
                if (
                    response
                    and response.response_id not in seen
                    and window.since <= response.submitted_at < window.until
                ):
                    seen.add(response.response_id)
                    read.append(response)
            yield page_of(read)  # the API's total counts the whole form, not the window
            offset += len(items)
            pagination = body.get("pagination")
            total = pagination.get("total") if isinstance(pagination, dict) else None
            if len(items) < PAGE_SIZE or (isinstance(total, int) and offset >= total):
                return

    async def webhook_health(
        self, source: SourceSettings, settings: Any, expected_url: str | None, http: Sender
    ) -> WebhookHealth | None:
        assert isinstance(settings, WebflowReconcileSettings)
        if settings.site_id is None:
            return None  # webhooks are listed per site
        what = f"list webhooks of Webflow site {settings.site_id}"
        body = await get_json(
            http,
            f"{settings.api_base_url}/v2/sites/{settings.site_id}/webhooks",
            what=what,
            not_found=f"no site {settings.site_id} for this token: check reconcile.site_id",
            **self._call(settings, "sites:read"),
        )
        hooks = list_in(body, "webhooks", what)
        urls = [
            str(h.get("url") or "")
            for h in hooks
            if isinstance(h, dict) and h.get("triggerType") == _SUBMITTED
        ]
        # The API says nothing of a webhook Webflow deactivated after failures: it cannot be "disabled".
        return url_health(
            urls,
            expected_url,
            f"Webflow site {settings.site_id}",
            f"create a {_SUBMITTED} webhook again (POST /v2/sites/{settings.site_id}/webhooks, or "
            "Site settings > Apps & integrations > Webhooks)",
        )


def _listed(item: Any, form_id: str, what: str) -> Read | None:
    """One listed submission, normalized by the connector from the `form_submission` body it stands for."""
    if not isinstance(item, dict):
        return None
    response_id, submitted = item.get("id"), item.get("dateSubmitted")
    if not isinstance(response_id, str) or not response_id or not isinstance(submitted, str):
        raise ReconcileFailed(f"{what}: a submission has no id or dateSubmitted")
    try:
        at = parse_instant(submitted)
    except (ValueError, OverflowError):
        raise ReconcileFailed(f"{what}: submission {response_id} has an unreadable dateSubmitted") from None
    return read_response(response_id, at, partial(_normalized, item, form_id, at))


def _normalized(item: dict[str, Any], form_id: str, at: datetime) -> Submission:
    data = item.get("formResponse")
    if data is not None and not isinstance(data, dict):
        raise UnsupportedPayload("the submission's formResponse is not an object of fields")
    payload: dict[str, Any] = {
        "name": item.get("displayName"),
        "siteId": item.get("siteId"),
        "data": data or {},
        "schema": [],  # the API has no field types or element ids: answers are keyed by field name
        "submittedAt": item["dateSubmitted"],
        "id": item["id"],
        "formId": form_id,
    }
    request = InboundRequest(
        "POST",
        "",
        {"content-type": "application/json"},
        json.dumps({"triggerType": _SUBMITTED, "payload": payload}).encode(),
    )
    return connector.normalize(request, NormalizeContext("pending", "pending", at))


class WebflowConnector(Connector):
    provider = "webflow"
    title = "Webflow"
    scheme = "webflow-hmac-sha256"
    stored_headers = frozenset({_SIGNATURE, _TIMESTAMP})
    credential_query = frozenset({TOKEN_PARAM})
    Options = WebflowOptions
    reconciler = WebflowReconciler()

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        if _options(source).auth == "url-token":
            verify_query_token(request, source)
        else:
            _verify_signature(request, source, now)

    def envelope(self, request: InboundRequest) -> Envelope:
        trigger, payload = _payload(_answers.parse_json_object(request.body))
        form_id = _answers.optional_text(payload, "formId")
        if trigger != _SUBMITTED:
            # Other triggers share the endpoint; their `payload.id` (if any) names an object that
            # changes many times (a CMS item), so the body hash is the only safe dedupe key.
            return Envelope(
                event_id=f"sha256:{request.body_sha256()}",
                kind="ignored",
                form_id=form_id,
                note=f"trigger type {trigger!r} is not {_SUBMITTED!r}",
            )
        event_id = _answers.text(payload, "id", "body.payload")
        _answers.obj(payload, "data", "body.payload")
        # payload.id is the submission's id, the `id` List Form Submissions gives (WebflowReconciler).
        return Envelope(event_id=event_id, form_id=form_id, response_id=event_id)

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        trigger, payload = _payload(_answers.parse_json_object(request.body))
        if trigger != _SUBMITTED:
            raise UnsupportedPayload(f"trigger type {trigger!r} is not {_SUBMITTED!r}")
        data = _answers.obj(payload, "data", "body.payload")
        schema = {
            name: f
            for f in _answers.items(payload, "schema", "body.payload")
            if (name := _answers.key(f.get("fieldName")))
        }
        answers = _answers.collect(
            _answers.answer(
                schema.get(name, {}).get("fieldElementId") or name,
                name,
                schema.get(name, {}).get("fieldType") or "unknown",
                value,  # as sent: numbers stay numbers, checkboxes booleans
            )
            for name, value in data.items()
        )
        metadata = {k: payload[k] for k in ("siteId", "formElementId") if payload.get(k) is not None}
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=_answers.optional_text(payload, "formId"),
            form_title=_answers.optional_text(payload, "name"),
            event_id=_answers.text(payload, "id", "body.payload"),
            submitted_at=_answers.instant(
                payload.get("submittedAt"), "payload.submittedAt", context.received_at
            ),
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        secret = require_secrets(source)[0]
        fields = [
            ("Name", "FormTextInput", "Ada Lovelace"),
            ("Email", "FormTextInput", "ada@example.org"),
            ("Tickets", "FormTextInput", 2),
            ("Newsletter", "FormCheckboxInput", True),
        ]
        payload = {
            "triggerType": _SUBMITTED,
            "payload": {
                "name": "hookhub test form",
                "siteId": "hookhubtestsite000000000",
                "data": {name: value for name, _, value in fields},
                "schema": [
                    {"fieldName": name, "fieldType": type_, "fieldElementId": f"hookhub-test-field-{i}"}
                    for i, (name, type_, _) in enumerate(fields, start=1)
                ],
                "submittedAt": iso_utc(datetime.fromtimestamp(now, UTC)),
                # Webflow ids are 24 hex digits (MongoDB ObjectIds); fresh per submission.
                "id": secrets.token_hex(12),
                "formId": "hookhubtestform000000000",
                "formElementId": "hookhub-test-form",
            },
        }
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"content-type": "application/json", "user-agent": "hookhub-send-test"}
        if _options(source).auth == "url-token":
            url = f"{url}{'&' if '?' in url else '?'}{urlencode({TOKEN_PARAM: secret})}"
        else:
            timestamp = str(int(now * 1000))
            headers |= {_TIMESTAMP: timestamp, _SIGNATURE: _signature(secret, timestamp, body)}
        return InboundRequest(method="POST", url=url, headers=headers, body=body)


connector = WebflowConnector()
