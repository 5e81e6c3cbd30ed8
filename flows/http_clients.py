"""One pooled httpx client per event loop, shared by every delivery task on that loop.

A client per task would pay for a TLS context (~0.1 s of CPU to load the CA bundle) and
new connections on every chunk; sharing keeps connections to each destination alive
across chunks and flow runs. Clients belong to the loop that made them, hence the map.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from functools import cache

import httpx
from httpx_aiohttp import HttpxAiohttpClient

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


IN_FLIGHT = 64
"""Connections per loop. Deliveries beyond that queue inside the transport."""


@cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def shared_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        # httpx's API for every destination, aiohttp's connection handling underneath: measured
        # here, httpcore's pool managed ~300-400 POST/s on loopback against ~1,000/s this way
        # (bench/e2e.py), and it is the hub's delivery ceiling. Timeouts are per request.
        limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
        client = HttpxAiohttpClient(verify=_tls(), limits=limits, timeout=30.0, follow_redirects=False)
        _clients[loop] = client
    return client


async def close_shared_client() -> None:
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()
