"""How long a send waits for a paused pacing key (a target's 429/421) before handing its items back.

Every destination that paces against a target's pause applies the same rule: a short pause is
waited out in the task, a longer one becomes deferred retries (not counted as attempts) so the
task does not hold a worker while the ledger can reschedule the items for the pause's end.
"""

from __future__ import annotations

from flows.destinations.base import DeliveryContext

MAX_INLINE_PAUSE = 5.0
"""Seconds of pause a task waits out; beyond that its items go back to the ledger."""


async def held_for(context: DeliveryContext, key: str, interval: float = 0.0) -> float | None:
    """The seconds left of a pause on `key` too long to wait out, or None once it is the caller's
    turn (after a short pause, and `interval` after the key's previous send)."""
    paused: float = context.pacer.paused_for(key)
    if paused > MAX_INLINE_PAUSE:
        return paused
    await context.pacer.wait_turn(key, interval)
    return None
