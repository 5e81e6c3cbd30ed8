"""Process-wide send pacing: at most one send per `min_interval` per key, rolling budgets
(at most N sends per window per key, fed by what the target reports), and pauses.

A key names one account whose budget the target enforces (a Slack webhook, a receiver
endpoint), e.g. ``"slack-webhook:" + sha256(url)[:16]``. Keys end up in logs, so they must
never contain a secret or a URL with a token in it.

Delivery tasks run in different threads, each with its own asyncio event loop, and all of
them share `PACER`. asyncio locks and events belong to one loop, so slots are reserved under
a `threading.Lock` (held only for a few arithmetic operations, never across an `await`) and
each caller then sleeps in its own loop until its reserved time.

This is the pacer of the SQLite all-in-one hub, one process; on PostgreSQL, where several
worker processes share the budgets, flows/budgets.py holds them in the store instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("hookhub.pacing")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Window:
    """A rolling budget: at most `limit` sends in any `seconds`; `sends` holds their times, oldest first."""

    limit: int
    seconds: float
    sends: deque[float] = field(default_factory=deque)

    def expire(self, now: float) -> None:
        while self.sends and self.sends[0] <= now - self.seconds:
            self.sends.popleft()


class Pacer:
    """Spaces sends per key and honours pauses (e.g. a 429's Retry-After) across threads.

    `clock` must be monotonic seconds (tests inject a fake one); `sleep` is awaited in the
    caller's event loop (tests inject one that advances the fake clock instead of waiting).
    """

    def __init__(self, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free: dict[str, float] = {}
        self._paused_until: dict[str, float] = {}
        self._windows: dict[str, _Window] = {}
        self._later: dict[str, float] = {}

    async def wait_turn(self, key: str, min_interval: float, max_wait: float | None = None) -> bool:
        """Return True when the caller may send on `key`; the slot is taken when this returns.

        False, taking nothing, when the turn would start more than `max_wait` seconds from now:
        the caller can hand its work back (as `acquire` does) rather than sleep that long.
        """
        if min_interval < 0:
            raise ValueError("min_interval must not be negative")
        reserved: float | None = None
        while True:
            wait, reserved = self._reserve(key, min_interval, reserved, max_wait)
            if wait is None:
                return True
            if reserved is None:
                return False
            await self._sleep(wait)

    def _reserve(
        self, key: str, min_interval: float, reserved: float | None, max_wait: float | None = None
    ) -> tuple[float | None, float | None]:
        """Seconds to sleep before checking again (None: go now) and the slot time held (None:
        the slot would start more than `max_wait` from now, and none was taken).

        A pause that starts after a caller reserved its slot still applies to it: on waking
        the caller finds the key paused and takes a new slot after the pause.
        """
        with self._lock:
            now = self._clock()
            paused_until = self._paused_until.get(key, now)
            if reserved is not None and now >= reserved and now >= paused_until:
                return None, reserved
            if reserved is None or paused_until > now:
                reserved = max(now, self._next_free.get(key, now), paused_until)
                if max_wait is not None and reserved - now > max_wait:
                    return 0.0, None
                self._next_free[key] = reserved + min_interval
            wait = reserved - now
            if wait <= 0:
                return None, reserved
            return wait, reserved

    def later_turn(self, key: str, min_interval: float) -> float:
        """Seconds from now until a turn for a caller that hands its send back to the ledger
        instead of waiting (`wait_turn` with `max_wait` said no).

        Each such caller is given the next of a second schedule, spaced `min_interval` apart
        and starting after every slot already taken: a backlog of 30,000 Slack posts comes
        back spread over the hours the channel needs, about one post per turn, instead of all
        at once every few seconds (each time costing a ledger write per post to hand back
        again). No slot is taken: the caller still waits its turn when it comes back.
        """
        with self._lock:
            now = self._clock()
            start = max(
                now,
                self._next_free.get(key, now),
                self._paused_until.get(key, now),
                self._later.get(key, now),
            )
            self._later[key] = start + min_interval
            return start - now

    def pause(self, key: str, seconds: float) -> None:
        """Nobody sends on `key` for `seconds` from now; honoured exactly, never shortened or capped.

        A shorter pause never cuts an existing longer one: both answers must be respected.
        """
        if seconds <= 0:
            return
        with self._lock:
            until = self._clock() + seconds
            if until > self._paused_until.get(key, float("-inf")):
                self._paused_until[key] = until
        log.info("pacing key paused", extra={"pacing_key": key, "pause_seconds": seconds})

    def paused_for(self, key: str) -> float:
        """Seconds until `key` may be used again because of a pause (0 when not paused)."""
        with self._lock:
            until = self._paused_until.get(key)
            return 0.0 if until is None else max(0.0, until - self._clock())

    async def acquire(self, key: str, limit: int, window: float, max_wait: float | None = None) -> bool:
        """Wait until one more send on `key` fits a rolling budget of `limit` sends per `window`
        seconds and `key` is not paused; the send is counted when this returns True.

        `limit` and `window` are the caller's defaults (e.g. a vendor's documented minimum);
        once `observe` has learned the target's own numbers for `key`, those are used instead.
        Returns False, without counting a send, when the wait would exceed `max_wait`: a caller
        can then hand its work back rather than hold a task asleep for an hour.
        """
        if limit < 1 or window <= 0:
            raise ValueError("a budget needs limit >= 1 and window > 0")
        while True:
            wait = self._take(key, limit, window)
            if wait is None:
                return True
            if max_wait is not None and wait > max_wait:
                return False
            await self._sleep(wait)

    def _take(self, key: str, limit: int, window: float) -> float | None:
        """None when a send was counted now, else seconds until one might fit."""
        with self._lock:
            now = self._clock()
            paused = self._paused_until.get(key, now) - now
            if paused > 0:
                return paused
            budget = self._windows.setdefault(key, _Window(limit, window))
            budget.expire(now)
            if len(budget.sends) < budget.limit:
                budget.sends.append(now)
                return None
            # The send that must leave the window before one more fits.
            return budget.sends[len(budget.sends) - budget.limit] + budget.seconds - now

    def observe(
        self, key: str, remaining: int, limit: int | None = None, window: float | None = None
    ) -> None:
        """The target says `remaining` sends are left in its current window for `key` (and, when
        given, the window's size): sends this process cannot see (other processes, other apps on
        the same account) then count against the budget too.

        They are recorded as sends made now, which frees their slots no earlier than the target
        would: never optimistic. A `remaining` above what is known never gives slots back.
        """
        with self._lock:
            now = self._clock()
            budget = self._windows.get(key)
            if budget is None:
                if limit is None or window is None:
                    return
                budget = self._windows[key] = _Window(limit, window)
            if limit is not None and limit >= 1:
                budget.limit = limit
            if window is not None and window > 0:
                budget.seconds = window
            budget.expire(now)
            unseen = budget.limit - max(0, remaining) - len(budget.sends)
            budget.sends.extend([now] * max(0, unseen))

    def budget_left(self, key: str) -> int | None:
        """Sends that fit `key`'s rolling budget right now (None when it has none yet)."""
        with self._lock:
            budget = self._windows.get(key)
            if budget is None:
                return None
            budget.expire(self._clock())
            return max(0, budget.limit - len(budget.sends))


PACER = Pacer()
"""The one pacer of the process: every task, flow run and thread shares its budgets."""
