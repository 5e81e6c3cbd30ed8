"""A real HTTP server on loopback that plays a destination: records requests, answers by script."""

from __future__ import annotations

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


@dataclass
class FakeDestination:
    """POST /<anything>: answered by the next scripted (status, headers, body) for that path, else 200."""

    requests: list[Received] = field(default_factory=list)
    scripts: dict[str, deque[tuple[int, dict[str, str], str]]] = field(default_factory=lambda: defaultdict(deque))
    default_body: str = "ok"
    server: RunningServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, path: str, *answers: tuple[int, dict[str, str], str]) -> None:
        self.scripts[path].extend(answers)

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"{self.server.url}{path}"

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        with self._lock:
            self.requests.append(Received(time.time(), path, dict(request.headers), body))
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
