"""A real HTTP server on loopback that plays a destination: records requests, answers by script."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.harness import RunningServer, serve_app


@dataclass(frozen=True)
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    peer_port: int | None = None
    """The sender's local port: which process sent it (see tests/test_delivery_pool.py)."""
    status: int = 200
    """What this request was answered (for a `Mix` timeout: after the sender had given up)."""
    retry_after: float | None = None
    """The Retry-After given with the answer, in seconds."""

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


@dataclass(frozen=True)
class Mix:
    """Failures drawn at random for requests without a script; the rest are answered 200.

    Shares are of requests, drawn independently per request from a seeded generator, so a
    retried delivery can fail again, as with a real flaky receiver.
    """

    server_errors: float = 0.0
    """Share answered 500."""
    rate_limited: float = 0.0
    """Share answered 429 with `Retry-After: <retry_after>`."""
    retry_after: str = "1"
    timeouts: float = 0.0
    """Share answered only after `hold` seconds (set it past the sender's timeout), then 503."""
    hold: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.server_errors + self.rate_limited + self.timeouts > 1:
            raise ValueError("the shares of failures add up to more than every request")

    def draw(self, rng: random.Random) -> tuple[int, dict[str, str], float]:
        """(status, headers, seconds to wait before answering) for one request."""
        roll = rng.random()
        if roll < self.server_errors:
            return 500, {}, 0.0
        roll -= self.server_errors
        if roll < self.rate_limited:
            return 429, {"retry-after": self.retry_after}, 0.0
        roll -= self.rate_limited
        if roll < self.timeouts:
            return 503, {}, self.hold
        return 200, {}, 0.0


@dataclass
class FakeDestination:
    """POST /<anything>: answered by the next scripted (status, headers, body) for that path, else by
    `mix` when given, else 200. Every request is recorded with its arrival time and its answer."""

    requests: list[Received] = field(default_factory=list)
    scripts: dict[str, deque[tuple[int, dict[str, str], str]]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    default_body: str = "ok"
    server: RunningServer | None = None
    mix: Mix | None = None
    _rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _holds: dict[str, tuple[threading.Event, float]] = field(default_factory=dict)
    _waiting: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def script(self, path: str, *answers: tuple[int, dict[str, str], str]) -> None:
        self.scripts[path].extend(answers)

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def hold(self, path: str, seconds: float) -> None:
        """Requests to `path` from now on wait (at most `seconds`) until `release(path)` before answering."""
        with self._lock:
            self._holds[path] = (threading.Event(), seconds)

    def waiting(self, path: str) -> int:
        with self._lock:
            return self._waiting[path]

    def release(self, path: str) -> None:
        with self._lock:
            held = self._holds.pop(path, None)
        if held is not None:
            held[0].set()

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"{self.server.url}{path}"

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        with self._lock:
            held = self._holds.get(path)
            if held is not None:
                self._waiting[path] += 1
        if held is not None:
            await asyncio.to_thread(held[0].wait, held[1])
            with self._lock:
                self._waiting[path] -= 1
        delay = 0.0
        with self._lock:
            peer = request.client.port if request.client else None
            if self.scripts[path]:
                status, headers, text = self.scripts[path].popleft()
            elif self.mix is not None:
                status, headers, delay = self.mix.draw(self._rng)
                text = self.default_body if status == 200 else f"scripted {status}"
            else:
                status, headers, text = 200, {}, self.default_body
            retry_after = _seconds(headers.get("retry-after"))
            self.requests.append(
                Received(time.time(), path, dict(request.headers), body, peer, status, retry_after)
            )
        if delay:
            await asyncio.sleep(delay)
        return Response(text, status_code=status, headers=headers)

    def start(self) -> FakeDestination:
        if self.mix is not None:
            self._rng.seed(self.mix.seed)
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])
        self.server = serve_app(app)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def _seconds(retry_after: str | None) -> float | None:
    """A Retry-After in delay-seconds; None for none or an HTTP-date (scripts may send either)."""
    try:
        return None if retry_after is None else float(retry_after)
    except ValueError:
        return None


def by_webhook_id(requests: list[Received]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for r in requests:
        counts[r.headers.get("webhook-id", "")] += 1
    return dict(counts)


def json_body(r: Received) -> Any:
    import json

    return json.loads(r.body)
