"""One pair of Prefect API clients for the dispatcher's loop, shared by every flow and task run.

Left alone, Prefect's engine builds fresh API clients for each flow run, plus a sync one to
ask the server for its default result storage; each new httpx client loads the CA bundle
into a new SSL context. Under load that was the largest single cost of the dispatcher
(py-spy: ~25 % of its CPU in `ssl.create_default_context`). Prefect reuses the clients of
an enclosing `SyncClientContext` / `AsyncClientContext`, so the dispatcher opens those once
and every run it starts (asyncio tasks copy the context) finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

log = logging.getLogger("hookhub.prefect")

RETRY_SECONDS = 10.0
"""How long to wait before trying again to reach a Prefect API that was not reachable."""
PROBE_SECONDS = 3.0
"""How long a configured PREFECT_API_URL gets to answer /health before its clients are opened."""
REPEAT_LOG_SECONDS = 60.0
"""While Prefect stays unreachable, its warning is logged again at most this often."""


class PrefectUnreachable(Exception):
    """Prefect's API did not answer the probe in time (or refused the connection)."""


@dataclass
class LastingCondition:
    """Says when a condition that lasts (Prefect away) should be logged: once, then at most every
    `every` seconds while it lasts, counting what was held back meanwhile.

    Python's logging has no rate limit of its own, and the callers also log the recovery once.
    """

    every: float = REPEAT_LOG_SECONDS
    clock: Callable[[], float] = time.monotonic
    held_back: int = 0
    _next: float | None = None

    @property
    def lasting(self) -> bool:
        return self._next is not None

    def due(self) -> bool:
        """Whether this occurrence is to be logged (else it is counted in `held_back`)."""
        now = self.clock()
        if self._next is not None and now < self._next:
            self.held_back += 1
            return False
        self._next = now + self.every
        return True

    def logged(self) -> int:
        """How many were held back since the last line; resets the count (call after logging)."""
        held, self.held_back = self.held_back, 0
        return held

    def over(self) -> bool:
        """The condition ended; True if it had been logged (the caller then says it is over)."""
        was, self._next, self.held_back = self._next is not None, None, 0
        return was


async def probe(api_url: str, timeout: float = PROBE_SECONDS) -> None:
    """Raise PrefectUnreachable unless `api_url`/health answers within `timeout` seconds.

    Prefect's own clients would wait PREFECT_API_REQUEST_TIMEOUT (60 s) per try on a server that
    accepts and never answers, and its sync client does so in the dispatcher's event loop.
    """
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            answer = await client.get(f"{api_url.rstrip('/')}/health")
    except httpx.TimeoutException as exc:
        raise PrefectUnreachable(f"Prefect's API did not answer within {timeout:g} s") from exc
    except httpx.HTTPError as exc:
        raise PrefectUnreachable(f"Prefect's API could not be reached ({type(exc).__name__})") from exc
    if answer.status_code >= 500:
        raise PrefectUnreachable(f"Prefect's API answered HTTP {answer.status_code} to /health")


BUSY_RETRIES = (0.02, 0.05, 0.1, 0.2, 0.4)
"""Pauses before sending again a request the API answered 503 (see QuickRetryOnBusy)."""


