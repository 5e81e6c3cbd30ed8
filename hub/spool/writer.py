"""Group-commit writer: the only path by which the receiver writes the spool.

Each request hands its row to one writer thread and awaits the commit. The rows of one
turn of the event loop go over together, and the thread takes every row waiting at that
moment and commits them in one transaction, so under load one fsync covers many webhooks
while an idle hub still commits each one at once. Nobody is answered before their row is
committed.

sqlite-utils builds the schema; the hot path uses a prepared INSERT on the raw connection
because `Table.insert` inspects columns on every call, which costs more than the insert.

The writer thread shares the GIL with the event loop, and every SQLite call gives it up
and must win it back from a busy loop (up to one switch interval each time). So the work
per group is one SQLite call, not a few per row: the rows are encoded on the event loop
(`store`) and the group is one multi-row INSERT, its own transaction in autocommit mode.
Only when the unique index refused a row does the writer go row by row, in a second
transaction, to tell the stored rows from the duplicates.

The same statement serves PostgreSQL (several receivers sharing one database): there the
INSERT is wrapped so that the group's commit also notifies `hookhub_work` when it stored new
work, and waiting workers wake at once instead of at their next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hub.cpu_priority import Priority
from hub.spool.inbox_rows import (
    NOTIFY_CHANNEL,
    Row,
    SpoolRecord,
    StoreResult,
    insert,
    is_busy,
    key,
    sort_out_in_transaction,
    when_unlocked,
)
from hub.spool.inbox_rows import row as encode_row
from hub.spool.intake import Detour
from hub.spool.schema import Durability
from hub.store import Connection, SqliteStore, Store, StoreError

__all__ = ["MAX_GROUP", "NOTIFY_CHANNEL", "SpoolRecord", "SpoolUnavailable", "SpoolWriter", "StoreResult"]

log = logging.getLogger("hookhub.spool")

MAX_GROUP = 512
"""Rows per INSERT: 14 parameters each, 7,168 in all, within SQLite's 32,766 and PostgreSQL's 65,535."""


class SpoolUnavailable(Exception):
    """The spool could not commit; the caller answers 503 so the provider retries."""


# A probe has neither record nor row. The future gets a record's StoreResult, or None for a probe
# (or the exception that stopped either): one queue carries both, so it is typed loosely here.
_Job = tuple[SpoolRecord | None, Row | None, asyncio.Future[Any], asyncio.AbstractEventLoop]


class SpoolWriter:
    def __init__(
        self,
        where: Path | Store,
        durability: Durability = "full",
        clock: Callable[[], float] = time.time,
        jobs: queue.SimpleQueue[list[_Job] | None] | None = None,
        before_write: Callable[[], None] | None = None,
        background: Priority = "idle",
    ) -> None:
        self.location: Store = SqliteStore(where) if isinstance(where, Path) else where
        """Where rows go; a Path is the SQLite spool file."""
        self.path = self.location.path
        """The SQLite spool file (None for PostgreSQL)."""
        self.durability = durability
        self.clock = clock
        """Stamps each commit (rows' updated_at, probes): the hub's clock, as the receiver's."""
        self._jobs: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue() if jobs is None else jobs
        """The hand-over to the writer thread; a test may pass its own to count the wake-ups."""
        self.before_write = before_write
        """Called in the writer thread as each group's write begins: what it raises is handled as
        an error of the write itself (a test's fault injection; None in the hub)."""
        self._batches: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        self._thread: threading.Thread | None = None
        self._running = False
        """True from a successful start until the writer thread exits: a plain flag, because the
        receiver checks it on every request and Thread.is_alive() takes a lock."""
        self._accepting = threading.Lock()
        """Held while putting work on the queue and while closing it: nothing can be queued
        after the writer has stopped reading, where it would wait for an answer forever."""
        self.last_error: str | None = None
        self._detour: Detour | None = None
        """SQLite: where groups go while the delivery process holds the spool's write lock."""
        self.background = background
        """How the intake's mover yields the CPU to the writer and the event loop."""

    def start(self) -> None:
        self.location.prepare()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                conn = self.location.connect(self.durability)
                if conn.dialect == "sqlite" and self.path is not None:
                    # The writer never waits for the lock: a taken lock sends the group to the intake.
                    conn.execute("PRAGMA busy_timeout=0")
                    conn.execute("PRAGMA wal_autocheckpoint=0")  # the mover checkpoints: intake.py
                    self._detour = Detour(
                        self.path,
                        self.durability,
                        wake_writer=lambda: self._jobs.put([]),
                        background=self.background,
                    )
                    self._detour.open()
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()
                return
            self._running = True
            ready.set()
            try:
                self._loop(conn)
            finally:
                with self._accepting:
                    self._running = False
                self._fail_leftovers()

        self._thread = threading.Thread(target=run, name="hookhub-spool-writer", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise SpoolUnavailable(f"cannot open spool {self.location.key}: {failure[0]}")

    def stop(self) -> None:
        if self._thread is not None:
            with self._accepting:
                self._running = False  # new requests get 503 (retry) rather than queue behind the end
                self._jobs.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._running

    async def store(self, record: SpoolRecord) -> StoreResult:
        if not self._running:
            raise SpoolUnavailable("spool writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoreResult] = loop.create_future()
        batch = self._batches.get(loop)
        if batch is None:
            # The first row of this turn of the event loop: every request the loop handles in
            # this turn joins it, and the writer is woken once for them all (see _hand_over).
            batch = self._batches[loop] = []
            loop.call_soon(self._hand_over, loop)
        batch.append((record, encode_row(record), future, loop))
        return await future

    async def probe(self) -> None:
        """Commit a no-op write: proves the spool is writable right now (for /readyz)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoreResult] = loop.create_future()
        if not self._enqueue([(None, None, future, loop)]):
            raise SpoolUnavailable("spool writer is not running")
        await future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """Pass one loop turn's rows to the writer thread in one queue item.

        Each hand-off wakes the writer thread, which then takes the GIL from the busy event
        loop; one per loop turn instead of one per request made the groups at 128 connections
        grow from ~7 to ~40 rows and the writer's CPU per row fall from ~45-50 to ~30-35 us
        (bench/ingest.py's load, per-thread CPU from /proc).
        """
        batch = self._batches.pop(loop, None)
        if batch and not self._enqueue(batch):  # stopped since these were read: the provider retries
            _settle([(future, SpoolUnavailable("spool writer stopped")) for _, _, future, _ in batch])

    def _enqueue(self, batch: list[_Job]) -> bool:
        with self._accepting:
            if self._running:
                self._jobs.put(batch)
                return True
        return False

    def _fail_leftovers(self) -> None:
        """Answer 503 to whatever is still queued when the writer stops (only if it died)."""
        left: list[_Job] = []
        while True:
            try:
                batch = self._jobs.get_nowait()
            except queue.Empty:
                break
            left.extend(batch or [])
        if left:
            _resolve(left, [SpoolUnavailable("spool writer stopped")])

    # -- writer thread ---------------------------------------------------------------

    def _loop(self, conn: Connection) -> None:
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                if self._detour is not None:
                    self._detour.forget_moved()
                group = list(first)
                stop = False
                while len(group) < MAX_GROUP:
                    try:
                        batch = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if batch is None:
                        stop = True
                        break
                    group.extend(batch)
                # One statement holds at most MAX_GROUP rows (SQLite caps the parameters).
                for start in range(0, len(group), MAX_GROUP):
                    part = group[start : start + MAX_GROUP]
                    try:
                        self._commit_group(conn, part)
                    except Exception:  # a bug, not a database error: answer 503 and keep serving
                        log.exception("spool writer failed", extra={"event": "spool_error"})
                        self._safe_rollback(conn)
                        _resolve(part, [SpoolUnavailable("spool writer failed; retry later")])
                if stop:
                    return
        finally:
            if self._detour is not None:
                self._detour.close()
            conn.close()

    def _commit_group(self, conn: Connection, group: list[_Job]) -> None:
        try:
            results = self._write(conn, group)
        except StoreError as exc:
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

    def _write(self, conn: Connection, group: list[_Job]) -> list[StoreResult | None]:
        if self.before_write is not None:
            self.before_write()
        now = self.clock()
        if any(record is None for record, _, _, _ in group):
            self._probe(conn, now)
        rows = [(record, row) for record, row, _, _ in group if record is not None and row is not None]
        stored: dict[str, StoreResult] = {}
        detour = self._detour
        if rows and detour is not None and detour.rows:
            # Keys still in the intake (answered, not yet moved into the spool) are duplicates too.
            owners = detour.owners_in_intake([key(record) for record, _ in rows])
            for index, owner in owners.items():
                stored[rows[index][0].id] = StoreResult(id=owner, duplicate=True)
            detour.count_redeliveries(owners.values())
            rows = [pair for index, pair in enumerate(rows) if index not in owners]
        if rows:
            params: list[object] = []
            for _, row in rows:
                params.extend(row)
                params.append(now)
            # The connection is in autocommit mode, so this one statement is a whole transaction:
            # every row or none, committed (and fsynced) before execute() returns.
            try:
                inserted = insert(conn, len(rows), params)
            except sqlite3.OperationalError as exc:
                if detour is None or not is_busy(exc):
                    raise
                # The delivery process holds the spool's lock: commit to the intake, not wait.
                taken = detour.store(conn, [(r.id, key(r), [*row, 0, now]) for r, row in rows])
                stored.update({i: StoreResult(id=owner, duplicate=dup) for i, (owner, dup) in taken.items()})
                rows = []
                inserted = 0
            if rows and inserted == len(rows):
                stored.update({record.id: StoreResult(id=record.id, duplicate=False) for record, _ in rows})
            elif rows:
                refused = [record for record, _ in rows]
                stored.update(when_unlocked(conn, lambda: sort_out_in_transaction(conn, refused)))
        return [stored[record.id] if record is not None else None for record, _, _, _ in group]

    def _probe(self, conn: Connection, now: float) -> None:
        try:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('probe', ?)"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(now),),
            )
        except sqlite3.OperationalError as exc:
            if self._detour is None or not is_busy(exc):
                raise
            self._detour.probe(now)  # where webhooks go meanwhile: that is what must be writable

    @staticmethod
    def _safe_rollback(conn: Connection) -> None:
        with contextlib.suppress(*StoreError):
            conn.execute("ROLLBACK")


def _resolve(group: list[_Job], results: Sequence[StoreResult | BaseException | None]) -> None:
    """Hand results back to each request's event loop (one callback per loop per group)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object]]] = {}
    if len(results) == 1 and len(group) > 1:
        results = [results[0]] * len(group)
    for (_, _, future, loop), result in zip(group, results, strict=True):
        by_loop.setdefault(loop, []).append((future, result))
    for loop, pairs in by_loop.items():
        # RuntimeError: that loop has closed, its requests are gone and there is nothing to answer.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, pairs)


def _settle(pairs: list[tuple[asyncio.Future[Any], object]]) -> None:
    for future, result in pairs:
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
