"""Options of a `google_forms_pubsub` source: the push subscription's OIDC settings and Google's signing keys.

The Forms API credentials and watch settings are inherited from `api.FetchOptions`.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from connectors.google_forms_pubsub import forms_api as api
from connectors.google_forms_pubsub.oidc import GOOGLE_CERTS_URL, GOOGLE_ISSUERS, parse_jwks


class GoogleFormsPubSubOptions(api.FetchOptions):
    """The push subscription's OIDC settings, where Google's signing keys come from, and (inherited) the
    Forms API credentials and watch settings of the fetch step and the watch upkeep."""

    model_config = ConfigDict(extra="forbid")

    service_account_email: str = Field(
        description="the push subscription's service account: the push's token must name it",
        examples=["forms-push@my-project.iam.gserviceaccount.com"],
    )
    audience: str | None = Field(default=None, description="default: the source's public_url")
    issuer: list[str] = Field(
        default_factory=lambda: list(GOOGLE_ISSUERS),
        description="accepted `iss` of the push's OIDC token (default: Google's two spellings)",
        examples=[list(GOOGLE_ISSUERS)],
    )
    leeway_seconds: int = Field(default=60, ge=0, le=600, description="clock skew allowed on iat/exp")
    jwks: dict[str, Any] | None = Field(default=None, description="trusted JWK set (Google's certs)")
    certs_url: str = Field(default=GOOGLE_CERTS_URL, description="where a key fetcher would read them")
    _keys: dict[str, rsa.RSAPublicKey] = PrivateAttr(default_factory=dict)
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
        self._keys, self._signing = parse_jwks(self.jwks)
        return self

    def key(self, kid: str) -> rsa.RSAPublicKey | None:
        return self._keys.get(kid)

    @property
    def has_keys(self) -> bool:
        return bool(self._keys)

    @property
    def signing_key(self) -> tuple[str, rsa.RSAPrivateKey] | None:
        return self._signing
