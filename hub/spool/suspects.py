"""Suspects: the rows of a flow run that failed for a reason no row explained.

A failed run's claims come back in groups of half its size, tried again after a backoff and
before the queue's order, down to single rows; a row whose runs fail alone `quarantine_after`
times is a dead letter. Kept apart from the ledger's claims and outcomes: it is the one rule
set that reads and writes `retry_group` and `flow_failures`.
"""

from __future__ import annotations

from hub.spool import delivery_outcomes
from hub.spool.claiming import NOT_BEING_ROUTED, held_by, skip_locked
from hub.spool.transactions import transaction
from hub.store import Connection


def claim_suspects(
    conn: Connection,
    now: float,
    owner: str,
) -> tuple[list[str], list[tuple[str, str]]]:
    """One group of due suspects of failed flow runs: submissions, else deliveries.

    The smallest group size first, then the oldest: a failed batch of N comes back as two
    groups of N/2 (see `flow_failed`), and so on down to single rows.
    """
    with transaction(conn):
        size = conn.execute(
            "SELECT min(retry_group) FROM inbox WHERE state='pending' AND retry_group IS NOT NULL"
            " AND coalesce(not_before, 0) <= ?",
            (now,),
        ).fetchone()[0]
        if size is not None:
            rows = conn.execute(
                "UPDATE inbox SET state='claimed', claimed_at=?, claimed_by=?, updated_at=?"
                " WHERE id IN (SELECT id FROM inbox WHERE state='pending' AND retry_group=?"
                f"   AND coalesce(not_before, 0) <= ? ORDER BY received_at LIMIT ?{skip_locked(conn)})"
                " RETURNING id",
                (now, owner, now, size, now, size),
            ).fetchall()
            return sorted(r[0] for r in rows), []
        size = conn.execute(
            "SELECT min(retry_group) FROM deliveries WHERE status IN ('pending','retrying')"
            " AND retry_group IS NOT NULL AND next_attempt_at <= ?",
            (now,),
        ).fetchone()[0]
        if size is None:
            return [], []
        due = conn.execute(
            "UPDATE deliveries SET status='sending', claimed_by=?, updated_at=?"
            " WHERE (inbox_id, destination) IN (SELECT inbox_id, destination FROM deliveries"
            "   WHERE status IN ('pending','retrying') AND retry_group=? AND next_attempt_at <= ?"
            f"   AND {NOT_BEING_ROUTED} ORDER BY next_attempt_at LIMIT ?{skip_locked(conn)})"
            " RETURNING inbox_id, destination",
            (owner, now, size, now, size),
        ).fetchall()
    return [], [(r[0], r[1]) for r in due]


def flow_failed(
    conn: Connection,
    inbox_ids: list[str],
    deliveries: list[tuple[str, str]],
    error: str,
    now: float,
    backoff: float,
    quarantine_after: int,
    owner: str | None = None,
) -> list[str]:
    """Give back what a failed flow run claimed, as suspects to be tried in halves after `backoff`.

    A row that was the run's only claim counts the failure; at `quarantine_after` such
    failures it is a dead letter ("quarantined ...") instead. Returns the quarantined keys,
    as `inbox id` or `inbox id/destination`. With `owner`, only rows still its claims change:
    a claim put back meanwhile (the owner outlived its lease) belongs to whoever took it.
    """
    mine, mine_args = held_by(owner)
    error = delivery_outcomes.unrecordable(error)
    claims = len(inbox_ids) + len(deliveries)
    group = (claims + 1) // 2
    quarantined: list[str] = []
    with transaction(conn):
        if claims == 1:
            # Only while still held: a submission the run already routed fails through its deliveries.
            table, where, args = (
                ("inbox", "id=? AND state='claimed'", (inbox_ids[0],))
                if inbox_ids
                else ("deliveries", "inbox_id=? AND destination=? AND status='sending'", deliveries[0])
            )
            failures = conn.execute(
                f"UPDATE {table} SET flow_failures = flow_failures + 1 WHERE {where}{mine}"
                " RETURNING flow_failures",
                (*args, *mine_args),
            ).fetchone()
            if failures is not None and failures[0] >= quarantine_after:
                reason = f"quarantined after {failures[0]} failed flow runs of it alone: {error}"
                if inbox_ids:
                    conn.execute(
                        "UPDATE inbox SET state='failed', error=?, claimed_by=NULL,"
                        " retry_group=NULL, updated_at=? WHERE id=? AND state='claimed'",
                        (reason, now, inbox_ids[0]),
                    )
                else:
                    conn.execute(
                        "UPDATE deliveries SET status='dead', last_error=?, retry_group=NULL,"
                        " updated_at=? WHERE inbox_id=? AND destination=? AND status='sending'",
                        (reason, now, *deliveries[0]),
                    )
                    delivery_outcomes.settle(conn, [deliveries[0][0]], now)
                quarantined.append("/".join(args))
        conn.executemany(
            "UPDATE inbox SET state='pending', claimed_by=NULL, retry_group=?, not_before=?, error=?,"
            f" updated_at=? WHERE id=? AND state='claimed'{mine}",
            [(group, now + backoff, f"flow run failed: {error}", now, i, *mine_args) for i in inbox_ids],
        )
        conn.executemany(
            "UPDATE deliveries SET status='pending', retry_group=?, next_attempt_at=?, updated_at=?"
            f" WHERE inbox_id=? AND destination=? AND status='sending'{mine}",
            [(group, now + backoff, now, i, d, *mine_args) for i, d in deliveries],
        )
        # Deliveries the run planned itself (routing happened before it failed) are suspects too.
        conn.executemany(
            "UPDATE deliveries SET status='pending', retry_group=?, next_attempt_at=?, updated_at=?"
            f" WHERE inbox_id=? AND status='sending'{mine}",
            [(group, now + backoff, now, i, *mine_args) for i in inbox_ids],
        )
    return quarantined


def flow_succeeded(conn: Connection, inbox_ids: list[str], deliveries: list[tuple[str, str]]) -> None:
    """A run that held suspects ended well: they are ordinary rows again."""
    with transaction(conn):
        conn.executemany(
            "UPDATE inbox SET retry_group=NULL, flow_failures=0 WHERE id=? AND retry_group IS NOT NULL",
            [(i,) for i in inbox_ids],
        )
        conn.executemany(
            "UPDATE deliveries SET retry_group=NULL, flow_failures=0"
            " WHERE inbox_id=? AND destination=? AND retry_group IS NOT NULL",
            deliveries,
        )
        conn.executemany(
            "UPDATE deliveries SET retry_group=NULL, flow_failures=0"
            " WHERE inbox_id=? AND retry_group IS NOT NULL",
            [(i,) for i in inbox_ids],
        )
