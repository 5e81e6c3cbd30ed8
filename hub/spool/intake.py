"""SQLite: where the receiver commits a group while the spool's write lock is taken.

On SQLite one write lock covers the whole spool file, and the delivery process takes it for its
own transactions (routing a batch, recording a chunk's outcomes). bench/peak.py timed those
while a 30,000-submission backlog drained: up to ~100 ms each, longer with the delivery process
at its lower CPU priority. Every webhook whose group waited behind one waited as long, and at
1,000 requests/s a single 100 ms wait is a hundred late answers: the receiver's p99.

So the writer never waits for that lock. It tries the spool (busy_timeout 0); if the lock is
taken, it commits the group to `intake.db` beside it (the same columns, fsynced the same way),
a file only this process writes, and answers. A mover thread copies intake rows into the spool
as soon as it can take the lock (one short INSERT per group of rows, in order, ids kept), and the
writer thread deletes them from the intake afterwards. Rows are therefore in the spool a few ms
later than they were answered, but never lost: rows left in the intake by a crash are moved at
the next start.

Dedupe stays whole: a record is a duplicate if its key is in the spool (read, which needs no
lock) or in the intake (its own unique indexes). Only the writer thread deletes intake rows,
between groups, so a key cannot fall between the two looks. In a race with `hookhub reconcile`
storing the same response meanwhile, the mover's INSERT skips the intake row: the response is
stored and delivered once, under the reconciled row's id.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hub.cpu_priority import Priority, background_thread
from hub.spool.files import ensure_private_file
from hub.spool.inbox_rows import when_unlocked
from hub.spool.schema import Durability, connect
from hub.spool.wal_upkeep import checkpoint
from hub.store import Connection

log = logging.getLogger("hookhub.spool")

INTAKE_FILE = "intake.db"
MOVE_ROWS = 512
CHECKPOINT_SECONDS = 1.0
"""How often the mover copies the WALs' pages into the spool and the intake: a PASSIVE
checkpoint, which never blocks a writer, then for the spool a RESTART one if its WAL is long
(hub/spool/wal_upkeep.py). The writer thread never checkpoints: SQLite's automatic checkpoint
runs in the commit that crosses 1,000 pages, and with the delivery process writing the spool
that commit can be a webhook's."""
COLUMNS = (
    "id, received_at, source, provider, event_id, response_key, kind, note, method, url,"
    " headers, body, state, redeliveries, updated_at"
)
# AUTOINCREMENT: a seq is never used twice, even once every row was deleted, so "moved up to
# seq N" stays true of the rows that come later (plain rowids restart after an emptied table).
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS intake (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL,"
    " received_at REAL, source TEXT, provider TEXT, event_id TEXT, response_key TEXT, kind TEXT,"
    " note TEXT, method TEXT, url TEXT, headers TEXT, body BLOB, state TEXT, redeliveries INTEGER,"
    " updated_at REAL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS intake_event ON intake(source, event_id)",
    "CREATE TABLE IF NOT EXISTS probe (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE UNIQUE INDEX IF NOT EXISTS intake_response ON intake(source, response_key)"
    " WHERE response_key IS NOT NULL",
)
_FIND = "SELECT id FROM {} WHERE source = ? AND event_id = ?"
_FIND_RESPONSE = "SELECT id FROM {} WHERE source = ? AND response_key = ?"


def intake_path(spool: Path) -> Path:
    return spool.with_name(INTAKE_FILE)


def intake_beside(spool: Connection | sqlite3.Connection) -> Path | None:
    """The intake file beside the SQLite spool `spool` is open on; None if there is none (or
    the spool is in memory)."""
    main = spool.execute("PRAGMA database_list").fetchone()[2]
    path = intake_path(Path(main)) if main else None
    return path if path is not None and path.exists() else None


def open_intake(spool: Path, durability: Durability) -> Connection:
    path = intake_path(spool)
    ensure_private_file(path)  # it holds raw submissions, as the spool does
    conn = connect(path, durability)
    conn.execute("PRAGMA wal_autocheckpoint=0")  # the mover checkpoints (CHECKPOINT_SECONDS)
    # Moved rows are deleted here: zero their bytes, as `hookhub erase` expects (its TRUNCATE
    # checkpoint then removes the older frames from intake.db-wal).
    conn.execute("PRAGMA secure_delete=ON")
    for statement in _SCHEMA:
        conn.execute(statement)
    return conn


