"""Spool schema and connection setup (sqlite-utils for the DDL, WAL mode)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal, cast

import sqlite_utils

from hub.spool.files import ensure_private_dir, ensure_private_file
from hub.spool.stats import ensure_stats
from hub.spool.terms import ensure_terms
from hub.spool.wal_upkeep import JOURNAL_SIZE_LIMIT
from hub.store.postgres.schema import SchemaTooNew
from hub.store.sqlite import SqliteConnection, open_file

Durability = Literal["full", "normal"]

SPOOL_FILE = "spool.db"

SCHEMA_VERSION = 2
"""The spool's shape as this hookhub makes it, recorded in `meta` by `ensure_schema`. The
upgrades below stay additive; the number tells a newer spool (an older hookhub must not open
it) from one this hookhub can bring up to date. 0: a spool from before versions were kept.
2: the response identity (`inbox.response_key`) and `reconcile_state` (issue 16)."""
VERSION_KEY = "schema_version"

# States of a stored request (inbox.state):
#   pending     waiting for the dispatcher
#   claimed     handed to a flow run (put back to pending if the process dies)
#   routed      normalized; its deliveries (one row per destination) are under way
#   done        every planned delivery delivered (or no route took it)
#   failed      a dead letter: unnormalizable, a route that could not be evaluated, or a
#               delivery that failed for good; `error` says why; `hookhub replay` retries
#   skipped     test/ping or non-submission event: recorded, never routed
INBOX_STATES = ("pending", "claimed", "routed", "done", "failed", "skipped")

# States of one (submission, destination) delivery (deliveries.status):
#   pending     planned, not tried yet        sending    handed to a delivery task
#   retrying    waits for next_attempt_at     delivered  done; never sent again
#   dead        failed for good (dead letter; `hookhub replay` puts it back to pending)
DELIVERY_STATES = ("pending", "sending", "retrying", "delivered", "dead")


def connect(path: Path, durability: Durability = "full") -> SqliteConnection:
    """A connection with the pragmas every spool user needs.

    synchronous=FULL makes each commit fsync the WAL: an accepted webhook survives a power
    cut, not just a process crash. The writer batches commits, so this costs little.
    """
    conn = open_file(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    # Without it a WAL keeps the largest size it ever reached (hub/spool/wal_upkeep.py).
    conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    return conn


def ensure_schema(path: Path) -> None:
    # Before SQLite's first open: it creates the file (and later -wal, -shm) with the umask's mode.
    ensure_private_dir(path.parent)
    ensure_private_file(path)
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
            "submission": str,
            "not_before": float,
            "fetch_attempts": int,
            "updated_at": float,
        },
        pk="id",
        not_null={"received_at", "source", "provider", "event_id", "kind", "state", "body"},
        defaults={"redeliveries": 0, "state": "pending", "fetch_attempts": 0},
        if_not_exists=True,
    )
    # The dedupe guarantee: one row per (source, provider event id), enforced by SQLite
    # itself so concurrent redeliveries cannot both insert.
    inbox.create_index(["source", "event_id"], index_name="inbox_dedupe", unique=True, if_not_exists=True)
    db.execute("CREATE INDEX IF NOT EXISTS inbox_by_state ON inbox(state, received_at)")
    db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
    found = recorded_version(db.conn)
    if found > SCHEMA_VERSION:
        db.close()
        raise SchemaTooNew(
            f"the spool {path} is at schema version {found}, newer than this hookhub knows"
            f" ({SCHEMA_VERSION}); upgrade hookhub on this machine"
        )
    _ensure_ledger(db)
    ensure_stats(db)
    _ensure_flow_failure_columns(db)
    _ensure_leases(db)
    _ensure_console(db)
    _ensure_reconciliation(db)
    if found != SCHEMA_VERSION:
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [VERSION_KEY, str(SCHEMA_VERSION)],
        )
    db.close()


def recorded_version(conn: sqlite3.Connection) -> int:
    """The schema version in the spool's `meta`; 0 where none is recorded (or no meta table yet)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key=?", (VERSION_KEY,)).fetchone()
    return int(row[0]) if row is not None else 0


def _ensure_console(db: sqlite_utils.Database) -> None:
    """What finding, resending and pausing need (issue 14), additive for old spools too.

    - indexes for the submission list, newest first, keyset-paged on (received_at, id), alone or
      by source, and for a search by event id across sources;
    - `deliveries.generation` / `attempts.generation`: 0 for the first sending of a pair, +1 per
      `hookhub resend` (the idempotency key of a resend differs: it is sent again on purpose),
      and `deliveries.previous_remote_id`, what the generation before created;
    - `paused_destinations`: destinations whose deliveries stay pending (no claims, no attempts);
    - `submission_terms` (hub/spool/terms.py), filled for submissions stored before it existed.
    """
    db.execute("CREATE INDEX IF NOT EXISTS inbox_by_time ON inbox(received_at, id)")
    db.execute("CREATE INDEX IF NOT EXISTS inbox_by_source_time ON inbox(source, received_at, id)")
    db.execute("CREATE INDEX IF NOT EXISTS inbox_by_event ON inbox(event_id, received_at, id)")
    for table in ("deliveries", "attempts"):
        if "generation" not in db.table(table).columns_dict:
            db.execute(f"ALTER TABLE {table} ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")
    if "previous_remote_id" not in db.table("deliveries").columns_dict:
        db.execute("ALTER TABLE deliveries ADD COLUMN previous_remote_id TEXT")
    db.table("paused_destinations").create(
        {"destination": str, "since": float, "reason": str}, pk="destination", if_not_exists=True
    )
    ensure_terms(cast(SqliteConnection, db.conn))


