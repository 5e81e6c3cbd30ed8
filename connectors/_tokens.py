"""Shared-secret tokens, for providers that sign nothing.

Where a provider cannot sign its webhooks, the admin puts a long random token in the
webhook URL (`?token=...`), a header, or a body field, and hookhub compares it in constant
time with every configured secret (a list rotates). These helpers are the one place that
comparison lives; connectors say only where their provider carries the token.
"""

from __future__ import annotations

from connectors._schemes import matches_any
from connectors.base import InboundRequest, SourceSettings, VerificationFailed, require_secrets

URL_TOKEN = "url-token"
HEADER_TOKEN = "header-token"
TOKEN_PARAM = "token"


def verify_token(received: str | None, source: SourceSettings, where: str) -> None:
    """`received` must equal one of the source's secrets; `where` names the place for the 401."""
    secrets = require_secrets(source)
    if not received:
        raise VerificationFailed(f"missing token ({where})")
    if not matches_any([received], secrets):
        raise VerificationFailed(f"wrong token ({where})")


def verify_query_token(request: InboundRequest, source: SourceSettings, param: str = TOKEN_PARAM) -> None:
    verify_token(request.query.get(param), source, f"query parameter {param!r}")


def verify_header_token(
    request: InboundRequest, source: SourceSettings, header: str = "authorization", prefix: str = "Bearer "
) -> None:
    value = request.header(header)
    if value is not None and prefix:
        # The scheme word is case-insensitive (RFC 9110); the token itself is not.
        value = value[len(prefix):] if value[: len(prefix)].lower() == prefix.lower() else None
    verify_token(value.strip() if value else None, source, f"header {header!r}")
