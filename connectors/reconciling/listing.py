"""Reading a listing one item at a time: an item that cannot be normalized is its own problem."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from connectors.reconciling.contract import ListedResponse, ReconcileFailed, ResponsePage, UnreadableResponse
from hub.submission import Submission

Read = ListedResponse | UnreadableResponse
"""One listed item, as `read_response` gives it."""


def list_in(body: Any, key: str, what: str) -> list[Any]:
    """`body[key]`, the list an API answer holds (its items, its webhooks); `ReconcileFailed` naming
    `what` (the request) if the answer is no object or has no such list."""
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ReconcileFailed(f"{what}: the answer has no {key} list")
    return items


def problem_text(error: BaseException, limit: int = 300) -> str:
    """What went wrong with one response, for its dead letter: the exception's message (its type
    where it has none), cut to `limit` characters. Normalization errors quote the payload's shape,
    never the request's credentials."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_response(
    response_id: str, submitted_at: datetime, normalize: Callable[[], Submission], form_id: str | None = None
) -> Read:
    """The response normalized, or, where `normalize` fails, an `UnreadableResponse` saying why.

    One odd response (a field of an unexpected type, an API change in one item) must neither stop
    the run nor hold the watermark back for ever: its identity and time are known, so the hub keeps
    it as a dead letter and the rest of the page is stored. `form_id`: see UnreadableResponse."""
    try:
        submission = normalize()
    except Exception as exc:  # noqa: BLE001 - any failure of this one item is its problem, not the run's
        return UnreadableResponse(response_id, submitted_at, problem_text(exc), form_id)
    return ListedResponse(response_id, submitted_at, submission)


def page_of(read: Iterable[Read], total: int | None = None) -> ResponsePage:
    """A `ResponsePage` of what was read, the readable and the unreadable apart, in listing order."""
    items = list(read)
    return ResponsePage(
        [r for r in items if isinstance(r, ListedResponse)],
        total,
        [r for r in items if isinstance(r, UnreadableResponse)],
    )
