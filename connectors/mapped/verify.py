"""The `mapped` provider's verification modes (hmac, token, basic, none), and send-test's credentials.

Checking and signing live together so a sample request is signed exactly the way `verify` checks it.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlencode, urlsplit, urlunsplit

from connectors._hashing import hmac_digest
from connectors._schemes import equal, matches_any
from connectors._tokens import verify_header_token, verify_query_token
from connectors.base import InboundRequest, SourceSettings, VerificationFailed, require_secrets
from connectors.mapped.options import VerifyOptions


def verify_request(request: InboundRequest, source: SourceSettings, v: VerifyOptions) -> None:
    """Raise VerificationFailed unless the request carries the credentials `v` asks for (mode none: any)."""
    if v.mode == "hmac":
        verify_hmac(request, source, v)
    elif v.mode == "token":
        if v.token_header is None:
            verify_query_token(request, source, str(v.query))
        else:
            verify_header_token(request, source, v.token_header, v.token_prefix)
    elif v.mode == "basic":
        verify_basic(request, source, str(v.username))


def verify_hmac(request: InboundRequest, source: SourceSettings, v: VerifyOptions) -> None:
    secrets = require_secrets(source)
    received = (request.header(v.signature_header) or "").strip()
    if not received:
        raise VerificationFailed(f"missing {v.signature_header.lower()} header")
    prefix = v.prefix or ""
    if received[: len(prefix)].lower() != prefix.lower():
        raise VerificationFailed("signature mismatch")
    digest = decode_digest(received[len(prefix) :].strip(), v.encoding or "hex")
    if digest is None:
        raise VerificationFailed(f"malformed signature (expected {v.encoding or 'hex'})")
    algorithm = v.algorithm or "sha256"
    expected = [hmac_digest(s.encode("utf-8"), request.body, algorithm) for s in secrets]
    if not matches_any([digest], expected):
        raise VerificationFailed("signature mismatch")


def verify_basic(request: InboundRequest, source: SourceSettings, username: str) -> None:
    secrets = require_secrets(source)
    raw = (request.header("authorization") or "").strip()
    if not raw:
        raise VerificationFailed("missing authorization header")
    scheme, _, encoded = raw.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise VerificationFailed("authorization header is not Basic credentials")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise VerificationFailed("malformed Basic credentials") from None
    user, colon, password = decoded.partition(":")
    if not colon:
        raise VerificationFailed("malformed Basic credentials")
    # Both compared, in constant time, whatever the first one says.
    user_ok = equal(user, username)
    password_ok = matches_any([password], secrets)
    if not (user_ok and password_ok):
        raise VerificationFailed("wrong username or password")


def sign_sample(
    source: SourceSettings, v: VerifyOptions, url: str, body: bytes, headers: dict[str, str]
) -> str:
    """Add the credentials `v` asks for to a send-test request: into `headers`, or the returned URL."""
    if v.mode == "hmac":
        digest = hmac_digest(require_secrets(source)[0].encode("utf-8"), body, v.algorithm or "sha256")
        headers[v.signature_header.lower()] = (v.prefix or "") + encode_digest(digest, v.encoding or "hex")
    elif v.mode == "token":
        token = require_secrets(source)[0]
        if v.token_header is None:
            parts = urlsplit(url)
            query = "&".join(q for q in (parts.query, urlencode({str(v.query): token})) if q)
            url = urlunsplit(parts._replace(query=query))
        else:
            headers[v.token_header.lower()] = v.token_prefix + token
    elif v.mode == "basic":
        pair = f"{v.username}:{require_secrets(source)[0]}".encode()
        headers["authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    return url


def decode_digest(text: str, encoding: str) -> bytes | None:
    try:
        if encoding == "hex":
            return bytes.fromhex(text)
        padded = text + "=" * (-len(text) % 4)
        if encoding == "base64url":
            return base64.b64decode(padded, altchars=b"-_", validate=True)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def encode_digest(digest: bytes, encoding: str) -> str:
    if encoding == "hex":
        return digest.hex()
    if encoding == "base64url":
        return base64.urlsafe_b64encode(digest).decode("ascii")
    return base64.b64encode(digest).decode("ascii")
