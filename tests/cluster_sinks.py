"""Loopback destinations for the cluster tests and bench/scale.py: a webhook sink and a Slack-like API.

Both run uvicorn in a thread of the calling process (tests/harness.py `serve_app`) and record
every request with its arrival time, so a test can tell which copies reached the wire.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.harness import RunningServer, serve_app

Script = Callable[[str, int], "Answer"]
"""(webhook-id, how many copies of it came before this one) -> how to answer this copy."""


@dataclass(frozen=True)
class Answer:
    status: int = 200
    held: bool = False
    """Wait for `release()` (or the hold deadline) before answering."""


@dataclass(frozen=True)
class Arrival:
    at: float
    webhook_id: str
    status: int
    peer_port: int | None


@dataclass
class WebhookSink:
    """POST /hook: answers after `delay` seconds (the latency-bound destination), or by `script`."""

    delay: float = 0.0
    script: Script | None = None
    hold_seconds: float = 120.0
    arrivals: list[Arrival] = field(default_factory=list)
    server: RunningServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event)
    _held: int = 0

    @property
    def url(self) -> str:
        assert self.server is not None, "start() the sink first"
        return f"{self.server.url}/hook"

    def start(self) -> WebhookSink:
        self.server = serve_app(Starlette(routes=[Route("/hook", self._receive, methods=["POST"])]))
        return self

    def stop(self) -> None:
        self._release.set()
        if self.server is not None:
            self.server.stop()

    def held(self) -> int:
        """Requests waiting for `release()` now."""
        with self._lock:
            return self._held

    def release(self) -> None:
        self._release.set()

    def copies(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for arrival in self.arrivals:
                counts[arrival.webhook_id] = counts.get(arrival.webhook_id, 0) + 1
        return counts

    def answered(self, status: int = 200) -> set[str]:
        with self._lock:
            return {a.webhook_id for a in self.arrivals if a.status == status}

    async def _receive(self, request: Request) -> Response:
        await request.body()
        webhook_id = request.headers.get("webhook-id", "")
        with self._lock:
            before = sum(1 for a in self.arrivals if a.webhook_id == webhook_id)
            answer = self.script(webhook_id, before) if self.script else Answer()
            peer = request.client.port if request.client else None
            self.arrivals.append(Arrival(time.time(), webhook_id, answer.status, peer))
            if answer.held:
                self._held += 1
        if answer.held:
            await asyncio.to_thread(self._release.wait, self.hold_seconds)
            with self._lock:
                self._held -= 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return Response(status_code=answer.status)


@dataclass(frozen=True)
class Post:
    at: float
    channel: str
    status: int


@dataclass
class SlackSink:
    """Slack's Web API at /api (`base_url`): chat.postMessage answers 429 + `Retry-After` when the
    channel had a post less than `min_gap` seconds before (Slack allows about 1 msg/s per channel,
    docs/destinations/slack.md), else `ok: true` with the channel and a `ts`."""

    min_gap: float = 1.0
    posts: list[Post] = field(default_factory=list)
    server: RunningServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        assert self.server is not None, "start() the sink first"
        return f"{self.server.url}/api"

    def start(self) -> SlackSink:
        routes = [Route("/api/chat.postMessage", self._post, methods=["POST"])]
        self.server = serve_app(Starlette(routes=routes))
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def to(self, channel: str) -> list[Post]:
        with self._lock:
            return [p for p in self.posts if p.channel == channel]

    async def _post(self, request: Request) -> Response:
        channel = str(json.loads(await request.body()).get("channel", ""))
        now = time.time()
        with self._lock:
            earlier = [p.at for p in self.posts if p.channel == channel]
            limited = bool(earlier) and now - max(earlier) < self.min_gap
            self.posts.append(Post(now, channel, 429 if limited else 200))
            ts = f"{now:.6f}"
        if limited:
            return JSONResponse({"ok": False, "error": "ratelimited"}, 429, {"retry-after": "1"})
        return JSONResponse({"ok": True, "channel": channel, "ts": ts})


def gaps(posts: list[Post]) -> list[float]:
    """Seconds between consecutive posts, in arrival order."""
    times = sorted(p.at for p in posts)
    return [b - a for a, b in zip(times, times[1:], strict=False)]
