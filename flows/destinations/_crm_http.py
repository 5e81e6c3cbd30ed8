"""JSON requests with any method, for the CRM destinations (a helper, not a destination type).

The transport is `_http.request`; Salesforce upserts with PATCH and Pipedrive searches with GET,
both with JSON bodies and sometimes a larger body cap (a 200-record Salesforce answer with
duplicate-rule details outgrows `_http.MAX_BODY_BYTES`), so this adds the JSON encoding and the
readers of JSON answers and numeric headers.
Like `_http`, nothing here logs or returns a URL or a header: they may carry credentials.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx

from flows.destinations import _http
from flows.destinations._http import MAX_BODY_BYTES, Answer


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
    """`_http.request` with `body` serialized as compact UTF-8 JSON when given."""
    content = None if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return await _http.request(
        client,
        method,
        url,
        headers=headers,
        timeout=timeout,
        content=content,
        params=params,
        max_bytes=max_bytes,
    )


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
