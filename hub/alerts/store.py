"""The alerts' own tables in the spool: what was seen, what is firing, what is owed.

- `alert_state`: one row per (rule, key): whether it is firing, when it last sent (the throttle),
  and for dead letters the group still being counted (`pending`, `reasons`, `sources`).
- `alert_watermarks`: how far the dead-letter scan has read `deliveries.updated_at`.
- `alert_outbox`: one row per (alert, alert destination) still owed, sent or dropped.

The rules write a decision and its outbox rows in one transaction, so a restart sends what was
owed and nothing twice. Failures to send an alert live only here: they are never deliveries and
never dead letters, so an alert destination that fails cannot alert about itself in a loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from hub.alerts.model import Alert
from hub.store import Connection


class _Executes(Protocol):
    def execute(self, sql: str, /) -> Any: ...


DDL = (  # SQLite's; PostgreSQL's are in its first migration (hub/store/postgres/schema.py)
    "CREATE TABLE IF NOT EXISTS alert_state (rule TEXT NOT NULL, key TEXT NOT NULL,"
    " firing INTEGER NOT NULL DEFAULT 0, since REAL, last_sent_at REAL, last_seen_at REAL,"
    " pending INTEGER NOT NULL DEFAULT 0, pending_since REAL, reasons TEXT NOT NULL DEFAULT '{}',"
    " sources TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (rule, key))",
    "CREATE TABLE IF NOT EXISTS alert_watermarks (name TEXT PRIMARY KEY, value REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS alert_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " rule TEXT NOT NULL, key TEXT NOT NULL, destination TEXT NOT NULL, alert TEXT NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'owed', created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt_at REAL NOT NULL, last_error TEXT, sent_at REAL)",
    "CREATE INDEX IF NOT EXISTS alert_outbox_owed ON alert_outbox(status, next_attempt_at)",
    # The rules ask for the last attempts of a destination and the last arrival of a source
    # every few seconds; without these they would scan tables that grow with every submission.
    "CREATE INDEX IF NOT EXISTS alert_attempts_by_destination ON attempts(destination, at)",
    "CREATE INDEX IF NOT EXISTS alert_inbox_by_source ON inbox(source, received_at)",
    # Partial: only dead rows are in it, so the ledger's hot path (pending -> sending -> delivered)
    # does not maintain it; the dead-letter scan then reads only what is new.
    "CREATE INDEX IF NOT EXISTS alert_dead_by_time ON deliveries(updated_at) WHERE status = 'dead'",
)


def ensure_alert_tables(db: _Executes) -> None:
    """Create the alert tables on a SQLite spool (idempotent); a PostgreSQL store has them already."""
    if getattr(db, "dialect", "sqlite") != "sqlite":
        return
    for statement in DDL:
        db.execute(statement)


@dataclass
class RuleState:
    """One (rule, key) row of `alert_state`."""

    rule: str
    key: str
    firing: bool = False
    since: float | None = None
    last_sent_at: float | None = None
    last_seen_at: float | None = None
    pending: int = 0
    pending_since: float | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def throttled(self, now: float, throttle: float) -> bool:
        return self.last_sent_at is not None and now < self.last_sent_at + throttle


def states(conn: Connection, rule: str) -> dict[str, RuleState]:
    rows = conn.execute(
        "SELECT key, firing, since, last_sent_at, last_seen_at, pending, pending_since, reasons, sources"
        " FROM alert_state WHERE rule=?",
        (rule,),
    )
    return {
        key: RuleState(
            rule, key, bool(firing), since, sent, seen, pending, p_since, json.loads(r), json.loads(s)
        )
        for key, firing, since, sent, seen, pending, p_since, r, s in rows
    }


def save(conn: Connection, state: RuleState) -> None:
    conn.execute(
        "INSERT INTO alert_state (rule, key, firing, since, last_sent_at, last_seen_at, pending,"
        " pending_since, reasons, sources) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (rule, key) DO UPDATE"
        " SET firing = excluded.firing, since = excluded.since, last_sent_at = excluded.last_sent_at,"
        " last_seen_at = excluded.last_seen_at, pending = excluded.pending,"
        " pending_since = excluded.pending_since, reasons = excluded.reasons, sources = excluded.sources",
        (
            state.rule,
            state.key,
            int(state.firing),
            state.since,
            state.last_sent_at,
            state.last_seen_at,
            state.pending,
            state.pending_since,
            json.dumps(state.reasons),
            json.dumps(state.sources),
        ),
    )


def watermark(conn: Connection, name: str, default: float) -> float:
    row = conn.execute("SELECT value FROM alert_watermarks WHERE name=?", (name,)).fetchone()
    return default if row is None else float(row[0])


def set_watermark(conn: Connection, name: str, value: float) -> None:
    conn.execute(
        "INSERT INTO alert_watermarks (name, value) VALUES (?,?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (name, value),
    )


def owe(conn: Connection, alert: Alert, destinations: list[str], now: float) -> None:
    """Queue `alert` for each of `destinations` (sent by the evaluator, retried until sent)."""
    body = alert.model_dump_json()
    conn.executemany(
        "INSERT INTO alert_outbox (rule, key, destination, alert, created_at, next_attempt_at)"
        " VALUES (?,?,?,?,?,?)",
        [(alert.kind, alert.key, dest, body, now, now) for dest in destinations],
    )


@dataclass(frozen=True)
class Owed:
    id: int
    destination: str
    alert: Alert
    created_at: float
    attempts: int


def due(conn: Connection, now: float, limit: int = 50) -> list[Owed]:
    rows = conn.execute(
        "SELECT id, destination, alert, created_at, attempts FROM alert_outbox"
        " WHERE status='owed' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
        (now, limit),
    )
    return [Owed(i, dest, Alert.model_validate_json(body), at, n) for i, dest, body, at, n in rows]


def mark_sent(conn: Connection, owed_id: int, now: float) -> None:
    conn.execute(
        "UPDATE alert_outbox SET status='sent', sent_at=?, attempts=attempts+1 WHERE id=?", (now, owed_id)
    )


def mark_failed(conn: Connection, owed_id: int, error: str, next_attempt_at: float | None) -> None:
    """Record a failed send: tried again at `next_attempt_at`, or dropped when that is None."""
    status = "owed" if next_attempt_at is not None else "dropped"
    conn.execute(
        "UPDATE alert_outbox SET status=?, attempts=attempts+1, last_error=?, next_attempt_at=coalesce(?,"
        " next_attempt_at) WHERE id=?",
        (status, error, next_attempt_at, owed_id),
    )
