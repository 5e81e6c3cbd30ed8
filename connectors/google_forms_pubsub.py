"""Google Forms API watches delivered by a Cloud Pub/Sub push subscription, and the responses they announce.

Sources: ../shared/reference/providers.md, section "Google Forms", part "B. Forms API watches → Cloud
Pub/Sub push" (developers.google.com/workspace/forms/api/guides/push-notifications,
cloud.google.com/pubsub/docs/authenticate-push-subscriptions, cloud.google.com/pubsub/docs/push,
.../payload-unwrapping); ../shared/fixtures/providers/README.md (scheme `google-oidc-jwt`; answers
`{}` for the notification itself); the Forms API reference for fetching (connectors/_google_forms_api.py).

Pub/Sub signs nothing in the body: it sends `Authorization: Bearer <OIDC JWT>` signed by Google
(RS256). `verify` checks it against the configured key set only (`jwks`) and the injected clock; it
never fetches anything (fetching Google's certificates from `certs_url` is still pending).
A RESPONSES notification carries ids only: `normalize` makes it a Submission without answers whose
`metadata` names the form; `expand` (pipeline step) lists the form's responses submitted since the
notification's publish time minus `lookback_seconds` and returns one Submission per response (event id =
responseId, so responses listed again by a later notification are dropped by the pipeline's dedupe).
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

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from connectors import _answers as A
from connectors import _google_forms_api as api
from connectors._schemes import equal
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
from hub.submission import Submission, iso_utc

_SUBMITTED = "RESPONSES"
_ALGORITHM = "RS256"
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v3/certs"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
FORMS_API = "https://forms.googleapis.com/v1"
log = logging.getLogger("hookhub.connectors.google_forms_pubsub")


class GoogleFormsPubSubOptions(api.FetchOptions):
    """The push subscription's OIDC settings, where Google's signing keys come from, and (inherited) the
    Forms API credentials and watch settings of the fetch step and the watch upkeep."""

    model_config = ConfigDict(extra="forbid")

    service_account_email: str = Field(description="the push subscription's service account")
    audience: str | None = Field(default=None, description="default: the source's public_url")
    issuer: list[str] = Field(default_factory=lambda: list(GOOGLE_ISSUERS))
    leeway_seconds: int = Field(default=60, ge=0, le=600, description="clock skew allowed on iat/exp")
    jwks: dict[str, Any] | None = Field(default=None, description="trusted JWK set (Google's certs)")
    certs_url: str = Field(default=GOOGLE_CERTS_URL, description="where a key fetcher would read them")
    _keys: dict[str, Any] = PrivateAttr(default_factory=dict)
    _signing: tuple[str, rsa.RSAPrivateKey] | None = PrivateAttr(default=None)

    @field_validator("issuer", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("jwks", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        # Lets `jwks: ${GOOGLE_JWKS}` carry the certs document as one JSON string.
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _parse_keys(self) -> GoogleFormsPubSubOptions:
        # Parsed once at config load, so the request path only looks a key up by `kid`.
        if not self.service_account_email.strip():
            raise ValueError("service_account_email must not be empty")
        if self.jwks is None:
            return self
        keys = self.jwks.get("keys")
        if not isinstance(keys, list) or not keys:
            raise ValueError('jwks must be a JWK set: {"keys": [...]}')
        for index, jwk in enumerate(keys):
            if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or not jwk.get("kid"):
                raise ValueError(f"jwks.keys[{index}] is not an RSA key with a kid")
            if jwk.get("alg", _ALGORITHM) != _ALGORITHM:
                raise ValueError(f"jwks.keys[{index}].alg is {jwk.get('alg')!r}, expected RS256")
            try:
                key = jwt.PyJWK(jwk, algorithm=_ALGORITHM).key
            except jwt.PyJWTError as exc:
                raise ValueError(f"jwks.keys[{index}]: {exc}") from None
            if isinstance(key, rsa.RSAPrivateKey):
                # Only offline test key sets carry private parts: they let send-test sign.
                self._signing = self._signing or (str(jwk["kid"]), key)
                key = key.public_key()
            self._keys[str(jwk["kid"])] = key
        return self

    def key(self, kid: str) -> Any | None:
        return self._keys.get(kid)

    @property
    def has_keys(self) -> bool:
        return bool(self._keys)

    @property
    def signing_key(self) -> tuple[str, rsa.RSAPrivateKey] | None:
        return self._signing


def _options(source: SourceSettings) -> GoogleFormsPubSubOptions:
    options = source.options
    if not isinstance(options, GoogleFormsPubSubOptions):
        raise VerificationFailed("source options are not google_forms_pubsub options")
    return options


def _bearer(request: InboundRequest) -> str:
    value = (request.header("authorization") or "").strip()
    if not value:
        raise VerificationFailed("missing authorization header (is OIDC auth enabled on the push subscription?)")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise VerificationFailed("authorization header is not a Bearer token")
    return token.strip()


def _claims(token: str, options: GoogleFormsPubSubOptions) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise VerificationFailed("malformed JWT") from None
    # Pin the algorithm before choosing a key: a token must not pick how it is checked.
    if header.get("alg") != _ALGORITHM:
        raise VerificationFailed("JWT is not RS256")
    key = options.key(str(header.get("kid") or ""))
    if key is None:
        raise VerificationFailed("JWT key id is not in the trusted key set")
    try:
        # Time claims are checked below against the injected clock, not PyJWT's wall clock.
        return jwt.decode(
            token,
            key,
            algorithms=[_ALGORITHM],
            options={**{f"verify_{c}": False for c in ("exp", "iat", "nbf", "aud", "iss")},
                     "require": ["aud", "iss", "email", "iat", "exp"]},
        )
    except jwt.InvalidSignatureError:
        raise VerificationFailed("JWT signature does not verify") from None
    except jwt.MissingRequiredClaimError as exc:
        raise VerificationFailed(f"JWT has no {exc.claim!r} claim") from None
    except jwt.PyJWTError:
        raise VerificationFailed("invalid JWT") from None


def _check_claims(claims: dict[str, Any], options: GoogleFormsPubSubOptions, audience: str, now: float) -> None:
    aud = claims["aud"]
    audiences = aud if isinstance(aud, list) else [aud]
    if not any(isinstance(a, str) and equal(a, audience) for a in audiences):
        raise VerificationFailed("JWT audience is not this source's audience")
    if claims["iss"] not in options.issuer:
        raise VerificationFailed("JWT issuer is not Google")
    email = claims["email"]
    if not isinstance(email, str) or not equal(email.lower(), options.service_account_email.strip().lower()):
        raise VerificationFailed("JWT is not from the configured service account")
    if claims.get("email_verified") not in (True, "true"):
        raise VerificationFailed("JWT email is not verified")
    iat, exp, nbf = claims["iat"], claims["exp"], claims.get("nbf", claims["iat"])
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in (iat, exp, nbf)):
        raise VerificationFailed("JWT time claims are not numbers")
    leeway = options.leeway_seconds
    if now + leeway < max(iat, nbf):
        raise VerificationFailed("JWT issued in the future (timestamp outside leeway)")
    if now >= exp + leeway:
        raise VerificationFailed("JWT expired (timestamp outside leeway)")


def _message(request: InboundRequest) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """(body, message, message attributes, message id) of a wrapped push request."""
    body = A.parse_json_object(request.body)
    if "message" not in body:
        raise UnsupportedPayload(
            "body has no `message`: the push subscription must deliver the wrapped format "
            "(turn payload unwrapping off)"
        )
    message = A.obj(body, "message", "body")
    message_id = A.optional_text(message, "messageId") or A.optional_text(message, "message_id")
    if message_id is None:
        raise UnsupportedPayload("body.message.messageId is missing")
    attributes = A.obj(message, "attributes", "body.message")
    if A.optional_text(attributes, "eventType") is None:
        raise UnsupportedPayload("message.attributes.eventType is missing: not a Forms API watch notification")
    return body, message, attributes, message_id


class GoogleFormsPubSubConnector(Connector):
    provider = "google_forms_pubsub"
    title = "Google Forms (Forms API watch via Pub/Sub push)"
    scheme = "google-oidc-jwt"
    credential_headers = frozenset({"authorization"})
    requires_secret = False
    Options = GoogleFormsPubSubOptions
    fetches = True
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
        token = _bearer(request)
        if not options.has_keys:
            raise VerificationFailed("hub misconfiguration: no Google signing keys configured (jwks)")
        _check_claims(_claims(token, options), options, audience, now)

    def envelope(self, request: InboundRequest) -> Envelope:
        _, _, attributes, message_id = _message(request)
        event_type, form_id = attributes["eventType"], A.optional_text(attributes, "formId")
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
        form_id = A.text(attributes, "formId", "message.attributes")
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
        return Submission(
            id=context.submission_id,
            source=context.source,
            provider=self.provider,
            form_id=form_id,
            event_id=message_id,
            # The notification has no response time (one may cover several responses): receive time.
            submitted_at=context.received_at,
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        options = _options(source)
        at = datetime.fromtimestamp(now, UTC)
        message_id = str(uuid.uuid4().int % 10**16)
        payload = {
            "message": {
                "attributes": {"eventType": _SUBMITTED, "formId": "hookhubTestForm", "watchId": str(uuid.uuid4())},
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
        # Only Google holds the real keys. An offline test key set with private parts signs for real;
        # otherwise a throwaway key shows the token path and is answered 401 (see the docs page).
        kid, key = options.signing_key or (
            "hookhub-send-test",
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )
        token = jwt.encode(claims, key, algorithm=_ALGORITHM, headers={"kid": kid})
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
            found.append("no access_token or service_account_file: answers will not be fetched; "
                         "submissions become dead letters")
        elif options.access_token:
            found.append("access_token is a Google access token, valid for 1 hour: use service_account_file "
                         "for unattended operation")
        if not options.form_id:
            found.append("form_id and watch_id are not set: the Forms API watch is not renewed by hookhub "
                         "and stops 7 days after its creation or last renewal")
        elif not (options.watch_id or options.topic_name):
            found.append("form_id is set without watch_id or topic_name: there is no watch to renew")
        return found

    # --- the fetch step and the watch upkeep (pipeline) ------------------------------------------

    async def expand(self, submission: Submission, source: SourceSettings, http: Any) -> list[Submission]:
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
            raise FetchFailed(f"the Forms API lists no response of form {form_id} submitted after {since} "
                              "(yet); the notification is tried again later")
        questions = api.questions_of(form)
        if any(q not in questions for r in found for q in A.maybe_obj(r, "answers")):
            form = await self.api.form(http, options, form_id, refresh=True)  # edited since it was cached
            questions = api.questions_of(form)
        info = A.maybe_obj(form, "info")
        title = info.get("title") or info.get("documentTitle") or None
        return [self._response(submission, form_id, title, questions, r) for r in found]

    def _response(self, notification: Submission, form_id: str, title: str | None,
                  questions: dict[str, Any], response: dict[str, Any]) -> Submission:
        answers = api.map_answers(response, questions)
        try:
            at = A.instant(response.get("lastSubmittedTime") or response.get("createTime"), "lastSubmittedTime",
                           notification.submitted_at)
        except UnsupportedPayload:
            at = notification.submitted_at
        facts = {
            "response_id": response["responseId"],
            "create_time": response.get("createTime"),
            "total_score": response.get("totalScore"),
            "notification_id": notification.event_id,
            "watch_id": notification.metadata.get("watch_id"),
            "publish_time": notification.metadata.get("publish_time"),
        }
        return Submission(
            id=notification.id, source=notification.source, provider=self.provider, form_id=form_id,
            form_title=title, event_id=str(response["responseId"]),
            submitted_at=at.replace(microsecond=at.microsecond // 1000 * 1000),
            email=A.pick_email(response.get("respondentEmail"), answers), name=A.pick_name(answers),
            answers=answers, metadata={k: v for k, v in facts.items() if v is not None},
        )

    async def maintain(self, source_id: str, source: SourceSettings, http: Any) -> str:
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
                raise FetchFailed(f"watch {watch_id} of form {form_id} is gone (expired?) and no topic_name is "
                                  "set to create a new one: set topic_name, or create a watch and set watch_id")
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
        return A.instant(notification.metadata.get("publish_time"), "publish_time", notification.submitted_at)
    except UnsupportedPayload:
        return notification.submitted_at


connector = GoogleFormsPubSubConnector()
