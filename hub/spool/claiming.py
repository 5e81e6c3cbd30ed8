"""The ledger's claims: who holds which submission or delivery, and putting back what no one does.

Every claim a flow run makes goes through here, so the rules that keep delivery
exactly-once-per-ledger live in one place:
- work is claimed with a conditional UPDATE (pending -> claimed/sending), so two flow
  runs can never hold the same submission or delivery;
- a delivered row is never claimed again, whatever replays or restarts happen.
Storing what routing planned is hub/spool/routing_store.py; recording what attempts
concluded is hub/spool/delivery_outcomes.py.

Nothing here reads the clock: a function whose rule depends on the time takes `now` (unix
seconds) from its caller, so the rules can be checked at any fixed instant.
"""

from __future__ import annotations

from hub.spool.transactions import transaction
from hub.store import Connection

NOT_PAUSED = "destination NOT IN (SELECT destination FROM paused_destinations)"
"""A paused destination's deliveries stay pending or retrying: nothing claims them (pause/resume)."""


def recover(conn: Connection, now: float) -> tuple[int, int]:
    """Put back what owners without a lease held: claimed submissions and in-flight deliveries.

    `lease.recover` first drops the leases of owners that are gone or expired; a claim of a live
    owner stays its own. A claim with no owner at all comes from a spool written before leases.
    A delivery that was `sending` may have reached the target before the crash; sending it
    again is the price of never losing one, and the stable idempotency key (webhook-id,
    upsert keys) lets the target drop the copy.
    """
    ownerless = "(claimed_by IS NULL OR claimed_by NOT IN (SELECT owner FROM leases))"
    with transaction(conn):
        inbox = conn.execute(
            "UPDATE inbox SET state='pending', claimed_at=NULL, claimed_by=NULL, updated_at=?"
            f" WHERE state='claimed' AND {ownerless}",
            (now,),
        ).rowcount
        deliveries = conn.execute(
            "UPDATE deliveries SET status='pending', claimed_by=NULL, updated_at=?"
            f" WHERE status='sending' AND {ownerless}",
            (now,),
        ).rowcount
    return inbox, deliveries


def has_work(conn: Connection, now: float) -> bool:
    row = conn.execute(
        "SELECT EXISTS(SELECT 1 FROM inbox WHERE state='pending' AND coalesce(not_before, 0) <= ?1)"
        " OR EXISTS(SELECT 1 FROM deliveries WHERE status IN ('pending','retrying')"
        f" AND next_attempt_at <= ?1 AND {NOT_PAUSED})",
        (now,),
    ).fetchone()
    return bool(row[0])


def pending_count(conn: Connection, now: float) -> int:
    count: int = conn.execute(
        "SELECT count(*) FROM inbox WHERE state='pending' AND coalesce(not_before, 0) <= ?"
        " AND retry_group IS NULL",
        (now,),
    ).fetchone()[0]
    return count


def next_due_at(conn: Connection) -> float | None:
    row = conn.execute(
        f"SELECT min(next_attempt_at) FROM deliveries WHERE status IN ('pending','retrying') AND {NOT_PAUSED}"
    ).fetchone()
    due: float | None = row[0]
    return due


def claim_inbox(conn: Connection, now: float, limit: int, owner: str) -> list[str]:
    """The oldest pending submissions, but no suspect of a failed flow run (`claim_suspects`
    takes those): a row that fails its runs can never hold back the ones after it."""
    with transaction(conn):
        rows = conn.execute(
            "UPDATE inbox SET state='claimed', claimed_at=?, claimed_by=?, updated_at=?"
            " WHERE id IN (SELECT id FROM inbox WHERE state='pending' AND coalesce(not_before, 0) <= ?"
            "   AND retry_group IS NULL ORDER BY received_at LIMIT ?)"
            " RETURNING id",
            (now, owner, now, now, limit),
        ).fetchall()
    return sorted(r[0] for r in rows)


def claim_due(conn: Connection, now: float, limit: int, owner: str | None = None) -> list[tuple[str, str]]:
    """Due deliveries, tagged with `owner` (None: no owner, put back by any `recover`)."""
    with transaction(conn):
        rows = conn.execute(
            "UPDATE deliveries SET status='sending', claimed_by=?, updated_at=?"
            " WHERE rowid IN (SELECT rowid FROM deliveries WHERE status IN ('pending','retrying')"
            f"   AND next_attempt_at <= ? AND retry_group IS NULL AND {NOT_PAUSED}"
            "   ORDER BY next_attempt_at LIMIT ?)"
            " RETURNING inbox_id, destination",
            (owner, now, now, limit),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def release(conn: Connection, now: float, inbox_ids: list[str], deliveries: list[tuple[str, str]]) -> None:
    """Give back claims a flow run could not finish (e.g. Prefect was unreachable)."""
    with transaction(conn):
        conn.executemany(
            "UPDATE inbox SET state='pending', claimed_by=NULL, updated_at=? WHERE id=? AND state='claimed'",
            [(now, i) for i in inbox_ids],
        )
        conn.executemany(
            "UPDATE deliveries SET status='pending', updated_at=?"
            " WHERE inbox_id=? AND destination=? AND status='sending'",
            [(now, i, d) for i, d in deliveries],
        )
        # Deliveries the run planned itself (routing happened before it failed).
        conn.executemany(
            "UPDATE deliveries SET status='pending', updated_at=? WHERE inbox_id=? AND status='sending'",
            [(now, i) for i in inbox_ids],
        )
