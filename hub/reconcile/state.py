"""Each reconciled source's row in `reconcile_state` (hub/spool/schema.py, PostgreSQL migration 3)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from hub.store import Connection


@dataclass
class SourceState:
    source: str
    watermark: float | None = None
    """The end of the last window listed to its end: the next run starts there (less `settle`)."""
    last_run_at: float | None = None
    last_outcome: str | None = None
    """`ok`, `failed` (the API could not be read; tried again next run) or `refused` (trying again
    cannot help until the admin acts: a revoked token, a form that does not exist)."""
    last_error: str | None = None
    last_listed: int = 0
    last_missing: int = 0
    reconciled: int = 0
    """Submissions stored by reconciliation, ever (the /metrics counter)."""
    imported: int = 0
    """Submissions stored by `hookhub import`, ever."""
    webhook_state: str | None = None
    """What the provider said of the webhook at the last check: ok, disabled, missing, elsewhere."""
    webhook_detail: str | None = None
    webhook_checked_at: float | None = None


_COLUMNS = tuple(f.name for f in fields(SourceState))


def read(conn: Connection, source: str) -> SourceState:
    row = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM reconcile_state WHERE source = ?", (source,)
    ).fetchone()
    return SourceState(*row) if row is not None else SourceState(source)


def read_all(conn: Connection) -> dict[str, SourceState]:
    rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM reconcile_state ORDER BY source").fetchall()
    return {row[0]: SourceState(*row) for row in rows}


def save(conn: Connection, state: SourceState) -> None:
    values = [getattr(state, name) for name in _COLUMNS]
    updates = ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS[1:])
    conn.execute(
        f"INSERT INTO reconcile_state ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        f" ON CONFLICT (source) DO UPDATE SET {updates}",
        values,
    )


def add_stored(conn: Connection, source: str, column: str, count: int) -> None:
    """Count `count` more submissions stored under `column` (`reconciled` or `imported`), in the
    caller's transaction: the counter and the rows it counts commit together."""
    assert column in ("reconciled", "imported")
    conn.execute("INSERT INTO reconcile_state (source) VALUES (?) ON CONFLICT (source) DO NOTHING", (source,))
    conn.execute(f"UPDATE reconcile_state SET {column} = {column} + ? WHERE source = ?", (count, source))
