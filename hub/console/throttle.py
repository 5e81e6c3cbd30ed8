"""Failed-login throttle: per client and for the whole hub, over a sliding window.

In memory and written here: the state is a deque of failure times per client, and a library
(`limits`, slowapi) would add a dependency for these lines. A restart forgets failures, which
only gives an attacker one more window per restart of the hub.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

PER_CLIENT = 5
GLOBAL = 50
WINDOW = 15 * 60.0
_MAX_CLIENTS = 10_000  # forget the oldest clients beyond this, so the map cannot grow without bound


@dataclass
class LoginThrottle:
    clock: Callable[[], float]
    per_client: int = PER_CLIENT
    overall: int = GLOBAL
    window: float = WINDOW
    _clients: dict[str, deque[float]] = field(default_factory=dict)
    _all: deque[float] = field(default_factory=deque)

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None if it may try now."""
        now = self.clock()
        waits = [
            self._wait(failures, limit, now)
            for failures, limit in ((self._clients.get(client), self.per_client), (self._all, self.overall))
        ]
        longest = max((w for w in waits if w is not None), default=None)
        return None if longest is None else max(1, math.ceil(longest))

    def failed(self, client: str) -> None:
        now = self.clock()
        if client not in self._clients and len(self._clients) >= _MAX_CLIENTS:
            self._clients.pop(next(iter(self._clients)))
        self._clients.setdefault(client, deque()).append(now)
        self._all.append(now)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def _wait(self, failures: deque[float] | None, limit: int, now: float) -> float | None:
        if not failures:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < limit:
            return None
        return failures[-limit] + self.window - now
