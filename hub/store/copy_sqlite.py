"""Moving a SQLite spool into PostgreSQL (`hookhub migrate --from-sqlite DATA_DIR`, hub/cli_store.py).

Each table is read through one streaming cursor and written in chunks, each a multi-row
INSERT ... ON CONFLICT DO NOTHING committed on its own: an interrupted copy keeps what it
committed, and running it again adds only what is missing, so nothing is lost or doubled.
Only a chunk is ever in memory, bounded by rows and by bytes (a spool of large bodies too).

What changes on the way: claims. A claimed submission or a `sending` delivery belonged to a
process of the SQLite hub, which is stopped; they arrive `pending`, as `claiming.recover` would
have put them back at that hub's next start. `leases` (those processes) and meta rows that only
mean something in that SQLite file are not copied.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from hub.spool.intake import intake_beside
from hub.spool.schema import VERSION_KEY
from hub.spool.terms import BACKFILL_KEY
from hub.store.connection import Connection
from hub.store.postgres.connection import PostgresConnection

TABLES = (
    "meta",
    "inbox",  # before the tables whose rows point at its ids (deliveries has a foreign key)
    "deliveries",
    "attempts",
    "disabled_destinations",
    "paused_destinations",
    "delivery_counters",
    "submission_terms",
    "alert_state",
    "alert_watermarks",
    "alert_outbox",
    "reconcile_state",
)

LOCAL_META = ("probe", BACKFILL_KEY, VERSION_KEY)
"""The writer's liveness probe, the search-terms fill mark (a SQLite rowid) and the SQLite
schema version (PostgreSQL keeps its own in `schema_migrations`): not copied, not compared."""

CHUNK_ROWS = 1000
CHUNK_BYTES = 8 * 1024 * 1024
_MAX_PARAMETERS = 65_535
"""PostgreSQL's limit on one statement's parameters: a chunk has at most this many values."""

Progress = Callable[[str, int, int], None]
"""(table, rows read so far, rows in the source table), after each chunk."""


class CopyFailed(RuntimeError):
    """A chunk could not be written; what was committed before it stays, and a rerun resumes."""


@dataclass(frozen=True)
class TableCount:
    table: str
    source: int
    target: int
    copied: int
    """Rows this run added (a rerun after a complete copy adds none)."""

    @property
    def matches(self) -> bool:
        return self.source == self.target


@dataclass(frozen=True)
class CopyReport:
    tables: list[TableCount]
    released_submissions: int
    """Claimed in the SQLite spool, pending in PostgreSQL."""
    released_deliveries: int
    """`sending` in the SQLite spool, pending in PostgreSQL."""

    @property
    def mismatched(self) -> list[TableCount]:
        return [count for count in self.tables if not count.matches]


def copy_spool(
    source: sqlite3.Connection,
    target: PostgresConnection,
    now: float,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> CopyReport:
    """Copy every table of TABLES that the source has into `target` (migrated already); then
    move alert_outbox's id sequence past the copied ids, and count both sides."""
    _refuse_unmoved_intake(source)
    counts: list[TableCount] = []
    released = {"inbox": 0, "deliveries": 0}
    for table in TABLES:
        columns = _shared_columns(source, target, table)
        if columns is None:
            continue
        total = _count(source, table)
        copied = 0
        for chunk in _chunks(source, table, list(columns), chunk_rows):
            rows = [_release(table, columns, row, now, released) for row in chunk.rows]
            copied += _insert(target, table, columns, rows)
            if progress is not None:
                progress(table, chunk.read, total)
        counts.append(TableCount(table, total, _count(target, table), copied))
    _advance_outbox_ids(source, target)
    return CopyReport(counts, released["inbox"], released["deliveries"])


def _refuse_unmoved_intake(source: sqlite3.Connection) -> None:
    """Webhooks a hub answered from intake.db (hub/spool/intake.py) and had not moved into the
    spool when it stopped hard are moved at its next start; copying before that would lose them."""
    intake = intake_beside(source)
    if intake is None:
        return
    with contextlib.closing(sqlite3.connect(f"file:{intake}?mode=ro", uri=True)) as conn:
        try:
            waiting = conn.execute("SELECT count(*) FROM intake").fetchone()[0]
        except sqlite3.OperationalError:  # no table yet: nothing was ever written there
            return
    if waiting:
        raise CopyFailed(
            f"{intake.name} still holds {waiting} webhook(s) not yet moved into the spool (the hub"
            " stopped hard): start `hookhub serve` on this data dir once and stop it, then migrate"
        )


def _shared_columns(source: sqlite3.Connection, target: Connection, table: str) -> dict[str, str] | None:
    """Column -> PostgreSQL type, for the columns both sides have; None if the source lacks the
    table (the alert tables exist only once alerts have run). A column only PostgreSQL has
    takes its default."""
    have = {row[1] for row in source.execute(f"PRAGMA table_info({table})")}
    if not have:
        return None
    found = target.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    if not found:
        raise CopyFailed(f"the PostgreSQL store has no table {table}: run `hookhub migrate` against it first")
    return {name: kind for name, kind in found if name in have}


