"""`hub.sender`'s two Senders: AiohttpSender (every request the hub sends) against a real loopback
server, and FakeSender (tests, `hookhub test-route`) bounding and capping the same way.

What the destination and fetch tests take for granted of the production path is checked here:
exact bytes and headers, no invented Content-Type, params, body cap, no redirects followed,
case-insensitive headers, and which failures may have reached the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import aiohttp
import pytest

from hub.sender import MAX_BODY_BYTES, AiohttpSender, Answer, FakeSender, Request, TransportFailed
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
            payload = b"x" * (MAX_BODY_BYTES * 3)
            self._send(200, payload, {"Content-Type": "text/plain"})
        elif self.path.startswith("/redirect"):
            self._send(302, b"", {"Location": "/elsewhere"})
        elif self.path.startswith("/limited"):
            self._send(429, b'{"error":"slow down"}', {"Retry-After": "7", "X-Thing": "a"})
        elif self.path.startswith("/drip"):  # an answer that never ends, a byte at a time
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                threading.Event().wait(0.05)
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


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with loopback_server(_Target) as bound:
        yield bound


@asynccontextmanager
async def _sender() -> AsyncIterator[AiohttpSender]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield AiohttpSender(session)


async def _send(request: Request) -> Answer:
    async with _sender() as sender:
        return await sender.send(request)


def _post(port: int, path: str, timeout: float = 5, **fields: Any) -> Request:
    return Request("POST", f"http://127.0.0.1:{port}{path}", timeout=timeout, **{"content": b"", **fields})


@pytest.mark.anyio
async def test_post_sends_exactly_the_given_bytes_and_headers(port: int) -> None:
    seen.clear()
    headers = {"Content-Type": "application/json", "X-Sig": "s"}
    answer = await _send(_post(port, "/in", content=b'{"a":1}', headers=headers))
    assert (answer.status, answer.body, answer.headers["content-type"]) == (
        201,
        b'{"ok":true}',
        "application/json",
    )
    assert answer.json() == {"ok": True} and not answer.truncated
    assert seen[-1]["body"] == b'{"a":1}' and seen[-1]["headers"]["X-Sig"] == "s"


@pytest.mark.anyio
async def test_no_content_type_is_invented(port: int) -> None:
    seen.clear()
    await _send(_post(port, "/in", content=b"raw"))
    assert "Content-Type" not in seen[-1]["headers"]


@pytest.mark.anyio
async def test_params_and_methods(port: int) -> None:
    seen.clear()
    await _send(Request("GET", f"http://127.0.0.1:{port}/search", params={"term": "a b@c.de"}, timeout=5))
    assert seen[-1]["method"] == "GET"
    assert seen[-1]["path"] in (
        "/search?term=a+b%40c.de",
        "/search?term=a%20b%40c.de",
        "/search?term=a+b@c.de",
    )


@pytest.mark.anyio
async def test_answers_are_capped(port: int) -> None:
    answer = await _send(_post(port, "/big"))
    assert answer.status == 200 and len(answer.body) == MAX_BODY_BYTES and answer.truncated
    whole = await _send(_post(port, "/big", max_bytes=MAX_BODY_BYTES * 3))
    assert len(whole.body) == MAX_BODY_BYTES * 3 and not whole.truncated


@pytest.mark.anyio
async def test_redirects_are_not_followed(port: int) -> None:
    answer = await _send(_post(port, "/redirect"))
    assert answer.status == 302 and answer.headers["location"] == "/elsewhere"


@pytest.mark.anyio
async def test_headers_read_case_insensitively(port: int) -> None:
    answer = await _send(_post(port, "/limited"))
    assert (
        answer.status == 429 and answer.headers.get("retry-after") == "7" and answer.headers["x-thing"] == "a"
    )
    assert answer.text == '{"error":"slow down"}'


@pytest.mark.anyio
async def test_refused_connection_was_not_sent() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(TransportFailed) as failed:
        await _send(_post(closed, "/in"))
    assert failed.value.sent is False and "could not connect" in failed.value.reason


@pytest.mark.anyio
async def test_no_answer_in_time_may_have_been_sent(port: int) -> None:
    with pytest.raises(TransportFailed) as failed:
        await _send(_post(port, "/hang", timeout=0.5))
    assert failed.value.sent is True and failed.value.reason == "no answer within 0.5 s"


@pytest.mark.anyio
async def test_the_timeout_bounds_the_whole_exchange(port: int) -> None:
    """A target dripping its body a byte at a time never pauses long, yet cannot hold the task."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TransportFailed) as failed:
        await _send(_post(port, "/drip", timeout=0.5))
    assert failed.value.reason == "no answer within 0.5 s" and loop.time() - started < 3


@pytest.mark.anyio
async def test_broken_answer_is_a_transport_failure(port: int) -> None:
    with pytest.raises(TransportFailed) as failed:
        await _send(_post(port, "/drop"))
    assert failed.value.sent is True and failed.value.reason.startswith("connection failed (")


# --- FakeSender --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_fake_sender_records_requests_and_caps_answers_as_the_real_one_does() -> None:
    fake = FakeSender(lambda request: Answer(200, {"Retry-After": "3"}, b"x" * (request.max_bytes + 5)))
    request = Request("POST", "https://example.com/in", {"X-Sig": "s"}, b"{}", timeout=5)
    answer = await fake.send(request)
    assert fake.requests == [request]
    assert len(answer.body) == MAX_BODY_BYTES and answer.truncated
    assert answer.headers["retry-after"] == "3"


@pytest.mark.anyio
async def test_fake_sender_bounds_a_slow_handler_by_the_timeout() -> None:
    async def never(request: Request) -> Answer:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    with pytest.raises(TransportFailed) as failed:
        await FakeSender(never).send(Request("GET", "https://example.com/", timeout=0.05))
    assert failed.value.sent is True and failed.value.reason == "no answer within 0.05 s"


@pytest.mark.anyio
async def test_fake_sender_passes_on_a_handler_transport_failure() -> None:
    def refuse(request: Request) -> Answer:
        raise TransportFailed("could not connect (DNS, refused or TLS error)", sent=False)

    with pytest.raises(TransportFailed) as failed:
        await FakeSender(refuse).send(Request("GET", "https://example.com/", timeout=5))
    assert failed.value.sent is False
