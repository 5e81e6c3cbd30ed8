"""Outcomes for an item whose own handling raised (a helper of every destination, not a type).

One rule for all: an exception while building one item's content fails that item only, as a dead
letter with the reason (the same template and submission would fail the same way on every retry,
so retrying it for two days helps no one); and an unexpected exception while sending one item, or
one sub-batch, records an outcome for those only, so what the same call already sent keeps its
"delivered" and is never sent again.
"""

from __future__ import annotations

from flows.destinations._http import snippet
from flows.destinations.base import Outcome
from flows.mapping import render_failure


def content_failed(key: str, exc: Exception, field: str = "message") -> Outcome:
    """The dead letter of an item whose message could not be built; a MappingError's text already
    names its field, any other exception is named by type under `field`."""
    return Outcome(key=key, status="failed", reason=str(render_failure(exc, field)))


def send_crashed(key: str, exc: Exception) -> Outcome:
    """The dead letter of an item whose send raised in hookhub itself: it may or may not have gone
    out, so it is not retried blindly; `hookhub replay` sends it again once someone has looked."""
    reason = (
        f"hookhub failed while sending ({type(exc).__name__}: {snippet(str(exc))}); it may or may not "
        "have been sent: check the destination, then replay"
    )
    return Outcome(key=key, status="failed", reason=reason)