def _where(table: str) -> tuple[str, tuple[str, ...]]:
    if table != "meta":
        return "", ()
    return f" WHERE key NOT IN ({','.join('?' * len(LOCAL_META))})", LOCAL_META


def _count(conn: sqlite3.Connection | Connection, table: str) -> int:
    where, parameters = _where(table)
    return int(conn.execute(f"SELECT count(*) FROM {table}{where}", parameters).fetchone()[0])


@dataclass(frozen=True)
class _Chunk:
    rows: list[tuple[Any, ...]]
    read: int


def _chunks(source: sqlite3.Connection, table: str, columns: list[str], chunk_rows: int) -> Iterator[_Chunk]:
    where, parameters = _where(table)
    limit = max(1, min(chunk_rows, _MAX_PARAMETERS // len(columns)))
    cursor = source.execute(f"SELECT {', '.join(columns)} FROM {table}{where}", parameters)
    rows: list[tuple[Any, ...]] = []
    size = read = 0
    for row in cursor:
        rows.append(row)
        read += 1
        size += sum(len(value) for value in row if isinstance(value, str | bytes))
        if len(rows) >= limit or size >= CHUNK_BYTES:
            yield _Chunk(rows, read)
            rows, size = [], 0
    if rows:
        yield _Chunk(rows, read)


def _release(
    table: str, columns: dict[str, str], row: tuple[Any, ...], now: float, released: dict[str, int]
) -> tuple[Any, ...]:
    """The row as PostgreSQL takes it: claims put back to pending, values in the column's type."""
    values = dict(zip(columns, row, strict=True))
    if table == "inbox" and values.get("state") == "claimed":
        values.update(state="pending", claimed_at=None, claimed_by=None, updated_at=now)
        released["inbox"] += 1
    elif table == "deliveries" and values.get("status") == "sending":
        values.update(status="pending", claimed_by=None, updated_at=now)
        released["deliveries"] += 1
    return tuple(_typed(table, name, kind, values[name]) for name, kind in columns.items())


def _typed(table: str, column: str, kind: str, value: Any) -> Any:
    """SQLite keeps whatever was written; PostgreSQL compares strictly, so numbers are made the
    column's numbers. Text and bytes go as they are (a body stays bytes, JSON stays its text)."""
    if value is None:
        return None
    if kind == "double precision" and isinstance(value, int | float):
        return float(value)
    if kind in ("integer", "bigint") and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "bytea" and isinstance(value, str):
        return value.encode("utf-8")
    if kind in ("text", "json") and isinstance(value, int | float):
        return str(value)
    return value


def _insert(
    target: PostgresConnection, table: str, columns: dict[str, str], rows: list[tuple[Any, ...]]
) -> int:
    if not rows:
        return 0
    width = len(columns)
    values = ",".join(
        "(" + ",".join(f"${row * width + column + 1}" for column in range(width)) + ")"
        for row in range(len(rows))
    )
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values} ON CONFLICT DO NOTHING"
    try:
        # RawCursor: $n placeholders sent as they are. psycopg parses a `%s` statement over
        # 4,096 characters again at every execute, which doubled the CPU of a copy.
        return psycopg.RawCursor(target.raw).execute(sql, [v for row in rows for v in row]).rowcount
    except psycopg.Error as exc:
        # Named by its first column only (an id, a key): the other values may be personal data.
        first = f"{next(iter(columns))} {rows[0][0]!r}"
        raise CopyFailed(
            f"{table}: a chunk of {len(rows)} rows from {first} was refused by PostgreSQL:"
            f" {str(exc).strip().splitlines()[0]}; the chunks before it are committed, and running"
            " the same command again resumes once the cause is fixed"
        ) from exc


def _advance_outbox_ids(source: sqlite3.Connection, target: Connection) -> None:
    """New alert_outbox rows in PostgreSQL must not take ids the SQLite spool already used: the
    identity sequence goes past the highest id ever given there (AUTOINCREMENT keeps it in
    sqlite_sequence, which deleted rows do not lower), and never backwards."""
    if source.execute("SELECT 1 FROM sqlite_master WHERE name='alert_outbox'").fetchone() is None:
        return
    highest = int(source.execute("SELECT coalesce(max(id), 0) FROM alert_outbox").fetchone()[0])
    if source.execute("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'").fetchone() is not None:
        row = source.execute("SELECT seq FROM sqlite_sequence WHERE name='alert_outbox'").fetchone()
        highest = max(highest, int(row[0]) if row is not None else 0)
    highest = max(highest, int(target.execute("SELECT coalesce(max(id), 0) FROM alert_outbox").fetchone()[0]))
    if highest == 0:
        return
    sequence = target.execute("SELECT pg_get_serial_sequence('alert_outbox', 'id')").fetchone()[0]
    # The name comes from PostgreSQL itself, already quoted where it needs to be.
    last, called = target.execute(f"SELECT last_value, is_called FROM {sequence}").fetchone()
    if called and last >= highest:
        return
    target.execute("SELECT setval(?::regclass, ?, true)", (sequence, highest))
