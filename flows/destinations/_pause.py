"""How long a send waits for a paused pacing key (a target's 429/421) before handing its items back.

Every destination that paces against a target's pause applies the same rule: a short pause is
waited out in the task, a longer one becomes deferred retries (not counted as attempts) so the
task does not hold a worker while the ledger can reschedule the items for the pause's end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

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


# How many more turns the current delivery task may wait for (None: no limit); set per task by
# `inline_turns`, read deep in a destination's send path without threading it through each call.
_turns_left: ContextVar[int | None] = ContextVar("hookhub_inline_turns", default=None)


INLINE_TURNS_SECONDS = 2.5
"""How long of turns a delivery task waits for in a row before handing the rest back. A chunk of
100 Slack posts would otherwise take 100 s, and its batch's other destinations and the batches
behind it would wait that long: bench/peak.py drained 45 submissions/s to a file with a Slack
route, 394/s without, and 72/s when tasks still waited up to MAX_INLINE_PAUSE (5 s) of turns."""


@contextmanager
def inline_turns(interval: float) -> Iterator[None]:
    """Within it, the task waits for at most the turns that fit in INLINE_TURNS_SECONDS at
    `interval` (at least one); later sends are handed back, each due at a turn of its own."""
    token = _turns_left.set(int(INLINE_TURNS_SECONDS / interval) + 1 if interval > 0 else None)
    try:
        yield
    finally:
        _turns_left.reset(token)


async def turn_or_later(context: DeliveryContext, key: str, interval: float) -> Hold | None:
    """None once it is the caller's turn on `key` (sends spaced `interval` apart); else why and
    for how long to hand the send back: a pause longer than MAX_INLINE_PAUSE, more than that of
    turns already taken by other tasks, or this task's own `inline_turns` used up."""
    paused: float = context.pacer.paused_for(key)
    if paused > MAX_INLINE_PAUSE:
        return Hold(paused, paused=True)
    left = _turns_left.get()
    # Behind other tasks' turns too, a task waits about as long as for its own.
    queue_wait = MAX_INLINE_PAUSE if left is None else max(interval, INLINE_TURNS_SECONDS)
    if (left is None or left > 0) and await context.pacer.wait_turn(key, interval, queue_wait):
        if left is not None:
            _turns_left.set(left - 1)
        return None
    return Hold(context.pacer.later_turn(key, interval), paused=False)


@dataclass(frozen=True)
class Hold:
    seconds: float
    paused: bool
    """True: the target asked for the pause (429, 421); False: the turns before it are taken."""

    def reason(self, asked: str) -> str:
        if self.paused:
            return f"not sent: {asked}; paused for {self.seconds:.0f} s"
        return f"not sent yet: queued behind earlier sends to the same target; due in {self.seconds:.0f} s"
