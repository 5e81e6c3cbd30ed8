"""Is a source's `secret` fit for its verification scheme? (`hookhub check`)

A secret an attacker can guess lets them forge submissions, so a short or repetitive one is
worth a warning. Where the scheme fixes the secret's shape (Standard Webhooks: `whsec_` and
base64), a secret of another shape fails every request, which is an error.

Messages never contain the secret, nor its length: they end up in CI logs.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from connectors._schemes import STANDARD_WEBHOOKS

MIN_LENGTH = 16
MIN_DISTINCT = 4
"""Fewer distinct characters than this (`aaaa...`, `abab...`) is a pattern, not a secret."""
STANDARD_WEBHOOKS_MIN_BYTES = 24
"""The Standard Webhooks spec: the key SHOULD be between 24 and 64 bytes."""
WHSEC_PREFIX = "whsec_"

GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
GENERATE_WHSEC = (
    "python -c 'import base64, secrets;"
    ' print("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())\''
)


@dataclass(frozen=True)
class SecretProblem:
    message: str
    is_error: bool


def secret_problems(secret: str, scheme: str) -> list[SecretProblem]:
    """What is wrong with one configured `secret` for a connector of verification `scheme`."""
    if scheme == STANDARD_WEBHOOKS:
        return _standard_webhooks(secret)
    if len(secret) < MIN_LENGTH:
        return [_weak(f"is shorter than {MIN_LENGTH} characters")]
    if len(set(secret)) < MIN_DISTINCT:
        return [_weak(f"uses fewer than {MIN_DISTINCT} different characters")]
    return []


def _weak(what: str) -> SecretProblem:
    return SecretProblem(
        f"this secret {what}: anyone who guesses it can forge submissions; where you choose the secret,"
        f" generate one with `{GENERATE}` (where the provider generates it, copy it whole)",
        is_error=False,
    )


def _standard_webhooks(secret: str) -> list[SecretProblem]:
    encoded = secret.removeprefix(WHSEC_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        # connectors/_schemes.standard_webhooks_key would refuse it on every request.
        return [
            SecretProblem(
                "Standard Webhooks secrets are `whsec_` followed by base64 (as the sender shows it), and"
                f" this one is not: copy it whole, or generate one with `{GENERATE_WHSEC}`",
                is_error=True,
            )
        ]
    if len(key) < STANDARD_WEBHOOKS_MIN_BYTES or len(set(key)) < MIN_DISTINCT:
        return [
            SecretProblem(
                f"this secret's key is weaker than Standard Webhooks asks (at least"
                f" {STANDARD_WEBHOOKS_MIN_BYTES} random bytes): generate one with `{GENERATE_WHSEC}`",
                is_error=False,
            )
        ]
    return []
