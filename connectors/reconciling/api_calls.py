"""Calling a provider's API for reconciliation: GET with retries on 429/5xx honouring Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import tenacity

from hub.sender import Request, TransportFailed

if TYPE_CHECKING:
    from hub.sender import Answer, Sender

from connectors.reconciling.contract import ReconcileFailed, Sleep

RETRIES = 5
"""Tries of one call on 429, 5xx or no answer before the run gives up (it is tried again next run)."""
MAX_WAIT = 120.0
"""The longest Retry-After honoured inside a run; a longer one ends the run (retried next time)."""


class _TryAgain(Exception):
    def __init__(self, message: str, wait: float | None) -> None:
        super().__init__(message)
        self.wait = wait


def retry_after(answer: Answer) -> float | None:
    """Seconds in a Retry-After header given as a number (the form these APIs use), else None."""
    raw = answer.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def _wait(state: tenacity.RetryCallState) -> float:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    if isinstance(error, _TryAgain) and error.wait is not None:
        return error.wait
    return min(2.0 ** (state.attempt_number - 1), 30.0)


async def get_json(
    http: Sender,
    url: str,
    *,
    what: str,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    sleep: Sleep = asyncio.sleep,
    denied: str = "the API token was refused (expired, revoked or without the needed scope)",
    not_found: str | None = None,
) -> Any:
    """GET `url` and return its JSON body; `what` names the call in messages (`list responses of form X`).

    429 and 5xx answers and failed connections are retried (RETRIES tries; a numeric Retry-After is
    waited for, up to MAX_WAIT); 401/403 raise a permanent `ReconcileFailed` saying `denied`, 404
    one saying `not_found`; any other answer, or a body that is not JSON, a `ReconcileFailed`.
    Nothing of the URL, headers or body is quoted: URLs may carry keys (Jotform's `apiKey`).
    """
    request = Request("GET", url, headers=dict(headers or {}), params=params, max_bytes=16 * 1024 * 1024)

    async def once() -> Any:
        try:
            answer = await http.send(request)
        except TransportFailed as exc:
            raise _TryAgain(f"{what}: {exc.reason}", None) from None
        if answer.status == 429 or answer.status >= 500:
            wait = retry_after(answer)
            if wait is not None and wait > MAX_WAIT:
                raise ReconcileFailed(f"{what}: rate limited for {wait:.0f} s; the next run tries again")
            raise _TryAgain(f"{what}: HTTP {answer.status}", wait)
        if answer.status in (401, 403):
            raise ReconcileFailed(f"{what}: HTTP {answer.status}: {denied}", permanent=True)
        if answer.status == 404:
            raise ReconcileFailed(f"{what}: HTTP 404: {not_found or 'not found'}", permanent=True)
        if answer.status >= 300:
            raise ReconcileFailed(f"{what}: HTTP {answer.status}: {answer.text[:200]}")
        if answer.truncated:
            raise ReconcileFailed(f"{what}: the answer was larger than 16 MiB")
        try:
            return answer.json()
        except ValueError:
            raise ReconcileFailed(f"{what}: the answer is not JSON") from None

    try:
        async for attempt in tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(_TryAgain),
            stop=tenacity.stop_after_attempt(RETRIES),
            wait=_wait,
            sleep=sleep,
            reraise=True,
        ):
            with attempt:
                return await once()
    except _TryAgain as exc:
        raise ReconcileFailed(f"{exc} (gave up after {RETRIES} tries; the next run tries again)") from None
    raise AssertionError("unreachable: tenacity either returns or raises")
