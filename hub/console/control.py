"""Pause, resume and re-enable a destination (the tables the ledger reads: hub/spool/schema.py).

A paused destination's deliveries stay pending: the ledger's claims skip it (ledger.NOT_PAUSED),
so it makes no attempts and no dead letters until it is resumed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from hub.spool.ledger import transaction


def pause(conn: sqlite3.Connection, destination: str, now: float) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT OR IGNORE INTO paused_destinations (destination, since, reason) VALUES (?, ?, ?)",
            (destination, now, "paused from the console"),
        )


def resume(conn: sqlite3.Connection, destination: str, now: float) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM paused_destinations WHERE destination = ?", (destination,))


def enable(conn: sqlite3.Connection, destination: str, now: float) -> None:
    """After a 410: deliveries are attempted again (its dead letters stay dead until replayed)."""
    with transaction(conn):
        conn.execute("DELETE FROM disabled_destinations WHERE destination = ?", (destination,))


ACTIONS: dict[str, Callable[[sqlite3.Connection, str, float], None]] = {
    "pause": pause,
    "resume": resume,
    "enable": enable,
}
