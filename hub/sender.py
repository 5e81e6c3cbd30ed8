"""The one HTTP seam: destinations and connectors send a `Request` through a `Sender` and get an `Answer`.

Production sends with `AiohttpSender` (flows/http_clients.py holds the pooled sessions); tests and
`hookhub test-route` hand in a `FakeSender`, as httpx has `BaseTransport` / `MockTransport`, so the
code under test is the code that runs. Both bound the whole exchange by the request's timeout, cap
the body they keep and fail with `TransportFailed`.

Nothing here logs or returns a URL: webhook URLs carry their credential in the path, and client
error messages can quote the URL, so transport errors are described by their type.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

MAX_BODY_BYTES = 64 * 1024
"""Deliveries read answers only to classify them: a receiver streaming megabytes must not cost memory."""


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request; redirects are never followed, `timeout` bounds the whole exchange (seconds)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None
    params: Mapping[str, str] | None = None
    timeout: float = 30.0
    max_bytes: int = MAX_BODY_BYTES
    """The most of the answer's body that is kept (CRM batch results and API pages need more)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What the target answered: status, headers (looked up case-insensitively), at most the
    request's `max_bytes` of the body, and whether more was sent than kept."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.headers, CIMultiDictProxy):
            object.__setattr__(self, "headers", CIMultiDictProxy(CIMultiDict(self.headers)))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not (UnicodeDecodeError is one)."""
        return json.loads(self.body)


class TransportFailed(Exception):
    """The request got no HTTP answer (connect error, timeout, broken connection)."""

    def __init__(self, reason: str, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent
        """Whether the request may have reached the target (a retry may then duplicate)."""


class Sender(Protocol):
    async def send(self, request: Request) -> Answer:
        """The answer to `request`; raises TransportFailed when there is none."""
        ...


def json_content(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON, the body every JSON API here is sent."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def form_content(fields: Mapping[str, str]) -> bytes:
    """`fields` as an application/x-www-form-urlencoded body."""
    return urlencode(fields).encode("ascii")


_NO_CONTENT_TYPE = ("Content-Type",)


class AiohttpSender:
    """Sends through an aiohttp session (measured the cheapest in CPU per request: see
    flows/http_clients.py). The session is the caller's: this never closes it."""

    __slots__ = ("_session",)

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def send(self, request: Request) -> Answer:
        timeout = request.timeout
        # aiohttp would add Content-Type: application/octet-stream to raw bytes, which some APIs
        # reject: a request says its type or has none. None, not an empty tuple, when there is
        # nothing to skip: aiohttp then takes its fast path instead of merging header multidicts.
        skip = None if any(k.lower() == "content-type" for k in request.headers) else _NO_CONTENT_TYPE
        try:
            async with asyncio.timeout(timeout):
                async with self._session.request(
                    request.method,
                    request.url,
                    params=request.params,
                    data=request.content,
                    headers=request.headers,
                    allow_redirects=False,
                    skip_auto_headers=skip,
                    timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=timeout),
                ) as response:
                    body, truncated = await _read_capped(response, request.max_bytes)
                    return Answer(response.status, response.headers, body, truncated)
        except aiohttp.ConnectionTimeoutError:  # before TimeoutError, which it also is
            raise TransportFailed(f"could not connect within {timeout:g} s", sent=False) from None
        except TimeoutError:
            raise TransportFailed(f"no answer within {timeout:g} s", sent=True) from None
        except (aiohttp.ClientConnectorError, aiohttp.InvalidURL):
            raise TransportFailed("could not connect (DNS, refused or TLS error)", sent=False) from None
        except aiohttp.ClientError as exc:
            raise TransportFailed(f"connection failed ({type(exc).__name__})", sent=True) from None


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size <= max_bytes:
        chunk = await response.content.readany()
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:max_bytes], size > max_bytes


Handler = Callable[[Request], Answer | Awaitable[Answer]]


class FakeSender:
    """A Sender answering from `handler` (which may raise TransportFailed), recording every request.

    Like AiohttpSender it bounds the exchange by the request's timeout and caps the body it returns.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []

    async def send(self, request: Request) -> Answer:
        self.requests.append(request)
        try:
            async with asyncio.timeout(request.timeout):
                result = self.handler(request)
                answer = result if isinstance(result, Answer) else await result
        except TimeoutError:
            raise TransportFailed(f"no answer within {request.timeout:g} s", sent=True) from None
        if len(answer.body) > request.max_bytes:
            return dataclasses.replace(answer, body=answer.body[: request.max_bytes], truncated=True)
        return answer
