"""Google Forms API watches delivered by a Cloud Pub/Sub push subscription.

Sources: ../shared/reference/providers.md, section "Google Forms", part "B. Forms API watches → Cloud
Pub/Sub push" (developers.google.com/workspace/forms/api/guides/push-notifications,
cloud.google.com/pubsub/docs/authenticate-push-subscriptions, cloud.google.com/pubsub/docs/push,
.../payload-unwrapping); ../shared/fixtures/providers/README.md (scheme `google-oidc-jwt`; answers
`{}` for this provider).

Pub/Sub signs nothing in the body: it sends `Authorization: Bearer <OIDC JWT>` signed by Google
(RS256). `verify` checks it against the configured key set only (`jwks`) and the injected clock; it
never fetches anything. Fetching and caching Google's certificates (`certs_url`), the Forms API
fetch of the responses (`forms.responses.list`) and the 7-day watch renewal are pending elsewhere.
A RESPONSES notification carries ids only: it becomes a Submission without answers whose
`metadata` tells the fetch step which form to read.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from connectors import _answers as A
from connectors._schemes import equal
from connectors.base import (
    Connector,
    Envelope,
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


class GoogleFormsPubSubOptions(BaseModel):
    """The push subscription's OIDC settings, and where Google's signing keys come from."""

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
        return found


connector = GoogleFormsPubSubConnector()
