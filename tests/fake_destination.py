"""A real HTTP server on loopback that plays a destination: records requests, answers by script."""

from __future__ import annotations

import asyncio
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


@dataclass
class FakeDestination:
    """POST /<anything>: answered by the next scripted (status, headers, body) for that path, else 200."""

    requests: list[Received] = field(default_factory=list)
    scripts: dict[str, deque[tuple[int, dict[str, str], str]]] = field(default_factory=lambda: defaultdict(deque))
    default_body: str = "ok"
    server: RunningServer | None = None
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
        with self._lock:
            peer = request.client.port if request.client else None
            self.requests.append(Received(time.time(), path, dict(request.headers), body, peer))
            answer = self.scripts[path].popleft() if self.scripts[path] else (200, {}, self.default_body)
        status, headers, text = answer
        return Response(text, status_code=status, headers=headers)

    def start(self) -> FakeDestination:
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])
        self.server = serve_app(app)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def by_webhook_id(requests: list[Received]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for r in requests:
        counts[r.headers.get("webhook-id", "")] += 1
    return dict(counts)


def json_body(r: Received) -> Any:
    import json

    return json.loads(r.body)
