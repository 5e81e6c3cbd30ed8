"""Helpers shared by the destination tests: virtual time for the pacer, replay of recorded
answers, log capture and a loopback HTTP server.

One copy, so a destination's tests and the pacer's own tests run on the same notion of time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from flows.pacing import Pacer


class VirtualTime:
    """A clock plus an async sleep that advances it; `on_sleep` runs when a sleep starts."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep:
            self.on_sleep(seconds)
        start = self.now
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would
        self.now = max(self.now, start + seconds)


def fake_pacer() -> tuple[Pacer, VirtualTime]:
    """A Pacer that never waits for real, and the virtual time it runs on."""
    vt = VirtualTime()
    return Pacer(clock=vt, sleep=vt.sleep), vt


def replay(path: Path) -> httpx.Response:
    """The recorded answer in `path` (`{status, headers, body}`; body text, JSON or null)."""
    recorded = json.loads(path.read_text(encoding="utf-8"))
    body = recorded["body"]
    if body is None:
        return httpx.Response(recorded["status"], headers=recorded["headers"])
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return httpx.Response(recorded["status"], headers=recorded["headers"], content=content)


@contextmanager
def captured_logs(*names: str) -> Iterator[list[logging.LogRecord]]:
    """Every record of the named loggers and of the pacer, at DEBUG; levels restored after."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(name) for name in (*names, "hookhub.pacing")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def dumped(records: list[logging.LogRecord]) -> str:
    """All the records' attributes as one text, to search for what must never be logged."""
    return " ".join(json.dumps(vars(r), default=str) for r in records)


@contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """A real HTTP server on 127.0.0.1 in a thread for the `with` block; yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
