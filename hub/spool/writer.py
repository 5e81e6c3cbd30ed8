"""Group-commit writer: the only path by which the receiver writes the spool.

Each request hands its row to one writer thread and awaits the commit. The thread takes
every row waiting at that moment and commits them in one transaction, so under load one
fsync covers many webhooks while an idle hub still commits each one at once. Nobody is
answered before their row is committed.

sqlite-utils builds the schema; the hot path uses a prepared INSERT on the raw connection
because `Table.insert` inspects columns on every call, which costs more than the insert.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hub.spool.schema import Durability, connect, ensure_schema

log = logging.getLogger("hookhub.spool")

MAX_GROUP = 512


class SpoolUnavailable(Exception):
    """The spool could not commit; the caller answers 503 so the provider retries."""


@dataclass(frozen=True)
class SpoolRecord:
    id: str
    received_at: float
    source: str
    provider: str
    event_id: str
    kind: str
    note: str | None
    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def initial_state(self) -> str:
        return "skipped" if self.kind in ("test", "ignored") else "pending"


@dataclass(frozen=True)
class StoreResult:
    id: str
    duplicate: bool


_INSERT = (
    "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, note, method, url,"
    " headers, body, state, redeliveries, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,0,?)"
    " ON CONFLICT(source, event_id) DO NOTHING RETURNING id"
)
_FIND = "SELECT id FROM inbox WHERE source = ? AND event_id = ?"
_COUNT_REDELIVERY = "UPDATE inbox SET redeliveries = redeliveries + 1 WHERE id = ?"

_Job = tuple[SpoolRecord | None, asyncio.Future, asyncio.AbstractEventLoop]


class SpoolWriter:
    def __init__(self, path: Path, durability: Durability = "full") -> None:
        self.path = path
        self.durability = durability
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        ensure_schema(self.path)
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                conn = connect(self.path, self.durability)
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop(conn)

        self._thread = threading.Thread(target=run, name="hookhub-spool-writer", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise SpoolUnavailable(f"cannot open spool {self.path}: {failure[0]}")

    def stop(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def store(self, record: SpoolRecord) -> StoreResult:
        if not self.alive:
            raise SpoolUnavailable("spool writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoreResult] = loop.create_future()
        self._jobs.put((record, future, loop))
        return await future

    async def probe(self) -> None:
        """Commit a no-op write: proves the spool is writable right now (for /readyz)."""
        if not self.alive:
            raise SpoolUnavailable("spool writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoreResult] = loop.create_future()
        self._jobs.put((None, future, loop))
        await future

    # -- writer thread ---------------------------------------------------------------

    def _loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                group = [first]
                stop = False
                while len(group) < MAX_GROUP:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    group.append(job)
                self._commit_group(conn, group)
                if stop:
                    return
        finally:
            conn.close()

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Job]) -> None:
        try:
            results = self._write(conn, group)
        except sqlite3.Error as exc:
            self._safe_rollback(conn)
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("spool commit failed", extra={"event": "spool_error", "error": self.last_error})
            if len(group) > 1:
                # One bad row must not fail its neighbours: retry each on its own.
                for job in group:
                    self._commit_group(conn, [job])
                return
            _resolve(group, [SpoolUnavailable(self.last_error)])
            return
        self.last_error = None
        _resolve(group, results)

    def _write(self, conn: sqlite3.Connection, group: list[_Job]) -> list[StoreResult | None]:
        results: list[StoreResult | None] = []
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        for record, _, _ in group:
            if record is None:
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('probe', ?)", (str(now),))
                results.append(None)
                continue
            row = conn.execute(
                _INSERT,
                (
                    record.id, record.received_at, record.source, record.provider, record.event_id,
                    record.kind, record.note, record.method, record.url,
                    json.dumps(record.headers, ensure_ascii=False), record.body,
                    record.initial_state, now,
                ),
            ).fetchone()
            if row is not None:
                results.append(StoreResult(id=row[0], duplicate=False))
                continue
            # The unique index refused it: a redelivery (possibly earlier in this same group).
            existing = conn.execute(_FIND, (record.source, record.event_id)).fetchone()
            conn.execute(_COUNT_REDELIVERY, (existing[0],))
            results.append(StoreResult(id=existing[0], duplicate=True))
        conn.execute("COMMIT")
        return results

    @staticmethod
    def _safe_rollback(conn: sqlite3.Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _resolve(group: list[_Job], results: list) -> None:
    """Hand results back to each request's event loop (one callback per loop per group)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, object]]] = {}
    if len(results) == 1 and len(group) > 1:
        results = results * len(group)
    for (_, future, loop), result in zip(group, results):
        by_loop.setdefault(loop, []).append((future, result))
    for loop, pairs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, pairs)
        except RuntimeError:
            pass  # that loop has closed: its requests are gone, nothing to answer


def _settle(pairs: list[tuple[asyncio.Future, object]]) -> None:
    for future, result in pairs:
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
