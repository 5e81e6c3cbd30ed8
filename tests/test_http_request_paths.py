"""`_http.request` answers and fails the same through aiohttp (the pipeline) and httpx (tests, test-route).

Real loopback servers: each case runs once per client kind, so the fast path the hub delivers
with can never drift from the path the destination tests replay against.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import aiohttp
import httpx
import pytest

from flows.destinations import _http
from tests.destination_helpers import loopback_server

seen: list[dict[str, Any]] = []


class _Target(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # clients here time out and hang up on purpose
            super().handle()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
        if self.path.startswith("/big"):
            payload = b"x" * (_http.MAX_BODY_BYTES * 3)
            self._send(200, payload, {"Content-Type": "text/plain"})
        elif self.path.startswith("/redirect"):
            self._send(302, b"", {"Location": "/elsewhere"})
        elif self.path.startswith("/limited"):
            self._send(429, b'{"error":"slow down"}', {"Retry-After": "7", "X-Thing": "a"})
        elif self.path.startswith("/hang"):
            threading.Event().wait(5)
        elif self.path.startswith("/drop"):
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            self._send(201, b'{"ok":true}', {"Content-Type": "application/json"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = _answer  # the names http.server dispatches to


@asynccontextmanager
async def _httpx() -> AsyncIterator[Any]:
    async with httpx.AsyncClient() as client:
        yield client


@asynccontextmanager
async def _aiohttp() -> AsyncIterator[Any]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


CLIENTS: dict[str, Callable[[], Any]] = {"httpx": _httpx, "aiohttp": _aiohttp}


@pytest.fixture(params=sorted(CLIENTS))
def client_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def port() -> Any:
    with loopback_server(_Target) as bound:
        yield bound


async def _run(kind: str, call: Callable[[Any], Any]) -> Any:
    async with CLIENTS[kind]() as client:
        return await call(client)


@pytest.mark.anyio
async def test_post_sends_exactly_the_given_bytes_and_headers(client_kind: str, port: int) -> None:
    seen.clear()
    answer = await _run(
        client_kind,
        lambda c: _http.post(
            c,
            f"http://127.0.0.1:{port}/in",
            content=b'{"a":1}',
            headers={"Content-Type": "application/json", "X-Sig": "s"},
            timeout=5,
        ),
    )
    assert (answer.status, answer.body, answer.headers["content-type"]) == (
        201,
        b'{"ok":true}',
        "application/json",
    )
    assert seen[-1]["body"] == b'{"a":1}' and seen[-1]["headers"]["X-Sig"] == "s"


@pytest.mark.anyio
async def test_no_content_type_is_invented(client_kind: str, port: int) -> None:
    seen.clear()
    await _run(
        client_kind,
        lambda c: _http.post(c, f"http://127.0.0.1:{port}/in", content=b"raw", headers={}, timeout=5),
    )
    assert "Content-Type" not in seen[-1]["headers"]


@pytest.mark.anyio
async def test_params_and_methods(client_kind: str, port: int) -> None:
    seen.clear()
    await _run(
        client_kind,
        lambda c: _http.request(
            c, "GET", f"http://127.0.0.1:{port}/search", headers={}, params={"term": "a b@c.de"}, timeout=5
        ),
    )
    assert seen[-1]["method"] == "GET"
    assert seen[-1]["path"] in (
        "/search?term=a+b%40c.de",
        "/search?term=a%20b%40c.de",
        "/search?term=a+b@c.de",
    )


@pytest.mark.anyio
async def test_answers_are_capped(client_kind: str, port: int) -> None:
    answer = await _run(
        client_kind,
        lambda c: _http.post(c, f"http://127.0.0.1:{port}/big", content=b"", headers={}, timeout=5),
    )
    assert answer.status == 200 and len(answer.body) == _http.MAX_BODY_BYTES


@pytest.mark.anyio
async def test_redirects_are_not_followed(client_kind: str, port: int) -> None:
    answer = await _run(
        client_kind,
        lambda c: _http.post(c, f"http://127.0.0.1:{port}/redirect", content=b"", headers={}, timeout=5),
    )
    assert answer.status == 302 and answer.headers["location"] == "/elsewhere"


@pytest.mark.anyio
async def test_headers_read_case_insensitively(client_kind: str, port: int) -> None:
    answer = await _run(
        client_kind,
        lambda c: _http.post(c, f"http://127.0.0.1:{port}/limited", content=b"", headers={}, timeout=5),
    )
    assert (
        answer.status == 429 and answer.headers.get("retry-after") == "7" and answer.headers["x-thing"] == "a"
    )
    assert answer.text == '{"error":"slow down"}'


@pytest.mark.anyio
async def test_refused_connection_was_not_sent(client_kind: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(_http.TransportFailed) as failed:
        await _run(
            client_kind,
            lambda c: _http.post(c, f"http://127.0.0.1:{closed}/in", content=b"", headers={}, timeout=5),
        )
    assert failed.value.sent is False and "could not connect" in failed.value.reason


@pytest.mark.anyio
async def test_no_answer_in_time_may_have_been_sent(client_kind: str, port: int) -> None:
    with pytest.raises(_http.TransportFailed) as failed:
        await _run(
            client_kind,
            lambda c: _http.post(c, f"http://127.0.0.1:{port}/hang", content=b"", headers={}, timeout=0.5),
        )
    assert failed.value.sent is True and failed.value.reason == "no answer within 0.5 s"


@pytest.mark.anyio
async def test_broken_answer_is_a_transport_failure(client_kind: str, port: int) -> None:
    with pytest.raises(_http.TransportFailed) as failed:
        await _run(
            client_kind,
            lambda c: _http.post(c, f"http://127.0.0.1:{port}/drop", content=b"", headers={}, timeout=5),
        )
    assert failed.value.sent is True and failed.value.reason.startswith("connection failed (")
