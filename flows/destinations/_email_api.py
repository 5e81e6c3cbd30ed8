"""What the e-mail API destinations (SendGrid, Postmark) share: a paused account defers its items,
a send that got no answer is retried with a warning that the mail may arrive twice."""

from __future__ import annotations

from flows.destinations._pause import held_for
from flows.destinations.base import DeliveryContext, Outcome
from hub.sender import TransportFailed

UNTIMED_PAUSE = 60.0
"""A 429 that says nothing about when (no Retry-After, no reset): leave the key alone this long."""


async def wait_or_defer(
    context: DeliveryContext, pacing_key: str, keys: list[str], service: str, credential: str
) -> list[Outcome] | None:
    """None once the account may send (after a short pause); else the deferred retries of `keys`."""
    paused = await held_for(context, pacing_key)
    if paused is None:
        return None
    reason = f"not sent: {service} asked to slow down (429); the {credential} is paused for {paused:.0f} s"
    return [Outcome(key=k, status="retry", reason=reason, retry_after=paused, deferred=True) for k in keys]


def unanswered(keys: list[str], service: str, failed: TransportFailed) -> list[Outcome]:
    """Retries for a send that got no answer; one that may have gone out may arrive twice."""
    reason = f"{service}: {failed.reason}" + ("; retrying, the mail may arrive twice" if failed.sent else "")
    return [Outcome(key=k, status="retry", reason=reason) for k in keys]
