"""Shared-secret tokens, for providers that sign nothing.

Where a provider cannot sign its webhooks, the admin puts a long random token in the
webhook URL (`?token=...`), a header, or a body field, and hookhub compares it in constant
time with every configured secret (a list rotates). These helpers are the one place that
comparison lives; connectors say only where their provider carries the token.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from connectors._schemes import matches_any
from connectors.base import InboundRequest, SourceSettings, VerificationFailed, require_secrets

URL_TOKEN = "url-token"
HEADER_TOKEN = "header-token"
TOKEN_PARAM = "token"
TOKEN_HEADER = "x-hookhub-token"
"""The header hookhub suggests where an admin can add any request header but not `Authorization`."""


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
        value = value[len(prefix) :] if value[: len(prefix)].lower() == prefix.lower() else None
    verify_token(value.strip() if value else None, source, f"header {header!r}")


def url_with_token(url: str, token: str) -> str:
    """`url` with `?token=<token>` added (after any query it has), for a sample request."""
    return f"{url}{'&' if urlsplit(url).query else '?'}{urlencode({TOKEN_PARAM: token})}"


class UrlTokenVerification:
    """Mixin for connectors whose provider can neither sign nor add headers: the webhook URL
    carries the secret as `?token=`, kept out of storage like any credential."""

    scheme = URL_TOKEN
    credential_query = frozenset({TOKEN_PARAM})

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        # Nothing is signed and there is no timestamp: only the URL token (`now` unused).
        verify_query_token(request, source)


class HookhubOrBearerTokenVerification:
    """Mixin for add-ons (WordPress) that sign nothing but let the admin add request headers:
    `X-Hookhub-Token: <secret>` or `Authorization: Bearer <secret>`, whichever is present."""

    scheme = HEADER_TOKEN
    credential_headers = frozenset({"authorization", TOKEN_HEADER})

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        # Nothing is signed and there is no timestamp: only the header the admin adds (`now` unused).
        if request.header(TOKEN_HEADER) is not None:
            verify_header_token(request, source, header=TOKEN_HEADER, prefix="")
        else:
            verify_header_token(request, source)
