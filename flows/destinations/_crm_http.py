"""JSON requests with any method, for the CRM destinations (a helper, not a destination type).

`_http.post` covers destinations that only POST; Salesforce upserts with PATCH and Pipedrive
searches with GET, so this adds the method, query parameters and a per-call body cap (a
200-record Salesforce answer with duplicate-rule details outgrows `_http.MAX_BODY_BYTES`).
Like `_http`, nothing here logs or returns a URL or a header: they may carry credentials.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx

from flows.destinations._http import MAX_BODY_BYTES, Answer, TransportFailed


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    timeout: float,
    body: Any = None,
    params: dict[str, str] | None = None,
    max_bytes: int = MAX_BODY_BYTES,
) -> Answer:
    """One request without following redirects; raises TransportFailed when there is no answer.

    `body` is serialized as compact UTF-8 JSON when given. `asyncio.timeout` bounds the whole
    exchange, httpx's timeout each phase (see `_http.post`).
    """
    content = None if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    try:
        async with asyncio.timeout(timeout):
            request = client.build_request(
                method, url, params=params, content=content, headers=headers, timeout=timeout
            )
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                data = await _read_capped(response, max_bytes)
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
    return Answer(status=response.status_code, headers=response.headers, body=data)


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= max_bytes:
            break
    return b"".join(chunks)[:max_bytes]


def json_of(answer: Answer) -> Any:
    """The answer's JSON value, or None when the body is empty or not JSON."""
    if not answer.body.strip():
        return None
    try:
        return json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        return None


def header_number(answer: Answer, name: str) -> float | None:
    """A numeric header (`x-ratelimit-reset: 2`), or None when absent or not a non-negative number."""
    value = answer.headers.get(name)
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None
