"""Process-wide send pacing: at most one send per `min_interval` per key, and pauses.

A key names one account whose budget the target enforces (a Slack webhook, a receiver
endpoint), e.g. ``"slack-webhook:" + sha256(url)[:16]``. Keys end up in logs, so they must
never contain a secret or a URL with a token in it.

Delivery tasks run in different threads, each with its own asyncio event loop, and all of
them share `PACER`. asyncio locks and events belong to one loop, so slots are reserved under
a `threading.Lock` (held only for a few arithmetic operations, never across an `await`) and
each caller then sleeps in its own loop until its reserved time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("hookhub.pacing")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


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

    async def wait_turn(self, key: str, min_interval: float) -> None:
        """Return when the caller may send on `key`; the slot is taken when this returns."""
        if min_interval < 0:
            raise ValueError("min_interval must not be negative")
        reserved: float | None = None
        while True:
            wait, reserved = self._reserve(key, min_interval, reserved)
            if wait is None:
                return
            await self._sleep(wait)

    def _reserve(self, key: str, min_interval: float, reserved: float | None) -> tuple[float | None, float]:
        """Seconds to sleep before checking again (None: go now) and the slot time held.

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
                self._next_free[key] = reserved + min_interval
            wait = reserved - now
            if wait <= 0:
                return None, reserved
            return wait, reserved

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


PACER = Pacer()
"""The one pacer of the process: every task, flow run and thread shares its budgets."""
