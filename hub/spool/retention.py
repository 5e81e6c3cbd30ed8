"""Retention: what the spool forgets, and when (README "Privacy: retention and erasure").

Two periods per source (`retention:` in connectors.yaml, hub.config.models.RetentionConfig):
- `raw_requests`: a settled request's body, headers and URL are emptied; its row stays (ids,
  source, event id, state, times), so dedupe still refuses a redelivery and the ledger still
  says what was delivered where. Its normalized Submission JSON stays until `submissions`.
- `submissions`: a settled submission is removed: its inbox row, deliveries and attempts.

Nothing waiting loses anything: a raw request is emptied only once it is `done` or `skipped`
and none of its deliveries is `pending`, `sending`, `retrying` or `dead`, so a submission not
yet delivered, and a dead letter `hookhub replay` may still send, keep their bodies, whatever
their age. A submission is removed once it is `done`, `skipped` or `failed` (a dead letter)
with nothing `pending`, `sending` or `retrying`: after `submissions`, dead letters go too.

The work runs in batches of `batch_size` rows, one short transaction each, so a first run over
a year of data never holds the spool's write lock for long and the receiver keeps answering.
On PostgreSQL a batch locks only its own rows (FOR UPDATE SKIP LOCKED: a row a worker or a
replay holds is left for the next run), and deletes a submission's deliveries before it, as
the foreign key wants.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel

from hub.alerts.store import DDL as ALERT_DDL
from hub.config.models import HubConfig, RetentionConfig
from hub.spool.meta import set_meta
from hub.spool.transactions import transaction
from hub.store import Connection
from hub.store.catalog import columns

log = logging.getLogger("hookhub.retention")

Purge = Literal["raw_requests", "submissions"]
PURGES: tuple[Purge, ...] = ("raw_requests", "submissions")
LAST_RUN_KEY = "retention:last_run_at"
COUNT_KEY = "retention:purged:"
"""Followed by a Purge: rows purged since the spool was made (for /metrics)."""

_NONE_IN = "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.inbox_id = inbox.id AND d.status IN ({}))"
SETTLED: dict[Purge, str] = {
    "raw_requests": "inbox.state IN ('done', 'skipped') AND "
    + _NONE_IN.format("'pending', 'sending', 'retrying', 'dead'"),
    "submissions": "inbox.state IN ('done', 'skipped', 'failed') AND "
    + _NONE_IN.format("'pending', 'sending', 'retrying'"),
}
# Partial: a row leaves it once its body is emptied, so each run reads only what it may still
# purge (not a year of rows purged before). The receiver's inserts add one entry each.
KEPT_INDEX = (
    "CREATE INDEX IF NOT EXISTS retention_raw_kept ON inbox(source, received_at) WHERE length(body) > 0"
)
RAW_KEPT = "length(body) > 0"
# The alerts' index of arrivals by source (created here too: alerts may be off).
BY_SOURCE = next(statement for statement in ALERT_DDL if "alert_inbox_by_source" in statement)
PAUSE_SECONDS = 0.1
"""Between batches: longer than SQLite's longest busy-handler sleep (100 ms), so a writer that
found the spool locked gets it at its next try instead of missing every gap."""
_EMPTY_RAW = "UPDATE inbox SET body = ?, headers = NULL, url = NULL WHERE id IN ({marks})"


class RetentionRun(BaseModel):
    """What one enforcement removed, per purge; `seconds` the whole run, `longest` one batch."""

    purged: dict[str, int]
    batches: int
    seconds: float
    longest_transaction: float


def due(conn: Connection, config: RetentionConfig, now: float) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key=?", (LAST_RUN_KEY,)).fetchone()
    return row is None or now - float(row[0]) >= config.every


def enforce(
    conn: Connection,
    config: HubConfig,
    now: float,
    pause: Callable[[], None] = lambda: time.sleep(PAUSE_SECONDS),
) -> RetentionRun:
    """Apply every source's periods at `now`; `pause` runs between batches (lets writers in)."""
    retention = config.retention
    if retention is None:
        raise ValueError("no `retention:` section in the config: nothing to enforce")
    _ensure_indexes(conn)
    started = time.perf_counter()
    run = _Counter()
    sources = [row[0] for row in conn.execute("SELECT DISTINCT source FROM inbox")]
    for source in sources:
        periods = retention.periods_of(config.sources.get(source))
        # Whole submissions first: a row about to go is not emptied before.
        for purge in ("submissions", "raw_requests"):
            period = getattr(periods, purge)
            if period is not None:
                _purge(conn, purge, source, now - period, retention.batch_size, run, pause)
    with transaction(conn):
        set_meta(conn, LAST_RUN_KEY, repr(now))
    result = RetentionRun(
        purged=run.purged,
        batches=run.batches,
        seconds=time.perf_counter() - started,
        longest_transaction=run.longest,
    )
    log.info(
        "retention enforced",
        extra={
            "event": "retention_done",
            **{f"purged_{k}": v for k, v in result.purged.items()},
            "batches": result.batches,
            "seconds": round(result.seconds, 3),
        },
    )
    return result


