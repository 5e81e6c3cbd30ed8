"""Google Forms API watches delivered by a Cloud Pub/Sub push subscription, and the responses they announce.

Sources: Google's docs on Forms API watches and Cloud Pub/Sub push
(https://developers.google.com/workspace/forms/api/guides/push-notifications,
https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions,
https://cloud.google.com/pubsub/docs/push, https://cloud.google.com/pubsub/docs/payload-unwrapping);
tests/fixtures/providers/README.md (scheme `google-oidc-jwt`; answers `{}` for the notification itself);
the Forms API reference for fetching (forms_api.py).

Pub/Sub signs nothing in the body: it sends `Authorization: Bearer <OIDC JWT>` signed by Google
(RS256). `verify` checks it against the configured key set only (`jwks`) and the injected clock; it
never fetches anything (fetching Google's certificates from `certs_url` is still pending).
A RESPONSES notification carries ids only: `normalize` makes it a Submission without answers whose
`metadata` names the form; `expand` (pipeline step) lists the form's responses submitted since the
notification's publish time minus `lookback_seconds` and returns one Submission per response (event id =
responseId, so responses listed again by a later notification are dropped by the pipeline's dedupe).
Reconciliation (listing.py) lists the form's responses in a window and reads the watch's state; a listed
response's identity is its responseId, the event id `expand` gives it.
`maintain` (daily) renews the configured watch, which Google expires after 7 days, and re-creates it
when it is gone.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from connectors import _answers
from connectors.base import (
    Connector,
    Envelope,
    FetchFailed,
    InboundRequest,
    NormalizeContext,
    SourceSettings,
    UnsupportedPayload,
    VerificationFailed,
)
from connectors.google_forms_pubsub import forms_api as api
from connectors.google_forms_pubsub import oidc
from connectors.google_forms_pubsub.answers import form_title, questions_of, response_submission
from connectors.google_forms_pubsub.listing import FormsReconciler
from connectors.google_forms_pubsub.oidc import GOOGLE_ISSUERS
from connectors.google_forms_pubsub.options import GoogleFormsPubSubOptions
from hub.sender import Sender
from hub.submission import Submission, iso_utc

_SUBMITTED = "RESPONSES"
FORMS_API = "https://forms.googleapis.com/v1"
log = logging.getLogger("hookhub.connectors.google_forms_pubsub")


def _options(source: SourceSettings) -> GoogleFormsPubSubOptions:
    options = source.options
    if not isinstance(options, GoogleFormsPubSubOptions):
        raise VerificationFailed("source options are not google_forms_pubsub options")
    return options


def _message(request: InboundRequest) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """(body, message, message attributes, message id) of a wrapped push request."""
    body = _answers.parse_json_object(request.body)
    if "message" not in body:
        raise UnsupportedPayload(
            "body has no `message`: the push subscription must deliver the wrapped format "
            "(turn payload unwrapping off)"
        )
    message = _answers.obj(body, "message", "body")
    message_id = _answers.optional_text(message, "messageId") or _answers.optional_text(message, "message_id")
    if message_id is None:
        raise UnsupportedPayload("body.message.messageId is missing")
    attributes = _answers.obj(message, "attributes", "body.message")
    if _answers.optional_text(attributes, "eventType") is None:
        raise UnsupportedPayload(
            "message.attributes.eventType is missing: not a Forms API watch notification"
        )
    return body, message, attributes, message_id


class GoogleFormsPubSubConnector(Connector):
    provider = "google_forms_pubsub"
    title = "Google Forms (Forms API watch via Pub/Sub push)"
    scheme = "google-oidc-jwt"
    credential_headers = frozenset({"authorization"})
    requires_secret = False
    Options = GoogleFormsPubSubOptions
    fetches = True
    reconciler = FormsReconciler()
    """forms.responses.list; the fetch step's children carry event_id = responseId, the listing's identity."""
    maintenance_interval = 24 * 3600.0
    """Watches expire 7 days after creation or the last renewal: renewing daily leaves 6 days of retries."""

    def __init__(self) -> None:
        self.api = api.FormsClient()

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        options = _options(source)
        # Google's default audience is the push endpoint URL: the one registered, not the Host we saw.
        audience = options.audience or source.public_url
        if not audience:
            raise VerificationFailed("hub misconfiguration: set audience (or public_url) for this source")
        token = oidc.bearer(request)
        if not options.has_keys:
            raise VerificationFailed("hub misconfiguration: no Google signing keys configured (jwks)")
        claims = oidc.verified_claims(token, options.key)
        oidc.check_claims(
            claims,
            audience,
            now,
            issuers=options.issuer,
            service_account_email=options.service_account_email,
            leeway_seconds=options.leeway_seconds,
        )

    def envelope(self, request: InboundRequest) -> Envelope:
        _, _, attributes, message_id = _message(request)
        event_type, form_id = attributes["eventType"], _answers.optional_text(attributes, "formId")
        if event_type == _SUBMITTED:
            if form_id is None:
                raise UnsupportedPayload("message.attributes.formId is missing")
            return Envelope(event_id=message_id, form_id=form_id)
        note = (
            "form edited (SCHEMA watch event), not a submission"
            if event_type == "SCHEMA"
            else f"watch event type {event_type!r} is not {_SUBMITTED!r}"
        )
        return Envelope(event_id=message_id, kind="ignored", form_id=form_id, note=note)

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        body, message, attributes, message_id = _message(request)
        event_type = attributes["eventType"]
        if event_type != _SUBMITTED:
            raise UnsupportedPayload(f"watch event type {event_type!r} is not {_SUBMITTED!r}")
        form_id = _answers.text(attributes, "formId", "message.attributes")
        metadata: dict[str, Any] = {
            "answers_pending": "fetch new responses with forms.responses.list",
            "responses_href": f"{FORMS_API}/forms/{form_id}/responses",
            "event_type": event_type,
            "message_id": message_id,
        }
        facts = {
            "watch_id": attributes.get("watchId"),
            "publish_time": message.get("publishTime") or message.get("publish_time"),
            "subscription": body.get("subscription"),
            "delivery_attempt": body.get("deliveryAttempt"),
        }
        metadata.update({k: v for k, v in facts.items() if v is not None})
        # No answers yet, and no response time (one notification may cover several responses).
        return _answers.submission(
            self.provider,
            context,
            [],
            form_id=form_id,
            event_id=message_id,
            submitted_at=context.received_at,
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        options = _options(source)
        at = datetime.fromtimestamp(now, UTC)
        message_id = str(uuid.uuid4().int % 10**16)
        payload = {
            "message": {
                "attributes": {
                    "eventType": _SUBMITTED,
                    "formId": "hookhubTestForm",
                    "watchId": str(uuid.uuid4()),
                },
                "messageId": message_id,
                "message_id": message_id,
                "publishTime": iso_utc(at),
                "publish_time": iso_utc(at),
            },
            "subscription": "projects/hookhub-test/subscriptions/hookhub-send-test",
        }
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        subject = str(secrets.randbelow(10**21))
        claims = {
            "aud": options.audience or source.public_url or url,
            "azp": subject,
            "email": options.service_account_email,
            "email_verified": True,
            "exp": int(now) + 3600,
            "iat": int(now),
            "iss": options.issuer[0] if options.issuer else GOOGLE_ISSUERS[0],
            "sub": subject,
        }
        token = oidc.sign_test_token(claims, options.signing_key)
        headers = {
            "content-type": "application/json",
            "user-agent": "hookhub-send-test",
            "authorization": f"Bearer {token}",
        }
        return InboundRequest(method="POST", url=url, headers=headers, body=body)

    def warnings(self, options: BaseModel) -> list[str]:
        if not isinstance(options, GoogleFormsPubSubOptions):
            return []
        found = []
        if not options.has_keys:
            found.append(
                f"no jwks configured: every push is rejected until Google's keys ({options.certs_url}) "
                "are set as jwks; fetching them automatically is not implemented yet"
            )
        if options.signing_key:
            found.append("jwks holds a private key: only for offline tests, never Google's real keys")
        if not options.has_credentials:
            found.append(
                "no access_token or service_account_file: answers will not be fetched; "
                "submissions become dead letters"
            )
        elif options.access_token:
            found.append(
                "access_token is a Google access token, valid for 1 hour: use service_account_file "
                "for unattended operation"
            )
        if not options.form_id:
            found.append(
                "form_id and watch_id are not set: the Forms API watch is not renewed by hookhub "
                "and stops 7 days after its creation or last renewal"
            )
        elif not (options.watch_id or options.topic_name):
            found.append("form_id is set without watch_id or topic_name: there is no watch to renew")
        return found

    # --- the fetch step and the watch upkeep (pipeline) ------------------------------------------

    async def expand(self, submission: Submission, source: SourceSettings, http: Sender) -> list[Submission]:
        """One Submission per response listed since the notification's publish time (minus the look-back)."""
        options = source.options
        if not isinstance(options, GoogleFormsPubSubOptions):
            raise FetchFailed("source options are not google_forms_pubsub options")
        form_id = submission.form_id
        if not form_id:
            raise FetchFailed("the stored notification has no formId")
        since = iso_utc(_published(submission) - timedelta(seconds=options.lookback_seconds))
        form = await self.api.form(http, options, form_id)
        found = await self.api.responses(http, options, form_id, since)
        if not found:
            # The notification follows a submission, so one should be listed: it may not be yet.
            raise FetchFailed(
                f"the Forms API lists no response of form {form_id} submitted after {since} "
                "(yet); the notification is tried again later"
            )
        questions = questions_of(form)
        if any(q not in questions for r in found for q in _answers.maybe_obj(r, "answers")):
            form = await self.api.form(http, options, form_id, refresh=True)  # edited since it was cached
            questions = questions_of(form)
        title = form_title(form)
        return [self._response(submission, form_id, title, questions, r) for r in found]

    def _response(
        self,
        notification: Submission,
        form_id: str,
        title: str | None,
        questions: dict[str, Any],
        response: dict[str, Any],
    ) -> Submission:
        facts = {
            "notification_id": notification.event_id,
            "watch_id": notification.metadata.get("watch_id"),
            "publish_time": notification.metadata.get("publish_time"),
        }
        # Every response keeps the notification's id and source: they are the one stored request's.
        stored = NormalizeContext(notification.id, notification.source, notification.submitted_at)
        return response_submission(stored, form_id, title, questions, response, facts)

    async def maintain(self, source_id: str, source: SourceSettings, http: Sender) -> str:
        """Renew the configured watch; re-create it when it is gone. Returns what was done, for the log."""
        options = source.options
        if not isinstance(options, GoogleFormsPubSubOptions) or not options.form_id:
            return "nothing to do: set form_id and watch_id (and topic_name) to have hookhub renew the watch"
        if not options.has_credentials:
            return "cannot renew the watch: set access_token or service_account_file"
        form_id, watch_id = options.form_id, options.watch_id
        if watch_id:
            try:
                watch = await self.api.renew_watch(http, options, watch_id)
                return f"renewed watch {watch_id} of form {form_id} until {watch.get('expireTime', '?')}"
            except api.ApiError as exc:
                if exc.status != 404:
                    raise
            if not options.topic_name:
                raise FetchFailed(
                    f"watch {watch_id} of form {form_id} is gone (expired?) and no topic_name is "
                    "set to create a new one: set topic_name, or create a watch and set watch_id"
                )
        elif not options.topic_name:
            return "nothing to do: set watch_id (or topic_name) to have hookhub renew the watch"
        watch, done = await self.api.create_watch(http, options)
        new_id = str(watch.get("id") or "?")
        message = f"{done} watch {new_id} on form {form_id} (expires {watch.get('expireTime', '?')})"
        if watch_id:
            message = f"watch {watch_id} was gone; {message}"
        if new_id != watch_id:
            message += f": set watch_id: {new_id} for source {source_id} in connectors.yaml"
            log.warning(message, extra={"event": "watch_replaced", "source": source_id, "watch_id": new_id})
        return message


def _published(notification: Submission) -> datetime:
    """When Pub/Sub published the notification (its receive time when the message has none)."""
    try:
        return _answers.instant(
            notification.metadata.get("publish_time"), "publish_time", notification.submitted_at
        )
    except UnsupportedPayload:
        return notification.submitted_at


connector = GoogleFormsPubSubConnector()
