"""Senders for tests whose answers are written with httpx objects: respx routes and handlers of the
`httpx.MockTransport` kind (loopback servers get the real AiohttpSender).

The code under test sends through `hub.sender.FakeSender`, the seam production fills with
`AiohttpSender`; only the fake's answers are described with httpx, because respx's routes,
call records and side effects work on httpx requests. An httpx error a route raises becomes
the `TransportFailed` a real client's failure would: connect failures were not sent, the rest
may have been.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import respx.mocks
from multidict import CIMultiDict

from hub.sender import AiohttpSender, Answer, FakeSender, Request, TransportFailed

HttpxHandler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def to_httpx(request: Request) -> httpx.Request:
    # The timeout where an httpx client puts it, so routes can assert on it.
    return httpx.Request(
        request.method,
        request.url,
        params=request.params,
        headers=request.headers,
        content=request.content,
        extensions={"timeout": httpx.Timeout(request.timeout).as_dict()},
    )


def to_answer(response: httpx.Response) -> Answer:
    return Answer(response.status_code, CIMultiDict(response.headers.multi_items()), response.content)


def httpx_sender(handler: HttpxHandler) -> FakeSender:
    """A FakeSender answering with `handler`: it takes and returns httpx objects, or raises httpx errors."""

    async def answer(request: Request) -> Answer:
        timeout = request.timeout
        try:
            response = handler(to_httpx(request))
            if not isinstance(response, httpx.Response):
                response = await response
        except httpx.ConnectTimeout:
            raise TransportFailed(f"could not connect within {timeout:g} s", sent=False) from None
        except httpx.TimeoutException:
            raise TransportFailed(f"no answer within {timeout:g} s", sent=True) from None
        except httpx.ConnectError:
            raise TransportFailed("could not connect (DNS, refused or TLS error)", sent=False) from None
        except httpx.TransportError as exc:
            raise TransportFailed(f"connection failed ({type(exc).__name__})", sent=True) from None
        return to_answer(response)

    return FakeSender(answer)


def _routers_active() -> bool:
    return any(mocker.routers for mocker in respx.mocks.Mocker.registry.values())


async def _routed(request: httpx.Request) -> httpx.Response:
    for mocker in respx.mocks.Mocker.registry.values():
        if mocker.routers:
            response: httpx.Response = await mocker.async_handler(request)
            return response
    raise AssertionError("a request was sent with no respx router active (use `with respx.mock():`)")


class RespxSender:
    """Answers from the respx routers active when a request is sent (`with respx.mock():`); with
    none active it sends for real through AiohttpSender, the production path, for the tests that
    run a loopback server (as an httpx client sent for real outside respx)."""

    def __init__(self) -> None:
        self.fake = httpx_sender(_routed)
        self.requests = self.fake.requests

    async def send(self, request: Request) -> Answer:
        if _routers_active():
            return await self.fake.send(request)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            return await AiohttpSender(session).send(request)


def respx_sender() -> RespxSender:
    return RespxSender()
