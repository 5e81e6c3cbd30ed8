"""What the per-provider reconciliation tests (tests/test_reconcile_<provider>.py) check alike.

Each provider's file still says what it proves (which status, which hints, which item is odd and why);
these only spare it writing the same plumbing again: a fake API that answers once otherwise, the
pages' ids, the one item set aside, a refusal that must be permanent and must not quote a secret.
A reconciler's `sleep` that records instead of waiting is `VirtualTime().sleep` (its `.sleeps`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import httpx
import pytest

from connectors.base import SourceSettings
from connectors.reconciling import (
    ReconcileFailed,
    Reconciler,
    ReconcileSettings,
    ResponsePage,
    UnreadableResponse,
    Window,
)
from tests.destination_helpers import VirtualTime
from tests.httpx_senders import respx_sender

__all__ = [
    "VirtualTime",
    "assert_refused_without",
    "assert_set_aside",
    "first_answer_then",
    "ids_of",
    "pages_of",
    "rate_limited",
]

Handler = Callable[[httpx.Request], httpx.Response]


def rate_limited(retry_after: str, **content: object) -> httpx.Response:
    """A 429 asking to wait `retry_after` seconds; `content` is the provider's body (json=/text=)."""
    return httpx.Response(429, headers={"Retry-After": retry_after}, **content)  # type: ignore[arg-type]


def first_answer_then(first: httpx.Response, then: Handler) -> Handler:
    """A fake API that answers the first request with `first` (a 429) and every later one with `then`."""
    answers = iter([first])

    def answer(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or then(request)

    return answer


async def pages_of(
    reconciler: Reconciler, source: SourceSettings, settings: ReconcileSettings, window: Window
) -> list[ResponsePage]:
    """Every page `reconciler` lists for `window`, asked through a Sender that respx can mock."""
    return [page async for page in reconciler.responses(source, settings, window, respx_sender())]


def ids_of(pages: Iterable[ResponsePage]) -> list[str]:
    """The response ids the pages list, in listing order (the unreadable left out)."""
    return [r.response_id for p in pages for r in p.responses]


def assert_set_aside(
    pages: Iterable[ResponsePage], response_id: str, submitted_at: datetime, problem: str
) -> UnreadableResponse:
    """Exactly one listed item was unreadable: this one, at this time, for this reason."""
    [unreadable] = [u for p in pages for u in p.unreadable]
    assert (unreadable.response_id, unreadable.submitted_at, unreadable.problem) == (
        response_id,
        submitted_at,
        problem,
    )
    return unreadable


def assert_refused_without(
    secrets: Iterable[str], caught: pytest.ExceptionInfo[ReconcileFailed], *hints: str
) -> None:
    """The run stopped for good (trying again cannot help), its message holds every hint (what to do,
    which setting) and none of `secrets` (the refused credential, the configured one)."""
    message = str(caught.value)
    assert caught.value.permanent, message
    assert [h for h in hints if h not in message] == [], message
    assert [i for i, s in enumerate(secrets) if s in message] == [], "the message quotes a secret"
