"""HubSpot requests, batch inputs and the facts in answers (part of the `hubspot` destination).

Sources: HubSpot's usage guidelines for the rate-limit headers and 429 bodies
(https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines) and its error-handling
page for the error body fields, all optional: parse defensively
(https://developers.hubspot.com/docs/api-reference/error-handling); both listed in
docs/destinations/hubspot.md. Nothing here logs, and no URL or token ever reaches a reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flows.destinations import _http
from hub.sender import Request, Sender

MAX_BODY_BYTES = 1024 * 1024
"""A batch answer echoes every contact's properties: 100 of them can pass _http's 64 KiB cap,
and a truncated answer would turn 100 upserted contacts into 100 unreadable results."""
REASON_CHARS = 300


async def send(
    sender: Sender, method: str, url: str, *, content: bytes, headers: dict[str, str], timeout: float
) -> _http.Answer:
    """One request with HubSpot's larger body cap (see MAX_BODY_BYTES)."""
    return await sender.send(
        Request(method, url, headers, content, timeout=timeout, max_bytes=MAX_BODY_BYTES)
    )


@dataclass(frozen=True)
class Input:
    """One contact bound for the batch upsert."""

    key: str
    email: str
    properties: dict[str, str]
    remote_id: str | None = None

    def body(self) -> dict[str, Any]:
        # Batch upsert: idProperty email, no match creates, one match updates.
        return {
            "idProperty": "email",
            "id": self.email,
            "properties": self.properties,
            "objectWriteTraceId": self.key,
        }


def batches(inputs: list[Input], size: int) -> list[list[Input]]:
    """Groups of at most `size`, each email at most once per group: a repeated email goes to a later
    group, so the later submission is applied last rather than in an order HubSpot picks (or refuses)."""
    groups: list[list[Input]] = []
    emails: list[set[str]] = []
    for one in inputs:
        email = one.email.casefold()
        index = next(
            (i for i, group in enumerate(groups) if len(group) < size and email not in emails[i]), None
        )
        if index is None:
            groups.append([])
            emails.append(set())
            index = len(groups) - 1
        groups[index].append(one)
        emails[index].add(email)
    return groups


@dataclass(frozen=True)
class Limits:
    """The X-HubSpot-RateLimit-* headers of one answer; None where absent or unreadable."""

    max: int | None = None
    remaining: int | None = None
    interval: float | None = None
    """Seconds of the rolling window (the header is in milliseconds)."""
    daily: int | None = None
    daily_remaining: int | None = None
    """Not sent for OAuth calls (HubSpot's usage guidelines)."""


def limits(headers: Mapping[str, str]) -> Limits:
    interval_ms = _int(headers.get("x-hubspot-ratelimit-interval-milliseconds"))
    return Limits(
        max=_int(headers.get("x-hubspot-ratelimit-max")),
        remaining=_int(headers.get("x-hubspot-ratelimit-remaining")),
        interval=interval_ms / 1000 if interval_ms else None,
        daily=_int(headers.get("x-hubspot-ratelimit-daily")),
        daily_remaining=_int(headers.get("x-hubspot-ratelimit-daily-remaining")),
    )


def _int(value: str | None) -> int | None:
    if value is None or not re.fullmatch(r"\s*\d{1,12}\s*", value):
        return None
    return int(value)


def json_body(answer: _http.Answer) -> Any:
    """The parsed JSON body, or None when it is not JSON."""
    try:
        return json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        return None


def error_object(data: Any) -> dict[str, Any]:
    """An error body as a dict ({} when the body was not a JSON object)."""
    return data if isinstance(data, dict) else {}


def sub_errors(error: dict[str, Any]) -> list[dict[str, Any]]:
    found = error.get("errors")
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def texts(error: dict[str, Any]) -> list[str]:
    """Every message an error carries (its own and its `errors[]`), for finding names in them."""
    found = [error.get("message")] + [e.get("message") for e in sub_errors(error)]
    return [text for text in found if isinstance(text, str)]


def category(error: dict[str, Any]) -> str | None:
    value = error.get("category") or error.get("errorType")
    return value if isinstance(value, str) else None


def codes(error: dict[str, Any]) -> list[str]:
    """Specific codes such as PROPERTY_DOESNT_EXIST, INVALID_EMAIL, CONTACT_EXISTS."""
    found = [e.get("code") or e.get("errorType") for e in sub_errors(error)] + [error.get("error")]
    return [code for code in found if isinstance(code, str) and code]


def describe(error: dict[str, Any], fallback: str) -> str:
    """`CATEGORY: message (CODE)` from an error object, one line, bounded."""
    details = [m for e in sub_errors(error) if isinstance(m := e.get("message"), str)]
    # errors[].message is the readable one; the top message often embeds the same as JSON.
    message = "; ".join(details[:3]) or error.get("message")
    text = message if isinstance(message, str) and message.strip() else fallback
    label = category(error)
    code_list = [c for c in codes(error) if c != label]
    out = f"{label}: {text}" if label else text
    if code_list:
        out += f" ({', '.join(dict.fromkeys(code_list))})"
    return _http.snippet(out, REASON_CHARS)


def existing_id(error: dict[str, Any]) -> str | None:
    """The contact id a 409 names ("Contact already exists. Existing ID: 51209")."""
    for text in texts(error):
        match = re.search(r"Existing ID:\s*(\d+)", text)
        if match:
            return match.group(1)
    return None


def required_scopes(error: dict[str, Any]) -> list[str]:
    scopes: list[str] = []
    for sub in sub_errors(error):
        context = sub.get("context")
        if isinstance(context, dict):
            for name in ("requiredGranularScopes", "requiredScopes"):
                value = context.get(name)
                if isinstance(value, list):
                    scopes.extend(str(scope) for scope in value)
    return list(dict.fromkeys(scopes))


def body_snippet(answer: _http.Answer) -> str:
    return repr(_http.snippet(answer.text)) if answer.body.strip() else "an empty body"
