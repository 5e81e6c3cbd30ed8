"""The spool's `meta` table: small named values (marks, last runs, counters) kept beside the ledger."""

from __future__ import annotations

from hub.store import Connection

UPSERT = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
"""Both engines' spelling of SQLite's INSERT OR REPLACE for one row of `meta`."""


def set_meta(conn: Connection, key: str, value: str) -> None:
    conn.execute(UPSERT, (key, value))


def get_meta(conn: Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])
