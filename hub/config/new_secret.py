"""A fresh secret for a new source, shaped for its provider's verification scheme.

`hookhub add source` uses it. Some providers issue the secret themselves (an app's client
secret): hookhub cannot make one up for them, so `provider_issues_secret` tells the caller to
ask the admin to copy it from the provider instead.
"""

from __future__ import annotations

import base64
import secrets

from connectors.base import Connector

SECRET_BYTES = 32
"""256 bits: beyond brute force for every HMAC and token scheme the connectors use."""

# The secret is the provider's own (HubSpot's and SurveyMonkey's app client secret, Webflow's
# webhook or OAuth app secret): a generated one would never match what the provider signs with.
PROVIDER_ISSUED = frozenset({"hubspot", "surveymonkey", "webflow"})


def provider_issues_secret(connector: Connector) -> bool:
    return connector.provider in PROVIDER_ISSUED


def needs_generated_secret(connector: Connector) -> bool:
    return connector.requires_secret and not provider_issues_secret(connector)


def new_secret(connector: Connector) -> str:
    """A strong random secret in the form the connector's scheme reads."""
    if connector.scheme == "standard-webhooks":
        # Standard Webhooks secrets are `whsec_` + base64 of the key bytes (the spec's format).
        return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")
    # HMAC keys, header tokens, URL tokens and handshake keys: URL-safe text, so the same value
    # can go into a query string or a provider's text field without escaping.
    return secrets.token_urlsafe(SECRET_BYTES)


def placeholder_secret(connector: Connector) -> str:
    """A value of the right shape to validate a config whose secret the provider will issue."""
    return new_secret(connector)
