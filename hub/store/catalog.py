"""Which tables and columns the ledger's database has, asked the same way of both engines.

A SQLite spool may predate a table (the alerts' tables exist once alerts have run; old spools
are upgraded additively); a PostgreSQL store has every table from its migrations, and its
catalog is read in the schema its connections use (`search_path`).
"""

from __future__ import annotations

from hub.store.connection import Connection


def tables(conn: Connection) -> set[str]:
    if conn.dialect == "sqlite":
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    return {row[0] for row in rows}


def columns(conn: Connection, table: str) -> set[str]:
    """The column names of `table`; empty if there is no such table."""
    if conn.dialect == "sqlite":
        # PRAGMA takes no parameters; `table` is one of the ledger's own names, never user input.
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ?",
        (table,),
    )
    return {row[0] for row in rows}
