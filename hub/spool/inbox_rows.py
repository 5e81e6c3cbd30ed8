"""The inbox row a webhook becomes, and the one INSERT that stores a group of them.

SpoolRecord is what the receiver hands the writer; `row` encodes it on the event loop, `insert`
stores a group in one statement (its own transaction), and `sort_out_duplicates` tells, after the
unique indexes refused some rows, which record owns its key and which repeat it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import orjson

from connectors.base import storable_text
from hub.spool.transactions import transaction
from hub.store import Connection

NOTIFY_CHANNEL = "hookhub_work"
"""What a group commit on PostgreSQL notifies when it stored new pending work (workers LISTEN)."""


@dataclass(slots=True)
class SpoolRecord:
    # Not frozen: a frozen dataclass sets each field through object.__setattr__, ~2 us of the
    # request path for these eleven; nothing changes a record after the receiver builds it.
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
    response_key: str | None = None
    """The provider's response identity (connectors.base.response_key): a second dedupe key."""

    @property
    def initial_state(self) -> str:
        return "skipped" if self.kind in ("test", "ignored") else "pending"


@dataclass(frozen=True)
class StoreResult:
    id: str
    duplicate: bool


_INSERT_ROWS = (
    "INSERT INTO inbox (id, received_at, source, provider, event_id, response_key, kind, note, method, url,"
    " headers, body, state, redeliveries, updated_at) VALUES {} ON CONFLICT DO NOTHING"
)
"""Either unique index may refuse a row: (source, event_id), or (source, response_key) when the
response was stored already under another event (reconciled, or a provider's second event id)."""
_ROW = "(?,?,?,?,?,?,?,?,?,?,?,?,?,0,?)"
_NOTIFYING = (
    "WITH stored AS ({} RETURNING state) SELECT count(*),"
    f" CASE WHEN count(*) FILTER (WHERE state = 'pending') > 0 THEN pg_notify('{NOTIFY_CHANNEL}', '') END"
    " FROM stored"
)
"""PostgreSQL: the INSERT, and the notification in the same statement (so the same transaction),
answering how many rows it stored."""
_FIND = "SELECT id FROM inbox WHERE source = ? AND event_id = ?"
_FIND_RESPONSE = "SELECT id FROM inbox WHERE source = ? AND response_key = ?"
_COUNT_REDELIVERY = "UPDATE inbox SET redeliveries = redeliveries + 1 WHERE id = ?"


def insert_sql(rows: int) -> str:
    # One statement text per group size; sqlite3's statement cache (and psycopg's) keeps them prepared.
    return _INSERT_ROWS.format(",".join([_ROW] * rows))


BUSY_POLL_SECONDS = 0.0005
BUSY_GIVE_UP_SECONDS = 30.0
"""SQLite: while another connection (the delivery process) holds the write lock, the writer tries
again every BUSY_POLL_SECONDS, for up to BUSY_GIVE_UP_SECONDS (the busy_timeout it replaces)."""
SQLITE_BUSY = 5
T = TypeVar("T")


def is_busy(error: BaseException) -> bool:
    """Whether `error` is SQLite's "database is locked" (another connection holds the write lock)."""
    return isinstance(error, sqlite3.OperationalError) and error.sqlite_errorcode & 0xFF == SQLITE_BUSY


def when_unlocked(conn: Connection, write: Callable[[], T]) -> T:
    """Run `write`; on SQLite, again every 0.5 ms while the write lock is taken.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, then 100 ms
    between tries: a group that meets a delivery transaction of 30 ms waits ~50 ms, and every
    webhook in the group with it. Polling finely takes the lock within half a millisecond of
    its release, and leaves the coarse schedule to the delivery side: receiving goes first.
    """
    if conn.dialect != "sqlite":
        return write()
    deadline = time.monotonic() + BUSY_GIVE_UP_SECONDS
    while True:
        try:
            return write()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
        time.sleep(BUSY_POLL_SECONDS)


def insert(conn: Connection, rows: int, params: list[object]) -> int:
    """Run a group's INSERT as its own transaction; how many of its rows were new."""
    if conn.dialect == "sqlite":
        return conn.execute(insert_sql(rows), params).rowcount
    # PostgresConnection sends it with $n placeholders as it is (psycopg would parse a `%s`
    # statement this long again at each execute: 28-36 us of writer CPU per row, against 5-6 us).
    row = conn.execute(_NOTIFYING.format(insert_sql(rows)), params).fetchone()
    return int(row[0]) if row is not None else 0


Row = tuple[object, ...]
"""A record's INSERT parameters, without updated_at (the commit time, added per group)."""


def sort_out_in_transaction(conn: Connection, records: list[SpoolRecord]) -> dict[str, StoreResult]:
    with transaction(conn):
        return sort_out_duplicates(conn, records)


def sort_out_duplicates(conn: Connection, records: list[SpoolRecord]) -> dict[str, StoreResult]:
    """The unique index refused some rows: each record either owns its key's row or repeats it.

    The multi-row INSERT went in group order, so the first record with a new key owns the
    row; later ones in the group, and any whose key was stored earlier, are redeliveries.
    """
    results: dict[str, StoreResult] = {}
    for record in records:
        found = conn.execute(_FIND, (record.source, record.event_id)).fetchone()
        if found is None:  # refused for its response, stored under another event id
            found = conn.execute(_FIND_RESPONSE, (record.source, record.response_key)).fetchone()
        owner = found[0]
        if owner == record.id:
            results[record.id] = StoreResult(id=owner, duplicate=False)
        else:
            conn.execute(_COUNT_REDELIVERY, (owner,))
            results[record.id] = StoreResult(id=owner, duplicate=True)
    return results


def key(record: SpoolRecord) -> tuple[str, str, str | None]:
    return (record.source, record.event_id, record.response_key)


def encode_headers(headers: dict[str, str]) -> str:
    # On the request path: a tenth of json.dumps's cost. Stored as TEXT, as before.
    return orjson.dumps(headers).decode("utf-8")


def row(record: SpoolRecord) -> Row:
    return (
        record.id,
        record.received_at,
        record.source,
        record.provider,
        record.event_id,
        record.response_key,
        record.kind,
        None if record.note is None else storable_text(record.note),
        record.method,
        record.url,
        encode_headers(record.headers),
        record.body,
        record.initial_state,
    )