def _ensure_reconciliation(db: sqlite_utils.Database) -> None:
    """What reconciliation needs (hub/reconcile/), additive for old spools too.

    - `inbox.response_key`: the provider's response identity (connectors.base.response_key),
      unique per source where set, so a response stored by reconciliation and its webhook (in
      either order) make one row; rows from before it have none (hub/reconcile/keys.py fills
      them from their stored requests when a run looks at their time);
    - `reconcile_state`: per source, the watermark (the end of the last window listed), the
      last run's outcome and counts, and what the provider said of its webhook.
    """
    if "response_key" not in db.table("inbox").columns_dict:
        db.execute("ALTER TABLE inbox ADD COLUMN response_key TEXT")
    db.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS inbox_response ON inbox(source, response_key)"
        " WHERE response_key IS NOT NULL"
    )
    db.execute(RECONCILE_STATE_TABLE)


RECONCILE_STATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS reconcile_state (source TEXT PRIMARY KEY, watermark REAL,"
    " last_run_at REAL, last_outcome TEXT, last_error TEXT, last_listed INTEGER NOT NULL DEFAULT 0,"
    " last_missing INTEGER NOT NULL DEFAULT 0, reconciled INTEGER NOT NULL DEFAULT 0,"
    " imported INTEGER NOT NULL DEFAULT 0, webhook_state TEXT, webhook_detail TEXT,"
    " webhook_checked_at REAL)"
)
"""`reconciled` and `imported` count every submission stored so far (the /metrics counters); the
`last_` columns describe the last run. PostgreSQL's migration 3 makes the same table."""


def _ensure_leases(db: sqlite_utils.Database) -> None:
    """Who may hold claims: one lease per live dispatcher (hub/spool/lease.py), and the owner of
    every delivery in `sending` (`deliveries.claimed_by`, beside `inbox.claimed_by`).

    A delivery goes to `sending` in several places (a claim of due retries, a claim of suspects,
    the routing that plans and sends a claimed submission's deliveries at once); the trigger tags
    it with the owner of its claimed submission if there is one, else keeps the owner the UPDATE
    set, so no writer can leave a claim without an owner. Additive, for old spools too.
    """
    db.table("leases").create(
        {"owner": str, "pid": int, "host": str, "port": int, "started_at": float, "expires_at": float},
        pk="owner",
        not_null={"pid", "host", "expires_at"},
        if_not_exists=True,
    )
    if "claimed_by" not in db.table("deliveries").columns_dict:
        db.execute("ALTER TABLE deliveries ADD COLUMN claimed_by TEXT")
    db.execute(
        "CREATE TRIGGER IF NOT EXISTS deliveries_claim_owner AFTER UPDATE OF status ON deliveries"
        " WHEN NEW.status = 'sending' AND OLD.status <> 'sending' BEGIN"
        " UPDATE deliveries SET claimed_by = coalesce("
        "   (SELECT claimed_by FROM inbox WHERE id = NEW.inbox_id AND state = 'claimed'), NEW.claimed_by)"
        " WHERE rowid = NEW.rowid; END"
    )


def _ensure_flow_failure_columns(db: sqlite_utils.Database) -> None:
    """Per claimed row: `flow_failures`, failed flow runs that held it alone (it is quarantined
    after a few), and `retry_group`, set while it is a suspect of a failed run: it is then
    claimed only among at most that many suspects (the dispatcher bisects failed batches).

    Added by ALTER TABLE, for new spools and old ones alike (`create(if_not_exists=True)`
    leaves an existing table as it is).
    """
    for table in ("inbox", "deliveries"):
        columns = db.table(table).columns_dict
        if "flow_failures" not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN flow_failures INTEGER NOT NULL DEFAULT 0")
        if "retry_group" not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN retry_group INTEGER")


def _ensure_ledger(db: sqlite_utils.Database) -> None:
    """The delivery ledger: one row per (submission, destination), and every attempt made."""
    db.table("deliveries").create(
        {
            "inbox_id": str,
            "destination": str,
            "route": str,
            "status": str,
            "attempts": int,
            "first_attempt_at": float,
            "last_attempt_at": float,
            "next_attempt_at": float,
            "last_status_code": int,
            "last_error": str,
            "remote_id": str,
            "delivered_at": float,
            "created_at": float,
            "updated_at": float,
        },
        pk=("inbox_id", "destination"),
        not_null={"status", "attempts", "next_attempt_at", "created_at"},
        defaults={"attempts": 0, "status": "pending"},
        foreign_keys=[("inbox_id", "inbox", "id")],
        if_not_exists=True,
    )
    db.execute("CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(status, next_attempt_at)")
    db.table("attempts").create(
        {
            "inbox_id": str,
            "destination": str,
            "attempt": int,
            "at": float,
            "outcome": str,
            "status_code": int,
            "error": str,
            "retry_after": float,
        },
        pk=("inbox_id", "destination", "attempt"),
        if_not_exists=True,
    )
    db.table("disabled_destinations").create(
        {"destination": str, "since": float, "reason": str}, pk="destination", if_not_exists=True
    )
