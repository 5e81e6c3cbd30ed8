"""How an idle dispatcher learns of new work: LISTEN on PostgreSQL, a short poll on SQLite.

Receivers NOTIFY `hookhub_work` after each committed group (hub/spool/writer.py). A worker
listens on a connection of its own in a thread, so an idle cluster costs no query per worker
every few milliseconds; it still looks every FALLBACK_SECONDS, for retries that fell due and
for a notification lost while its connection was down. On SQLite the receiver and the
dispatcher share a process and a file, and a 50 ms look at the spool is cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Protocol

from hub.spool.writer import NOTIFY_CHANNEL
from hub.store.location import PostgresStore, Store

log = logging.getLogger("hookhub.dispatch")

POLL_SECONDS = 0.05
FALLBACK_SECONDS = 1.0
RECONNECT_SECONDS = 1.0


class Wake(Protocol):
    async def wait(self) -> None:
        """Return when there may be new work (or after the fallback interval)."""

    def poke(self) -> None:
        """Wake a waiting `wait` now (from any thread): a stop."""

    def close(self) -> None: ...


class Poll:
    def __init__(self, seconds: float = POLL_SECONDS) -> None:
        self.seconds = seconds

    async def wait(self) -> None:
        await asyncio.sleep(self.seconds)

    def poke(self) -> None:
        pass

    def close(self) -> None:
        pass


class Listen:
    """LISTEN on a psycopg connection of its own, in a daemon thread that sets an asyncio event."""

    def __init__(self, store: PostgresStore, loop: asyncio.AbstractEventLoop) -> None:
        self._url = store.url
        self._key = store.key
        self._loop = loop
        self._event = asyncio.Event()
        self._closed = threading.Event()
        self.notified = 0
        self._thread = threading.Thread(target=self._listen, name="hookhub-listen", daemon=True)
        self._thread.start()

    async def wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), FALLBACK_SECONDS)
        self._event.clear()

    def poke(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._event.set)

    def close(self) -> None:
        self._closed.set()

    def _listen(self) -> None:
        import psycopg

        from hub.store.postgres.connection import process_name

        name = process_name("hookhub-listen")
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, application_name=name) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not self._closed.is_set():
                        # Several notifications in one wait wake the dispatcher once.
                        if any(True for _ in conn.notifies(timeout=FALLBACK_SECONDS, stop_after=1)):
                            self.notified += 1
                            self.poke()
            except psycopg.Error as error:
                log.warning(
                    "cannot listen for new work; polling every second meanwhile",
                    extra={"event": "listen_failed", "store": self._key, "error": str(error).strip()},
                )
                self._closed.wait(RECONNECT_SECONDS)


def wake_for(store: Store, loop: asyncio.AbstractEventLoop) -> Wake:
    return Listen(store, loop) if isinstance(store, PostgresStore) else Poll()
