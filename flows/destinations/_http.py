"""HTTP helpers shared by destinations (not a destination type itself): the POST they send through
the hub's Sender (hub/sender.py), Retry-After, snippets for reasons, pacing keys, URL checks.

Nothing here logs or returns a URL: webhook URLs carry their credential in the path.
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import re
from datetime import UTC
from urllib.parse import urlsplit

from hub.sender import MAX_BODY_BYTES as MAX_BODY_BYTES
from hub.sender import Answer as Answer
from hub.sender import Request, Sender
from hub.sender import TransportFailed as TransportFailed

SNIPPET_CHARS = 200


async def post(
    sender: Sender, url: str, *, content: bytes, headers: dict[str, str], timeout: float
) -> Answer:
    """POST without following redirects; raises TransportFailed when there is no answer."""
    return await sender.send(Request("POST", url, headers, content, timeout=timeout))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from `now` (unix time) a Retry-After header asks for; None when absent or unreadable.

    RFC 9110 allows delay-seconds or an HTTP-date; a date in the past means "now" (0).
    """
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses as zone-less; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of a body on one line, at most `limit` characters, for a failure reason."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def account_key(prefix: str, url: str) -> str:
    """A pacing key for the account behind `url` that reveals nothing of the URL."""
    return f"{prefix}:{hashlib.sha256(url.encode('utf-8')).hexdigest()[:16]}"


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_http: bool) -> str:
    """`url` when it is https:// (or http:// if allowed, or to a loopback host); else ValueError.

    Error messages never repeat the URL: it may carry a token.
    """
    parts = urlsplit(url.strip())
    if not parts.hostname:
        raise ValueError("must be an absolute URL such as https://host/path")
    if parts.scheme == "https":
        return url.strip()
    if parts.scheme == "http" and (allow_http or is_loopback_host(parts.hostname)):
        return url.strip()
    if allow_http:
        raise ValueError("must start with https:// or http://")
    raise ValueError("must start with https:// (http:// is accepted only for localhost / 127.0.0.1 / ::1)")
