"""What Pipedrive's answers mean, and what an earlier attempt created (helper of `pipedrive`).

Sources: Pipedrive's response envelope (https://pipedrive.readme.io/docs/core-api-concepts-responses),
rate limits and retry classes as docs/destinations/pipedrive.md states and cites them.
Every answer is `{"success", "data", "error", "error_info"}` (+ `code` on plan caps); a 2xx with
`success: false` or without `data` is not a success.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from flows.destinations import _crm_http, _http
from flows.destinations.base import Status

WINDOW = 2.0
"""Burst limits count requests per rolling 2-second window (rate-limiting docs)."""
QUOTA_PAUSE = 3600.0
"""The daily token budget refills "the next day", at no stated time: check back hourly (park, do not spin)."""
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
ADVICE: dict[int, str] = {
    401: "the api_token is wrong or was rotated (a user has one active token): set the current one",
    403: "the token's user may not do this, or the company's plan limit is reached",
    404: "check base_url (https://api.pipedrive.com or https://<company>.pipedrive.com)",
    410: "the endpoint is gone: check base_url",
}


@dataclass(eq=False)  # eq=False: an exception keeps identity hashing (tracebacks track them by it)
class Stopped(Exception):
    """A step cannot go on; carries what the item's Outcome says."""

    status: Status
    reason: str
    status_code: int | None = None
    retry_after: float | None = None
    code: str | None = None
    deferred: bool = False
    """The call was not made: the token's pause or budget held it (see Outcome.deferred)."""

    def __post_init__(self) -> None:
        super().__init__(self.reason)


@dataclass(frozen=True)
class Progress:
    """What exists in Pipedrive for one delivery, kept in the ledger as `remote_id`:
    `person:1042` after the person step, `person:1042/lead:<uuid>` (or `/deal:<id>`) when done."""

    person: int | None = None
    record: str | None = None

    @classmethod
    def parse(cls, remote_id: str | None) -> Progress:
        found = cls()
        for part in (remote_id or "").split("/"):
            kind, _, value = part.partition(":")
            if kind == "person" and value.isdigit():
                found = replace(found, person=int(value))
            elif kind in ("lead", "deal") and value:
                found = replace(found, record=part)
        return found

    @property
    def remote_id(self) -> str | None:
        parts = [f"person:{self.person}"] if self.person is not None else []
        parts += [self.record] if self.record else []
        return "/".join(parts) or None


def limit_wait(answer: _http.Answer, now: float) -> float | None:
    """Seconds nobody may call with this token, from the answer's rate-limit signals (None: go on).

    Retry-After is honoured as given; else a 429 waits for `x-ratelimit-reset`, or an hour when
    `x-daily-requests-left` is 0 (the day's budget is spent, the burst reset does not help).
    """
    retry_after = _http.parse_retry_after(answer.headers.get("retry-after"), now)
    reset = _crm_http.header_number(answer, "x-ratelimit-reset")
    remaining = _crm_http.header_number(answer, "x-ratelimit-remaining")
    daily_left = _crm_http.header_number(answer, "x-daily-requests-left")
    if answer.status == 429:
        if retry_after is not None:
            return retry_after
        if daily_left == 0:
            return QUOTA_PAUSE
        return reset if reset is not None else WINDOW
    waits = [retry_after or 0.0]
    if remaining == 0:  # the window is used up: the next call would earn a 429
        waits.append(reset if reset is not None else WINDOW)
    if daily_left == 0:
        waits.append(QUOTA_PAUSE)
    return max(waits) or None


def judge(answer: _http.Answer, action: str, creates: bool, wait: float | None) -> Any:
    """The `data` of a successful answer; raises Stopped with the classification otherwise."""
    envelope = _crm_http.json_of(answer)
    envelope = envelope if isinstance(envelope, dict) else {}
    status = answer.status
    code = envelope.get("code") if isinstance(envelope.get("code"), str) else None
    code = code if code and _CODE.fullmatch(code) else None
    said = _said(envelope, answer)
    maybe = f"; the {action.split()[-1]} may have been created" if creates else ""
    if 200 <= status < 300:
        if envelope.get("success") is True and envelope.get("data") is not None:
            return envelope["data"]
        if envelope.get("success") is False:
            raise Stopped(
                "failed", f"Pipedrive refused to {action} (HTTP {status}): {said}", status, code=code
            )
        raise Stopped(
            "failed", f"unexpected answer from Pipedrive to {action} (HTTP {status}): {said}{maybe}", status
        )
    if status == 429:
        raise Stopped(
            "retry",
            f"Pipedrive rate limit (429) on {action}: this api_token waits {wait or WINDOW:g} s",
            status,
            retry_after=wait or WINDOW,
        )
    if status >= 500:
        again = "; retrying may create it twice" if creates else ""
        raise Stopped(
            "retry",
            f"Pipedrive server error (HTTP {status}) on {action}: {said}{again}",
            status,
            retry_after=wait,
        )
    if 300 <= status < 400:
        raise Stopped(
            "failed",
            f"Pipedrive redirects (HTTP {status}); redirects are not followed: set base_url to the API host",
            status,
        )
    advice = f"; {ADVICE[status]}" if status in ADVICE else ""
    tag = f" [{code}]" if code else ""
    raise Stopped(
        "failed", f"Pipedrive refused to {action} (HTTP {status}): {said}{tag}{advice}", status, code=code
    )


def _said(envelope: dict[str, Any], answer: _http.Answer) -> str:
    error = envelope.get("error")
    if isinstance(error, str) and error.strip():
        return repr(_http.snippet(error))
    return repr(_http.snippet(answer.text)) if answer.body.strip() else "an empty body"


def person_in_search(data: Any) -> int | None:
    """The id of the best match of an exact e-mail search (items come best first), or None."""
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise Stopped("failed", "unexpected answer from Pipedrive's person search: no `items` list")
    for entry in items:
        person = entry.get("item") if isinstance(entry, dict) else None
        found = person.get("id") if isinstance(person, dict) else None
        if isinstance(found, int) and not isinstance(found, bool) and found > 0:
            return found
    return None


def created_id(data: Any, what: str, status: int) -> str:
    """The id of what a create call made (person and deal ids are numbers, lead ids UUIDs)."""
    found = data.get("id") if isinstance(data, dict) else None
    if isinstance(found, bool) or not isinstance(found, (int, str)) or not str(found).strip():
        raise Stopped(
            "failed",
            f"Pipedrive answered HTTP {status} to create the {what} without an id; "
            f"the {what} may have been created",
            status,
        )
    return str(found).strip()[:64]
