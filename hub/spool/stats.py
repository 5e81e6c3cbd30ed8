"""Delivery counters kept in the spool: what /metrics reports as `_total` series and histograms.

Outcomes are recorded by whichever process delivered them (the dispatcher's thread or a
delivery worker process) and must outlive restarts, so they are counted in the spool, in
the transaction that records them (one UPSERT per (destination, counter) per chunk), not in
memory. Each row is one monotonic value: an outcome's count, attempts, or one latency bucket
(counts per bucket, not cumulative; the reader sums them up).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping

import sqlite_utils

from hub.spool.rows import Decision, by_destination, chunks
from hub.store import Connection

# Seconds from the receiver's answer to the delivery: from an instant send up to the two-day
# default retry horizon.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)
ATTEMPTS = "attempts"
LATENCY_SUM = "latency_sum"
BUCKET = "latency_bucket:"
"""Followed by the bucket's index in LATENCY_BUCKETS; len(LATENCY_BUCKETS) is +Inf."""
OUTCOME = "outcome:"
"""Followed by delivered, retrying, deferred, dead or skipped."""

_UPSERT = (
    "INSERT INTO delivery_counters (destination, name, value) VALUES (?,?,?)"
    " ON CONFLICT(destination, name) DO UPDATE SET value = delivery_counters.value + excluded.value"
)


def ensure_stats(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS delivery_counters (destination TEXT NOT NULL, name TEXT NOT NULL,"
        " value REAL NOT NULL DEFAULT 0, PRIMARY KEY (destination, name)) WITHOUT ROWID"
    )
    # What /metrics counts per destination and status, without reading table rows (a scrape over
    # 100,000 dead letters took 280 ms through deliveries_due, ~15 ms with this). Partial: delivered
    # rows, nearly all of a spool, leave it, so it stays small and cheap to keep up.
    db.execute(
        "CREATE INDEX IF NOT EXISTS deliveries_open ON deliveries(status, destination, next_attempt_at)"
        " WHERE status != 'delivered'"
    )


def outcome_of(decision: Decision) -> str:
    """The `outcome` label of a recorded decision (a deferral waits like a retry but is no attempt)."""
    if decision.status == "retrying" and not decision.attempted:
        return "deferred"
    return decision.status


def decision_counts(
    now: float, decisions: list[Decision], open_rows: Mapping[tuple[str, str], float]
) -> dict[tuple[str, str], float]:
    """What `decisions` add to the counters, given their `open_rows` (read inside `record`'s
    transaction before it updates the rows); written by `add` at its end.

    Only decisions whose delivery row exists and is not delivered yet count, as only those
    change anything; a delivered one adds its time since the webhook was received.
    """
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for decision in decisions:
        received_at = open_rows.get((decision.inbox_id, decision.destination))
        if received_at is None:
            continue
        counts[(decision.destination, OUTCOME + outcome_of(decision))] += 1
        if decision.attempted:
            counts[(decision.destination, ATTEMPTS)] += 1
        if decision.status == "delivered":
            latency = max(0.0, now - received_at)
            counts[(decision.destination, f"{BUCKET}{bisect.bisect_left(LATENCY_BUCKETS, latency)}")] += 1
            counts[(decision.destination, LATENCY_SUM)] += latency
    return counts


def count_skipped(conn: Connection, skipped: Mapping[str, int]) -> None:
    """Submissions a route's `when` kept from each destination (inside the caller's transaction)."""
    add(conn, {(destination, OUTCOME + "skipped"): n for destination, n in skipped.items() if n})


def add(conn: Connection, counts: Mapping[tuple[str, str], float]) -> None:
    """Add `counts` to the counter rows, inside the caller's transaction.

    Every transaction that records outcomes for a destination updates the same few rows, and on
    PostgreSQL holds their locks until it commits: call this last, just before the commit, so
    the others wait for a commit and not for the rest of the transaction's work. In key order,
    so two transactions cannot deadlock on them."""
    conn.executemany(
        _UPSERT, [(destination, name, counts[destination, name]) for destination, name in sorted(counts)]
    )


def open_rows(conn: Connection, decisions: Iterable[Decision]) -> dict[tuple[str, str], float]:
    """(inbox id, destination) -> received_at, for the decisions' rows not delivered yet."""
    found: dict[tuple[str, str], float] = {}
    for destination, inbox_ids in by_destination((d.inbox_id, d.destination) for d in decisions).items():
        for chunk in chunks(inbox_ids, 500):
            # The status is checked here, not in SQL: `status != 'delivered'` is the predicate of
            # the deliveries_open index, which PostgreSQL then scanned whole, every open
            # delivery of a burst for each chunk, instead of the primary key.
            for inbox_id, status, received_at in conn.execute(
                "SELECT d.inbox_id, d.status, i.received_at FROM deliveries d"
                " JOIN inbox i ON i.id = d.inbox_id WHERE d.destination=?"
                f" AND d.inbox_id IN ({','.join('?' * len(chunk))})",
                (destination, *chunk),
            ):
                if status != "delivered":
                    found[(inbox_id, destination)] = received_at
    return found


def read_counters(conn: Connection) -> dict[str, dict[str, float]]:
    """destination -> counter name -> value."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for destination, name, value in conn.execute("SELECT destination, name, value FROM delivery_counters"):
        out[destination][name] = value
    return dict(out)
