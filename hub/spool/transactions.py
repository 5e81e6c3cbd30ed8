"""Opening the spool for the ledger's work, and the short write transactions it is done in."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hub.spool.schema import connect, ensure_schema


def open_spool(path: Path) -> sqlite3.Connection:
    ensure_schema(path)
    return connect(path, durability="full")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
