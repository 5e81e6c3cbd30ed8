"""sqlite3's connection, saying which SQL it speaks (hub/store/connection.py)."""

from __future__ import annotations

import sqlite3

from hub.store.connection import Dialect


class SqliteConnection(sqlite3.Connection):
    dialect: Dialect = "sqlite"


def open_file(path: object, timeout: float = 30) -> SqliteConnection:
    """Autocommit (transactions are explicit), shared across threads as the ledger's callers do."""
    return sqlite3.connect(  # type: ignore[call-overload, no-any-return]
        path, timeout=timeout, isolation_level=None, check_same_thread=False, factory=SqliteConnection
    )