@dataclass
class Detour:
    """The intake of one SpoolWriter: its rows, and the mover that empties it into the spool."""

    spool: Path
    durability: Durability
    wake_writer: Callable[[], None]
    """Called (from the mover) when moved rows may be deleted: the writer thread does that."""
    background: Priority = "idle"
    """How the mover yields the CPU: moving and checkpointing can wait, answers cannot."""
    rows: int = 0
    """Rows in the intake, moved or not (the writer thread's count: it alone inserts and deletes)."""
    moved_upto: int = 0
    """The highest intake seq copied into the spool (set by the mover)."""
    forgotten_upto: int = 0
    redeliveries: Counter[str] = field(default_factory=Counter)
    """Duplicates answered from the intake path, per owner id: the mover adds them to the spool's
    counter (a count the mover cannot match to a row is dropped: it is only a counter)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    conn: Connection | None = None
    """The writer thread's connection to the intake."""

    # -- writer thread -------------------------------------------------------------------------

    def open(self) -> None:
        """In the writer thread, before its first group: the intake, and a mover for what a
        crash left in it."""
        self.conn = open_intake(self.spool, self.durability)
        self.rows = int(self.conn.execute("SELECT count(*) FROM intake").fetchone()[0])
        self._thread = threading.Thread(target=self._move_loop, name="hookhub-spool-mover", daemon=True)
        self._thread.start()
        if self.rows:
            log.info(
                "moving rows a previous run left in the intake",
                extra={"event": "intake_leftovers", "rows": self.rows},
            )
            self._wake.set()

    def owners_in_intake(self, keys: Sequence[tuple[str, str, str | None]]) -> dict[int, str]:
        """Which of `keys` (source, event id, response key) are in the intake: index -> owner id."""
        if not self.rows or self.conn is None:
            return {}
        return _owners(self.conn, "intake", keys)

    def store(
        self, spool: Connection, records: list[tuple[str, tuple[str, str, str | None], list[object]]]
    ) -> dict[str, tuple[str, bool]]:
        """Commit (id, key, INSERT parameters) rows to the intake; id -> (owner id, duplicate)."""
        assert self.conn is not None
        keys = [key for _, key, _ in records]
        # Reads, which need no lock; `when_unlocked` covers the moments a WAL reader can be told
        # BUSY too (another connection resetting the WAL), as this connection waits for nothing.
        stored = when_unlocked(spool, lambda: _owners(spool, "inbox", keys))
        results: dict[str, tuple[str, bool]] = {}
        fresh: list[tuple[str, tuple[str, str, str | None], list[object]]] = []
        for index, (record_id, key, params) in enumerate(records):
            if index in stored:
                results[record_id] = (stored[index], True)
            else:
                fresh.append((record_id, key, params))
        if fresh:
            placeholders = ",".join(["(" + ",".join(["?"] * len(fresh[0][2])) + ")"] * len(fresh))
            params = [value for _, _, row in fresh for value in row]
            inserted = self.conn.execute(
                f"INSERT INTO intake ({COLUMNS}) VALUES {placeholders} ON CONFLICT DO NOTHING", params
            ).rowcount
            self.rows += inserted
            refused = {} if inserted == len(fresh) else _owners(self.conn, "intake", [k for _, k, _ in fresh])
            for index, (record_id, _, _) in enumerate(fresh):
                owner = refused.get(index, record_id)
                results[record_id] = (owner, owner != record_id)
            self._wake.set()
        with self._lock:
            self.redeliveries.update(owner for owner, duplicate in results.values() if duplicate)
        return results

    def probe(self, now: float) -> None:
        """A committed no-op write to the intake: what /readyz's probe proves while the spool is locked."""
        assert self.conn is not None
        self.conn.execute(
            "INSERT INTO probe(key, value) VALUES ('probe', ?)"
            " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (str(now),),
        )

    def count_redeliveries(self, owners: Iterable[str]) -> None:
        with self._lock:
            self.redeliveries.update(owners)
        self._wake.set()

    def forget_moved(self) -> None:
        """Delete the rows the mover has copied (writer thread: between groups, see the module doc)."""
        upto = self.moved_upto
        if self.conn is None or upto <= self.forgotten_upto:
            return
        self.rows -= self.conn.execute("DELETE FROM intake WHERE seq <= ?", (upto,)).rowcount
        self.forgotten_upto = upto

    def close(self) -> None:
        """At the writer's stop: move what is left (it may be waiting for the lock), then close."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.forget_moved()
        if self.conn is not None:
            self.conn.close()

    # -- mover thread --------------------------------------------------------------------------

    def _move_loop(self) -> None:
        background_thread(self.background)
        spool = connect(self.spool, self.durability)  # SQLite's busy_timeout: it may wait its turn
        spool.execute("ATTACH DATABASE ? AS intake", (str(intake_path(self.spool)),))
        next_checkpoint = 0.0
        try:
            while True:
                self._wake.wait(timeout=CHECKPOINT_SECONDS)
                self._wake.clear()
                try:
                    while self._move_some(spool):
                        pass
                    if time.monotonic() >= next_checkpoint:
                        # The writer's connection does not checkpoint (see SpoolWriter.start).
                        checkpoint(spool, "main")
                        # PASSIVE only: a RESTART holds the intake's write lock while it runs,
                        # and the receiver's groups must never wait for that one.
                        spool.execute("PRAGMA intake.wal_checkpoint(PASSIVE)")
                        next_checkpoint = time.monotonic() + CHECKPOINT_SECONDS
                except sqlite3.Error as error:  # the rows stay in the intake; tried again shortly
                    log.warning(
                        "could not move intake rows into the spool",
                        extra={"event": "intake_move_failed", "error": str(error)},
                    )
                    self._stop.wait(1.0)
                if self._stop.is_set():
                    return
        finally:
            spool.close()

    def _move_some(self, spool: Connection) -> bool:
        """Copy the next rows (and the redeliveries counted meanwhile) into the spool; whether
        more may be waiting. The rows go from file to file inside SQLite (`spool` has the intake
        attached): their bodies never become Python objects in the receiver's process."""
        upto = spool.execute(
            "SELECT max(seq) FROM (SELECT seq FROM intake.intake WHERE seq > ? ORDER BY seq LIMIT ?)",
            (self.moved_upto, MOVE_ROWS),
        ).fetchone()[0]
        with self._lock:
            counts, self.redeliveries = self.redeliveries, Counter()
        if upto is None and not counts:
            return False
        # BEGIN, not transaction()'s IMMEDIATE: that would take the intake's write lock too (it
        # is attached), and the writer thread would wait for it; this only reads the intake.
        spool.execute("BEGIN")
        try:
            if upto is not None:
                spool.execute(
                    f"INSERT INTO main.inbox ({COLUMNS}) SELECT {COLUMNS} FROM intake.intake"
                    " WHERE seq > ? AND seq <= ? ORDER BY seq ON CONFLICT DO NOTHING",
                    (self.moved_upto, upto),
                )
            spool.executemany(
                "UPDATE main.inbox SET redeliveries = redeliveries + ? WHERE id = ?",
                [(n, owner) for owner, n in counts.items()],
            )
            spool.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                spool.execute("ROLLBACK")
            with self._lock:
                self.redeliveries.update(counts)
            raise
        if upto is None:
            return False
        moved = int(upto) - self.moved_upto
        self.moved_upto = int(upto)
        self.wake_writer()
        return moved >= MOVE_ROWS


def _owners(conn: Connection, table: str, keys: Sequence[tuple[str, str, str | None]]) -> dict[int, str]:
    """index -> id of the row holding keys[index]'s event id, else its response key."""
    found: dict[int, str] = {}
    for index, (source, event_id, response_key) in enumerate(keys):
        row = conn.execute(_FIND.format(table), (source, event_id)).fetchone()
        if row is None and response_key is not None:
            row = conn.execute(_FIND_RESPONSE.format(table), (source, response_key)).fetchone()
        if row is not None:
            found[index] = str(row[0])
    return found
