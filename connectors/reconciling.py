"""What reconciliation needs from a provider: its responses API, and whether its webhook is healthy.

Providers drop webhooks in ways no receiver can see (a Typeform webhook disabled after failures,
a Jotform webhook deleted while the form is edited). A connector whose provider has a documented
list endpoint sets `Connector.reconciler` to a `Reconciler`; hub/reconcile/ then lists the
form's responses in a time window, compares them with the spool by the provider's response
identity, and stores the missing ones (metadata.origin `reconciled` or `imported`).

The identity is the key of the whole feature: a response listed here and a webhook for the same
response must carry the same `response_id` (the webhook's in `Envelope.response_id`), so that
whichever comes second is a duplicate. Each provider's docs page states its rule.

Every request goes through the `Sender` (hub/sender.py) and through `get_json` below, which
retries 429 and 5xx answers (honouring Retry-After) and turns the rest into `ReconcileFailed`.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import tenacity
from pydantic import BaseModel, ConfigDict, Field

from hub.alerts.durations import Duration
from hub.sender import Request, TransportFailed
from hub.submission import Submission

if TYPE_CHECKING:
    from connectors.base import SourceSettings
    from hub.sender import Answer, Sender

DAY = 86400.0


class ReconcileFailed(Exception):
    """The provider's API could not be read; the message says why and what to do.

    `permanent`: trying again cannot help until the admin acts (a revoked or expired token, a
    form that does not exist): the run stops and says so instead of retrying.
    """

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ReconcileSettings(BaseModel):
    """`reconcile:` on a source. Each provider's `Reconciler.Settings` subclasses this with what its
    API needs (credentials, form ids, `api_base_url`); credentials come from the environment
    (`${TYPEFORM_TOKEN}`) and are `SecretStr`, so they never appear in a repr or a log."""

    model_config = ConfigDict(extra="forbid")

    every: Duration = Field(default=3600.0, ge=60, description="how often the scheduled run lists the form")
    lookback: Duration = Field(
        default=7 * DAY, ge=60, description="how far back the first run (with no watermark yet) looks"
    )
    settle: Duration = Field(
        default=600.0,
        ge=0,
        description="responses younger than this are left to their webhook (it may still be on its way)",
    )


@dataclass(frozen=True)
class Window:
    """Responses submitted in [since, until): what one run lists."""

    since: datetime
    until: datetime


@dataclass(frozen=True)
class ListedResponse:
    """One response as the provider's API lists it.

    `response_id` is the identity a webhook for the same response carries in
    `Envelope.response_id`. `submission` is normalized like the webhook's would be (the hub sets
    its `id`, `source` and `metadata.origin`); its `event_id` is the response id where the API has
    no event id of its own.
    """

    response_id: str
    submitted_at: datetime
    submission: Submission


@dataclass(frozen=True)
class UnreadableResponse:
    """A listed response the connector could not normalize: `problem` says why.

    Listed on its page rather than raised, so that one odd response neither stops the run nor
    holds the watermark back for ever: the hub stores it as a dead letter with the problem, and
    the listing goes on with the others.
    """

    response_id: str
    submitted_at: datetime
    problem: str


@dataclass(frozen=True)
class ResponsePage:
    """One page of a listing, oldest first where the API allows it."""

    responses: list[ListedResponse]
    total: int | None = None
    """Responses in the whole window, when the API says (for the progress bar)."""
    unreadable: list[UnreadableResponse] = field(default_factory=list)


Sleep = Callable[[float], Awaitable[None]]

WebhookState = Literal["ok", "disabled", "missing", "elsewhere"]


@dataclass(frozen=True)
class WebhookHealth:
    """What the provider says of the webhook that should be sending to this source.

    `detail` is for the alert: what the API said, in words (never a token, never the URL's secret).
    """

    state: WebhookState
    detail: str


class Reconciler(abc.ABC):
    """A provider's responses API (and, where it has one, its webhook API)."""

    Settings: ClassVar[type[ReconcileSettings]] = ReconcileSettings
    page_size: ClassVar[int]
    """Responses per listing call: the README's cost figures are computed from it."""
    api: ClassVar[str]
    """The API a run reads, for messages and docs (`Typeform Responses API`)."""

    def __init__(self, sleep: Sleep = asyncio.sleep) -> None:
        self.sleep = sleep
        """How calls wait out a Retry-After (pass it to `get_json`); a test passes one that records."""

    @abc.abstractmethod
    def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        """The responses submitted in `window`, page by page. Raise `ReconcileFailed`."""

    async def webhook_health(
        self, source: SourceSettings, settings: Any, expected_url: str | None, http: Sender
    ) -> WebhookHealth | None:
        """Whether the provider's webhook for this source is enabled and points at `expected_url`
        (the source's public URL, None if the hub does not know it); None where the API cannot say."""
        return None


# -- calling an API ------------------------------------------------------------------------

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
