"""Pooled HTTP clients per event loop, shared by every task on that loop.

Deliveries use one aiohttp session per loop: measured here (loopback POSTs, 64 in flight),
aiohttp costs ~250 us of CPU per request, httpx over aiohttp ~770 us and httpx's own pool
~3 ms, and delivery CPU is what bounds the hub's throughput. Provider API fetches (few)
use httpx. A client per task would pay for a TLS context (~0.1 s of CPU to load the CA
bundle) and new connections on every chunk; sharing keeps connections to each destination
alive across chunks and flow runs. Clients belong to the loop that made them, hence the maps.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from functools import cache

import aiohttp
import httpx
from httpx_aiohttp import HttpxAiohttpClient

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)
_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)


IN_FLIGHT = 64
"""Connections per loop and client. Deliveries beyond that queue inside the pool."""


@cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def shared_client() -> httpx.AsyncClient:
    """The loop's httpx client, for provider API calls (connectors' fetch and upkeep)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
        client = HttpxAiohttpClient(verify=_tls(), limits=limits, timeout=30.0, follow_redirects=False)
        _clients[loop] = client
    return client


def delivery_session() -> aiohttp.ClientSession:
    """The loop's aiohttp session for deliveries (`flows.destinations._http.request` takes it)."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        # No cookie jar: one destination's cookies must never ride along to another.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=IN_FLIGHT, ssl=_tls()), cookie_jar=aiohttp.DummyCookieJar()
        )
        _sessions[loop] = session
    return session


async def close_shared_client() -> None:
    loop = asyncio.get_running_loop()
    client = _clients.pop(loop, None)
    if client is not None:
        await client.aclose()
    session = _sessions.pop(loop, None)
    if session is not None:
        await session.close()
