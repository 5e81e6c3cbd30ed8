"""Pooled aiohttp sessions per event loop, shared by every task on that loop, behind the hub's Sender.

Everything the hub sends goes through `hub.sender.AiohttpSender`: measured here (loopback POSTs,
64 in flight), aiohttp costs ~250 us of CPU per request, httpx over aiohttp ~770 us and httpx's
own pool ~3 ms, and delivery CPU is what bounds the hub's throughput. A session per task would
pay for a TLS context (~0.1 s of CPU to load the CA bundle) and new connections on every chunk;
sharing keeps connections to each destination alive across chunks and flow runs. Sessions belong
to the loop that made them, hence the maps.

Provider API calls (connectors' fetch and watch upkeep) get a session of their own, on the same
TLS context: a slow destination can hold every delivery connection for up to its timeout (600 s
at most), and a fetch queued behind those would stall the submissions it is fetching for.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from functools import cache

import aiohttp

from hub.sender import AiohttpSender

IN_FLIGHT = 64
"""Delivery connections per loop. Deliveries beyond that queue inside the pool."""
API_IN_FLIGHT = 16
"""Provider API connections per loop: fetches are few (one or two per notification)."""

_pools: dict[str, weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]] = {
    "delivery": weakref.WeakKeyDictionary(),
    "api": weakref.WeakKeyDictionary(),
}


@cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def _session(pool: str, limit: int) -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _pools[pool].get(loop)
    if session is None or session.closed:
        # No cookie jar: one destination's cookies must never ride along to another.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, ssl=_tls()), cookie_jar=aiohttp.DummyCookieJar()
        )
        _pools[pool][loop] = session
    return session


def delivery_sender() -> AiohttpSender:
    """The loop's Sender for deliveries (`DeliveryContext.http`)."""
    return AiohttpSender(_session("delivery", IN_FLIGHT))


def api_sender() -> AiohttpSender:
    """The loop's Sender for provider API calls (connectors' `expand` and `maintain`)."""
    return AiohttpSender(_session("api", API_IN_FLIGHT))


async def close_shared_client() -> None:
    """Close this loop's sessions (the worker and the dispatcher call it on the way out)."""
    loop = asyncio.get_running_loop()
    for sessions in _pools.values():
        session = sessions.pop(loop, None)
        if session is not None:
            await session.close()