class QuickRetryOnBusy(httpx.AsyncBaseTransport):
    """Sends again, within ~1 s, a request that Prefect's server answered 503.

    On its SQLite database (the ephemeral server and `prefect server start` by default) the
    server answers 503 when a write transaction loses to a concurrent one ("database is
    locked" on a snapshot conflict, which SQLite reports at once instead of waiting). That
    happens to a few flow-run creations per minute under load, and Prefect's client then
    backs off 2 s, 4 s, 8 s: it was the whole p95 of ack->delivered (bench/e2e.py). The
    conflict clears in milliseconds, so a few quick tries first; a 503 that persists still
    reaches Prefect's own backoff. Retrying is safe: the server rolled the transaction back.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for pause in BUSY_RETRIES:
            response = await self.inner.handle_async_request(request)
            if response.status_code != 503:
                return response
            await response.aclose()
            log.debug(
                "prefect api busy; sending again", extra={"event": "prefect_busy", "path": request.url.path}
            )
            await asyncio.sleep(pause * (0.5 + random.random()))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _retry_quickly_on_busy(client: object) -> None:
    # Prefect builds its httpx client itself and reuses a context's client only when it was
    # made with no httpx settings, so the transport is wrapped in place (versions pinned in
    # pyproject.toml; should the attributes move, the client keeps Prefect's own backoff).
    http = getattr(client, "_client", None)
    transport = getattr(http, "_transport", None)
    if (
        http is not None
        and isinstance(transport, httpx.AsyncBaseTransport)
        and not isinstance(transport, QuickRetryOnBusy)
    ):
        http._transport = QuickRetryOnBusy(transport)
    else:
        log.debug("prefect client transport not wrapped", extra={"event": "prefect_transport_unwrapped"})


class SharedPrefectClients:
    """Opens the shared clients on first use (that also starts the ephemeral server), keeps them."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self.ready = False
        self.error: str | None = None
        """Why the API could not be reached at the last try (None once ready)."""
        self._next_try = 0.0
        self.unreachable = LastingCondition()

    async def ensure(self) -> bool:
        """Open the clients if not yet open; False while the API cannot be reached.

        Must be awaited in the coroutine whose context the runs are created from, because the
        clients are handed down through context variables. Blocks the calling loop while an
        ephemeral server starts (~7 s); the dispatcher has nothing to run before that anyway.
        """
        if self.ready or time.monotonic() < self._next_try:
            return self.ready
        from prefect.context import AsyncClientContext, SyncClientContext
        from prefect.settings import PREFECT_API_URL

        from flows.prefect_server import install

        # Only for the ephemeral server's own process, which reads it from the environment when
        # it starts (just below); this process configured its logging at import, so uvicorn's
        # and the hub's loggers keep their levels. The ledger records every outcome.
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
        install()
        started = time.perf_counter()
        opened = contextlib.AsyncExitStack()
        try:
            configured = PREFECT_API_URL.value()
            if configured:  # a server of its own: it may be away (the ephemeral one starts below)
                await probe(configured)
            opened.enter_context(SyncClientContext())
            shared = await opened.enter_async_context(AsyncClientContext())
            _retry_quickly_on_busy(shared.client)
        except Exception as exc:  # noqa: BLE001 - runs create their own clients and report
            await opened.aclose()
            self._next_try = time.monotonic() + RETRY_SECONDS
            self.error = f"{type(exc).__name__}: {exc}"
            if self.unreachable.due():
                log.warning(
                    "prefect not reachable; webhooks are kept and delivered once it answers",
                    extra={
                        "event": "prefect_unreachable",
                        "error": self.error,
                        "retry_seconds": RETRY_SECONDS,
                        "held_back": self.unreachable.logged(),
                    },
                )
            return False
        self._stack.push_async_exit(opened)
        self.ready = True
        self.error = None
        self.unreachable.over()
        log.info(
            "prefect ready",
            extra={"event": "prefect_ready", "seconds": round(time.perf_counter() - started, 1)},
        )
        return True

    async def aclose(self) -> None:
        self.ready = False
        await self._stack.aclose()


_LEVELS_BEFORE_QUIET: dict[str, int] = {}


def quiet_prefect() -> None:
    """From a stop on, Prefect's loggers report only CRITICAL: what they say then is the stop itself
    (cancelled runs' "Crash detected!", workers flushing to a server about to go). hookhub's own
    loggers, which say what the stop did, keep their levels."""
    names = [name for name in logging.root.manager.loggerDict if name.startswith("prefect.")]
    for name in ["prefect", *names]:
        logger = logging.getLogger(name)
        _LEVELS_BEFORE_QUIET.setdefault(name, logger.level)
        logger.setLevel(logging.CRITICAL)


def unquiet_prefect() -> None:
    """Prefect's loggers back at their levels, for a dispatcher started again in the same process."""
    while _LEVELS_BEFORE_QUIET:
        name, level = _LEVELS_BEFORE_QUIET.popitem()
        logging.getLogger(name).setLevel(level)


def unpersisted_results() -> Path:
    """Result storage for flows that persist nothing (`persist_result=False`).

    Naming one saves every flow run a blocking call asking the server for its default storage;
    a path is the one kind Prefect takes without a block saved on the server.
    """
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path)
