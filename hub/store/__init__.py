"""Where the spool and ledger live: the embedded SQLite file (default) or a PostgreSQL database.

Every ledger function in hub/spool/ is plain SQL written once, in the subset both engines speak
(ON CONFLICT, RETURNING, row values, `->>` on JSON text), and takes a `Connection`; where the
engines differ in meaning rather than spelling (claims under concurrency, transaction start,
SQLite's PRAGMA upkeep), the function branches on `conn.dialect`.
"""

from hub.store.connection import Connection, Cursor, Dialect, StoreError, StoreUnavailable
from hub.store.location import PostgresStore, SqliteStore, Store, store_from_setting

__all__ = [
    "Connection",
    "Cursor",
    "Dialect",
    "PostgresStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "store_from_setting",
]
