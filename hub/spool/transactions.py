"""Opening the store for the ledger's work, and the short write transactions it is done in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hub.store import Connection, SqliteStore, Store


def open_spool(where: Path | Store) -> Connection:
    """A connection to the store, its schema created or upgraded first; a Path is a SQLite spool file."""
    store = SqliteStore(where) if isinstance(where, Path) else where
    store.prepare()
    return store.connect(durability="full")


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """A write transaction. SQLite's IMMEDIATE takes the one write lock at BEGIN, so a read
    inside it cannot go stale before the write; on PostgreSQL, statements that must not race
    another worker lock their rows themselves (FOR UPDATE SKIP LOCKED in hub/spool/claiming.py)."""
    conn.execute("BEGIN IMMEDIATE" if conn.dialect == "sqlite" else "BEGIN")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
