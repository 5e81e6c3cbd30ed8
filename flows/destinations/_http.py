"""HTTP helpers shared by destinations that POST to a URL (not a destination type itself).

Nothing here logs or returns a URL: webhook URLs carry their credential in the path, and
httpx error messages can quote the URL, so transport errors are described by their type.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit

import aiohttp
import httpx

MAX_BODY_BYTES = 64 * 1024
"""Answers are only read for classification; a receiver streaming megabytes must not cost memory."""

SNIPPET_CHARS = 200


@dataclass(frozen=True)
class Answer:
    """What the target answered, with at most MAX_BODY_BYTES of its body."""

    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class TransportFailed(Exception):
    """The request got no HTTP answer (connect error, timeout, broken connection)."""

    def __init__(self, reason: str, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent
        """Whether the request may have reached the target (a retry may then duplicate)."""


Client = httpx.AsyncClient | aiohttp.ClientSession
"""Deliveries inside the hub go through aiohttp (see flows/http_clients.py); destination tests,
`hookhub test-route` and anything else that hands in an httpx client (respx, MockTransport) get
httpx. Both answer with the same `Answer` and fail with the same `TransportFailed`."""


async def post(
    client: Client, url: str, *, content: bytes, headers: dict[str, str], timeout: float
) -> Answer:
    """POST without following redirects; raises TransportFailed when there is no answer."""
    return await request(client, "POST", url, content=content, headers=headers, timeout=timeout)


async def request(
    client: Client,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    timeout: float,
    content: bytes | None = None,
    params: dict[str, str] | None = None,
    max_bytes: int = MAX_BODY_BYTES,
) -> Answer:
    """One request without following redirects; raises TransportFailed when there is no answer.

    httpx's timeout bounds each phase (connect, each read); `asyncio.timeout` also bounds the
    whole exchange so a receiver dripping bytes cannot hold a task forever. `max_bytes` is for
    callers whose answers legitimately outgrow MAX_BODY_BYTES (CRM batch results).
    """
    if isinstance(client, aiohttp.ClientSession):
        return await _request_aiohttp(
            client,
            method,
            url,
            headers=headers,
            timeout=timeout,
            content=content,
            params=params,
            max_bytes=max_bytes,
        )
    try:
        async with asyncio.timeout(timeout):
            built = client.build_request(
                method, url, params=params, content=content, headers=headers, timeout=timeout
            )
            response = await client.send(built, stream=True, follow_redirects=False)
            try:
                body = await _read_capped(response, max_bytes)
            finally:
                await response.aclose()
    except TimeoutError:
        raise TransportFailed(f"no answer within {timeout:g} s", sent=True) from None
    except httpx.ConnectTimeout:
        raise TransportFailed(f"could not connect within {timeout:g} s", sent=False) from None
    except httpx.TimeoutException:
        raise TransportFailed(f"no answer within {timeout:g} s", sent=True) from None
    except httpx.ConnectError:
        raise TransportFailed("could not connect (DNS, refused or TLS error)", sent=False) from None
    except httpx.TransportError as exc:
        raise TransportFailed(f"connection failed ({type(exc).__name__})", sent=True) from None
    return Answer(status=response.status_code, headers=response.headers, body=body)


async def _request_aiohttp(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    timeout: float,
    content: bytes | None,
    params: dict[str, str] | None,
    max_bytes: int,
) -> Answer:
    # httpx sends no Content-Type of its own for raw bytes; aiohttp would add
    # application/octet-stream, which some APIs reject. Keep the two paths identical.
    # None, not an empty tuple, when there is nothing to skip: aiohttp then takes its fast path
    # instead of building and merging a header multidict per request.
    skip = None if any(k.lower() == "content-type" for k in headers) else ("Content-Type",)
    try:
        async with asyncio.timeout(timeout):
            async with session.request(
                method,
                url,
                params=params,
                data=content,
                headers=headers,
                allow_redirects=False,
                skip_auto_headers=skip,
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=timeout),
            ) as response:
                body = await _read_capped_aiohttp(response, max_bytes)
                return Answer(
                    status=response.status, headers=httpx.Headers(list(response.headers.items())), body=body
                )
    except aiohttp.ConnectionTimeoutError:  # before TimeoutError, which it also is
        raise TransportFailed(f"could not connect within {timeout:g} s", sent=False) from None
    except TimeoutError:
        raise TransportFailed(f"no answer within {timeout:g} s", sent=True) from None
    except (aiohttp.ClientConnectorError, aiohttp.InvalidURL):
        raise TransportFailed("could not connect (DNS, refused or TLS error)", sent=False) from None
    except aiohttp.ClientError as exc:
        raise TransportFailed(f"connection failed ({type(exc).__name__})", sent=True) from None


async def _read_capped_aiohttp(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < max_bytes:
        chunk = await response.content.readany()
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:max_bytes]


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= max_bytes:
            break
    return b"".join(chunks)[:max_bytes]


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
