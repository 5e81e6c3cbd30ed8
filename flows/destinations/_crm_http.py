"""JSON requests with any method, for the CRM destinations (a helper, not a destination type).

The transport is the hub's Sender (hub/sender.py); Salesforce upserts with PATCH and Pipedrive
searches with GET, both with JSON bodies and sometimes a larger body cap (a 200-record Salesforce answer with
duplicate-rule details outgrows `hub.sender.MAX_BODY_BYTES`), so this adds the JSON encoding and the
readers of JSON answers and numeric headers.
Nothing here logs or returns a URL or a header: they may carry credentials.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from hub.sender import MAX_BODY_BYTES, Answer, Request, Sender, json_content


async def send(
    sender: Sender,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    timeout: float,
    body: Any = None,
    params: Mapping[str, str] | None = None,
    max_bytes: int = MAX_BODY_BYTES,
) -> Answer:
    """One request with `body` sent as compact UTF-8 JSON when given; TransportFailed when unanswered."""
    content = None if body is None else json_content(body)
    return await sender.send(Request(method, url, headers, content, params, timeout, max_bytes))


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
