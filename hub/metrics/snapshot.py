"""One read of the spool's delivery state: counters, queues, dead letters, disabled destinations.

Every query is an index range or a small table (the counters, the disabled destinations);
with 100,000 deliveries in the spool a read takes a few milliseconds (README, Monitoring).
It runs in a worker thread, and `SnapshotCache` serves one read to every scrape and /readyz
of the next second, so neither a busy scraper nor a load balancer adds load on the spool.

`spool_bytes` is the SQLite file with its -wal and -shm; on PostgreSQL, the tables of the
schema that holds the ledger with their indexes and TOAST (pg_total_relation_size), the WAL
not included: the ledger's own size, not the whole database's, which may hold Prefect's too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hub.reconcile.state import SourceState, read_all
from hub.spool.retention import purged_totals
from hub.spool.stats import read_counters
from hub.store import Connection, SqliteStore, Store

OPEN_STATUSES = ("pending", "sending", "retrying", "dead")
COUNTED_STATES = ("pending", "claimed", "routed", "failed")
"""Submission states with a gauge: `done` and `skipped` only grow (a count of them is a full
index scan, ~25 ms at 100,000 rows, and says less than hookhub_webhooks_total)."""


@dataclass(frozen=True)
class OpenDeliveries:
    count: int
    next_attempt_at: float | None
    """The earliest next attempt among them (for dead ones: meaningless, unused)."""


@dataclass(frozen=True)
class Disabled:
    since: float
    reason: str


@dataclass(frozen=True)
class Snapshot:
    taken_at: float
    counters: dict[str, dict[str, float]]
    """destination -> counter name (hub.spool.stats) -> value."""
    open_deliveries: dict[tuple[str, str], OpenDeliveries]
    """(status, destination) -> deliveries in it, for the OPEN_STATUSES."""
    submissions: dict[str, int]
    """inbox state -> submissions in it."""
    oldest_pending_at: float | None
    """received_at of the oldest submission not yet normalized and routed (pending or claimed)."""
    disabled: dict[str, Disabled]
    spool_bytes: int
    read_seconds: float
    retention_purged: dict[str, float] = field(default_factory=dict)
    """Rows purged by `retention:` since the spool was made, by purge (raw_requests, submissions)."""
    retention_last_run: float | None = None
    reconcile: dict[str, SourceState] = field(default_factory=dict)
    """Per reconciled source: its counters, last run and webhook health (hub/reconcile/state.py)."""

    def oldest_pending_age(self) -> float:
        return 0.0 if self.oldest_pending_at is None else max(0.0, self.taken_at - self.oldest_pending_at)


def read_snapshot(conn: Connection, spool_path: Path | None, now: float) -> Snapshot:
    """`spool_path`: the SQLite file (None, or anything, on PostgreSQL: its size is asked of the server)."""
    started = time.perf_counter()
    # One read transaction: every number from the same state of the spool (on PostgreSQL that
    # takes REPEATABLE READ; its default gives each statement a snapshot of its own).
    conn.execute("BEGIN" if conn.dialect == "sqlite" else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        counters = read_counters(conn)
        marks = ",".join("?" * len(OPEN_STATUSES))
        # `!= 'delivered'` lets SQLite use the partial index deliveries_open (hub/spool/stats.py).
        open_deliveries = {
            (status, destination): OpenDeliveries(count, next_at)
            for status, destination, count, next_at in conn.execute(
                "SELECT status, destination, count(*), min(next_attempt_at) FROM deliveries"
                f" WHERE status != 'delivered' AND status IN ({marks}) GROUP BY status, destination",
                OPEN_STATUSES,
            )
        }
        submissions = dict(
            conn.execute(
                f"SELECT state, count(*) FROM inbox WHERE state IN ({','.join('?' * len(COUNTED_STATES))})"
                " GROUP BY state",
                COUNTED_STATES,
            ).fetchall()
        )
        oldest = conn.execute(
            "SELECT min(received_at) FROM inbox WHERE state IN ('pending', 'claimed')"
        ).fetchone()[0]
        retention_purged, retention_last_run = purged_totals(conn)
        reconcile = read_all(conn)
        disabled = {
            destination: Disabled(since or 0.0, reason or "")
            for destination, since, reason in conn.execute(
                "SELECT destination, since, reason FROM disabled_destinations"
            )
        }
        size = _spool_bytes(spool_path) if conn.dialect == "sqlite" else _ledger_bytes(conn)
    finally:
        conn.execute("COMMIT")
    return Snapshot(
        taken_at=now,
        counters=counters,
        open_deliveries=open_deliveries,
        submissions=submissions,
        oldest_pending_at=oldest,
        disabled=disabled,
        spool_bytes=size,
        read_seconds=time.perf_counter() - started,
        retention_purged=retention_purged,
        retention_last_run=retention_last_run,
        reconcile=reconcile,
    )


def _spool_bytes(path: Path | None) -> int:
    total = 0
    if path is None:
        return total
    for suffix in ("", "-wal", "-shm"):
        try:
            total += path.with_name(path.name + suffix).stat().st_size
        except FileNotFoundError:
            continue
    return total


def _ledger_bytes(conn: Connection) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c WHERE c.relkind = 'r'"
        " AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass('inbox'))"
    ).fetchone()
    return int(row[0])


@dataclass
class SnapshotCache:
    """The latest snapshot, read again when it is older than `max_age` seconds.

    `refresh` blocks on SQLite: call it off the event loop (`asyncio.to_thread`).
    """

    spool: Path | Store
    """The SQLite spool file, or the store (either engine)."""
    max_age: float = 1.0
    clock: Callable[[], float] = time.time
    latest: Snapshot | None = None
    _conn: Connection | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def refresh(self) -> Snapshot:
        with self._lock:  # concurrent scrapes share one read
            now = self.clock()
            if self.latest is not None and now - self.latest.taken_at < self.max_age:
                return self.latest
            store = SqliteStore(self.spool) if isinstance(self.spool, Path) else self.spool
            if self._conn is None:
                self._conn = store.connect(durability="normal")
            self.latest = read_snapshot(self._conn, store.path, now)
            return self.latest

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
