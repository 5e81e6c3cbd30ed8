"""Spool schema and connection setup (sqlite-utils for the DDL, WAL mode)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

import sqlite_utils

Durability = Literal["full", "normal"]

SPOOL_FILE = "spool.db"

# States of a stored request:
#   pending     waiting for the dispatcher
#   claimed     handed to a flow run (reclaimed if that run dies)
#   done        every routed destination delivered (or nothing routed)
#   partial     some destinations dead-lettered, the rest delivered
#   retrying    at least one destination waits for its next attempt
#   unnormalizable  the connector could not read it (dead letter, replayable)
#   skipped     test/ping or non-submission event: recorded, never routed
INBOX_STATES = ("pending", "claimed", "done", "partial", "retrying", "unnormalizable", "skipped")


def connect(path: Path, durability: Durability = "full") -> sqlite3.Connection:
    """A connection with the pragmas every spool user needs.

    synchronous=FULL makes each commit fsync the WAL: an accepted webhook survives a power
    cut, not just a process crash. The writer batches commits, so this costs little.
    """
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def ensure_schema(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(connect(path))
    db.enable_wal()
    inbox = db.table("inbox")
    inbox.create(
        {
            "id": str,
            "received_at": float,
            "source": str,
            "provider": str,
            "event_id": str,
            "kind": str,
            "note": str,
            "method": str,
            "url": str,
            "headers": str,
            "body": bytes,
            "state": str,
            "redeliveries": int,
            "claimed_at": float,
            "claimed_by": str,
            "error": str,
            "updated_at": float,
        },
        pk="id",
        not_null={"received_at", "source", "provider", "event_id", "kind", "state", "body"},
        defaults={"redeliveries": 0, "state": "pending"},
        if_not_exists=True,
    )
    # The dedupe guarantee: one row per (source, provider event id), enforced by SQLite
    # itself so concurrent redeliveries cannot both insert.
    inbox.create_index(["source", "event_id"], index_name="inbox_dedupe", unique=True, if_not_exists=True)
    db.execute(
        "CREATE INDEX IF NOT EXISTS inbox_by_state ON inbox(state, received_at)"
    )
    db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
    db.close()