def _ensure_indexes(conn: Connection) -> None:
    # PostgreSQL's migrations create both (hub/store/postgres/schema.py, versions 1 and 2).
    if conn.dialect == "sqlite":
        conn.execute(KEPT_INDEX)
        conn.execute(BY_SOURCE)


class _Counter:
    def __init__(self) -> None:
        self.purged: dict[str, int] = dict.fromkeys(PURGES, 0)
        self.batches = 0
        self.longest = 0.0


def _purge(
    conn: Connection,
    purge: Purge,
    source: str,
    cutoff: float,
    batch_size: int,
    run: _Counter,
    pause: Callable[[], None],
) -> None:
    kept = f" AND {RAW_KEPT}" if purge == "raw_requests" else ""
    sqlite = conn.dialect == "sqlite"
    # SQLite's planner, without statistics, would not pick these; PostgreSQL's does, and there a
    # batch must lock its rows against a concurrent replay or claim (SQLite's one writer needs not).
    indexed = f" INDEXED BY {'retention_raw_kept' if kept else 'alert_inbox_by_source'}" if sqlite else ""
    select = (
        f"SELECT id FROM inbox{indexed} WHERE source = ? AND received_at < ?{kept} AND {SETTLED[purge]}"
        " ORDER BY received_at LIMIT ?" + ("" if sqlite else " FOR UPDATE SKIP LOCKED")
    )
    while True:
        began = time.perf_counter()
        with transaction(conn):
            ids = [row[0] for row in conn.execute(select, (source, cutoff, batch_size))]
            if ids:
                _remove(conn, purge, ids)
                add_count(conn, purge, len(ids))
        run.longest = max(run.longest, time.perf_counter() - began)
        if not ids:
            return
        run.batches += 1
        run.purged[purge] += len(ids)
        log.info(
            "retention batch",
            extra={"event": "retention_batch", "purge": purge, "source": source, "rows": len(ids)},
        )
        if sqlite:
            # The purge copies its own pages back into the database, so the WAL's automatic
            # checkpoint does not fall to the receiver's next commit (seconds after a large batch).
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        if len(ids) < batch_size:
            return
        pause()


def _remove(conn: Connection, purge: Purge, ids: list[str]) -> None:
    marks = ",".join("?" * len(ids))
    if purge == "raw_requests":
        conn.execute(_EMPTY_RAW.format(marks=marks), (b"", *ids))
        return
    # Deliveries before their inbox row: PostgreSQL checks the foreign key at each statement.
    for table in ("attempts", "deliveries", *_terms_table(conn)):
        conn.execute(f"DELETE FROM {table} WHERE inbox_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM inbox WHERE id IN ({marks})", ids)


def _terms_table(conn: Connection) -> list[str]:
    """`submission_terms` (the console's search index) where this spool has it."""
    return ["submission_terms"] if "inbox_id" in columns(conn, "submission_terms") else []


def add_count(conn: Connection, purge: str, rows: int) -> None:
    """Add to the rows purged of one kind (raw_requests, submissions, flow_runs), for /metrics."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
        " SET value = CAST(CAST(meta.value AS BIGINT) + CAST(excluded.value AS BIGINT) AS TEXT)",
        (COUNT_KEY + purge, str(rows)),
    )


def purged_totals(conn: Connection) -> tuple[dict[str, float], float | None]:
    """Rows purged since the spool was made, per purge, and when retention last ran (for /metrics)."""
    totals: dict[str, float] = dict.fromkeys((*PURGES, "flow_runs"), 0.0)
    last: float | None = None
    for key, value in conn.execute("SELECT key, value FROM meta WHERE key LIKE 'retention:%'"):
        if key == LAST_RUN_KEY:
            last = float(value)
        elif key.startswith(COUNT_KEY) and key[len(COUNT_KEY) :] in totals:
            totals[key[len(COUNT_KEY) :]] = float(value)
    return totals, last
