"""Writing a chunk's outcomes and attempts: one statement per row on SQLite, one per chunk on PostgreSQL.

SQLite runs `executemany` in C. On PostgreSQL each row of an `executemany` is a Bind and an
Execute that psycopg builds in Python and the server runs on its own; with two such statements
per delivery the server mostly waited on the hub (`ClientRead` in pg_stat_activity during
bench/e2e.py's burst). There the chunk goes as arrays, joined to `deliveries` by its primary
key, in a statement planned for its actual size each time (unprepared: a generic plan made
while the table was small could keep a full scan of it).
"""

from __future__ import annotations

from typing import Any

from hub.spool.rows import Decision
from hub.store import Connection
from hub.store.postgres.connection import PostgresConnection

_ATTEMPT_UPSERT = (
    " ON CONFLICT(inbox_id, destination, attempt) DO UPDATE SET at=excluded.at,"
    " outcome=excluded.outcome, status_code=excluded.status_code, error=excluded.error,"
    " retry_after=excluded.retry_after, generation=excluded.generation"
)


def write(conn: Connection, now: float, decisions: list[Decision]) -> None:
    """One `attempts` row per attempted decision (numbered after the delivery's attempts so far),
    then each delivery not delivered yet takes its decision's status, details and attempt."""
    attempted = [d for d in decisions if d.attempted]
    outcomes = [_outcome(d, now) for d in decisions]
    if isinstance(conn, PostgresConnection):
        _write_arrays(conn, now, attempted, outcomes)
        return
    conn.executemany(
        "INSERT INTO attempts (inbox_id, destination, attempt, at, outcome, status_code,"
        " error, retry_after, generation) SELECT inbox_id, destination, attempts + 1, ?, ?, ?, ?, ?,"
        " generation FROM deliveries WHERE inbox_id=? AND destination=?" + _ATTEMPT_UPSERT,
        [
            (now, d.outcome, d.status_code, d.error, d.retry_after, d.inbox_id, d.destination)
            for d in attempted
        ],
    )
    conn.executemany(
        # The attempt is counted in the same UPDATE as the outcome: one row version per delivery.
        "UPDATE deliveries SET status=?, next_attempt_at=coalesce(?, next_attempt_at),"
        " last_status_code=coalesce(?, last_status_code), last_error=?,"
        " remote_id=coalesce(?, remote_id), delivered_at=?, attempts = attempts + ?,"
        " first_attempt_at = coalesce(first_attempt_at, ?), last_attempt_at = coalesce(?, last_attempt_at),"
        " updated_at=? WHERE inbox_id=? AND destination=? AND status != 'delivered'",
        [(*row[2:], row[-1], now, row[0], row[1]) for row in outcomes],  # the attempt time twice
    )


def _outcome(d: Decision, now: float) -> tuple[Any, ...]:
    """(inbox id, destination, status, next attempt, status code, error, remote id, delivered at,
    attempts added, attempt time)."""
    delivered = d.status == "delivered"
    return (
        d.inbox_id,
        d.destination,
        d.status,
        d.next_attempt_at,
        d.status_code,
        None if delivered else d.error,
        d.remote_id,
        now if delivered else None,
        1 if d.attempted else 0,
        now if d.attempted else None,
    )


def _write_arrays(
    conn: PostgresConnection, now: float, attempted: list[Decision], outcomes: list[tuple[Any, ...]]
) -> None:
    if attempted:
        columns = [
            [d.inbox_id for d in attempted],
            [d.destination for d in attempted],
            [d.outcome for d in attempted],
            [d.status_code for d in attempted],
            [d.error for d in attempted],
            [d.retry_after for d in attempted],
        ]
        conn.execute_unprepared(
            "INSERT INTO attempts (inbox_id, destination, attempt, at, outcome, status_code, error,"
            " retry_after, generation) SELECT d.inbox_id, d.destination, d.attempts + 1, ?, v.outcome,"
            " v.status_code, v.error, v.retry_after, d.generation"
            " FROM unnest(?::text[], ?::text[], ?::text[], ?::int[], ?::text[], ?::float8[])"
            " AS v(inbox_id, destination, outcome, status_code, error, retry_after)"
            " JOIN deliveries d ON d.inbox_id = v.inbox_id AND d.destination = v.destination"
            + _ATTEMPT_UPSERT,
            (now, *columns),
        )
    if outcomes:
        conn.execute_unprepared(
            "UPDATE deliveries AS d SET status = v.status,"
            " next_attempt_at = coalesce(v.next_attempt_at, d.next_attempt_at),"
            " last_status_code = coalesce(v.status_code, d.last_status_code), last_error = v.error,"
            " remote_id = coalesce(v.remote_id, d.remote_id), delivered_at = v.delivered_at,"
            " attempts = d.attempts + v.attempted,"
            " first_attempt_at = coalesce(d.first_attempt_at, v.attempt_at),"
            " last_attempt_at = coalesce(v.attempt_at, d.last_attempt_at), updated_at = ?"
            " FROM unnest(?::text[], ?::text[], ?::text[], ?::float8[], ?::int[], ?::text[], ?::text[],"
            " ?::float8[], ?::int[], ?::float8[]) AS v(inbox_id, destination, status, next_attempt_at,"
            " status_code, error, remote_id, delivered_at, attempted, attempt_at)"
            " WHERE d.inbox_id = v.inbox_id AND d.destination = v.destination AND d.status <> 'delivered'",
            (now, *[list(column) for column in zip(*outcomes, strict=True)]),
        )
