"""The ledger's claims: who holds which submission or delivery, and putting back what no one does.

Every claim a flow run makes goes through here, so the rules that keep delivery
exactly-once-per-ledger live in one place:
- work is claimed with a conditional UPDATE (pending -> claimed/sending), so two flow
  runs can never hold the same submission or delivery; on PostgreSQL, where several workers
  claim at once, the rows are picked `FOR UPDATE SKIP LOCKED`: concurrent claims get disjoint
  rows and none waits for another;
- a delivered row is never claimed again, whatever replays or restarts happen;
- what changes a claimed row on behalf of a flow run may name its `owner`: the change is then
  made only while the row is still that owner's (fencing: an owner that stalled past its lease
  and had its claims put back cannot undo what the next owner does).
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

_NO_LIVE_LEASE = "claimed_by NOT IN (SELECT owner FROM leases)"

NOT_BEING_ROUTED = (
    "NOT EXISTS (SELECT 1 FROM inbox WHERE inbox.id = deliveries.inbox_id AND inbox.state = 'claimed')"
)
"""A delivery whose submission is claimed (being routed again, after a replay) waits for that
routing: a delivery put in `sending` takes its claimed submission's owner (the schema's
trigger), so a second owner claiming it could never record its outcome."""


def skip_locked(conn: Connection) -> str:
    """What ends a claim's row-picking subquery: SQLite's one writer needs nothing, PostgreSQL's
    concurrent workers skip the rows another claim is taking at this instant."""
    return " FOR UPDATE SKIP LOCKED" if conn.dialect == "postgresql" else ""


def held_by(owner: str | None) -> tuple[str, tuple[str, ...]]:
    """The condition (and its parameter) that a claimed row is still `owner`'s; nothing for None."""
    return (" AND claimed_by = ?", (owner,)) if owner is not None else ("", ())


def recover(conn: Connection, now: float) -> tuple[int, int]:
    """Put back what owners without a lease held: claimed submissions and in-flight deliveries.

    `lease.recover` first drops the leases of owners that are gone or expired; a claim of a live
    owner stays its own. A claim with no owner at all comes from a spool written before leases
    (or a caller that claimed without one): only this start-time recovery puts those back.
    A delivery that was `sending` may have reached the target before the crash; sending it
    again is the price of never losing one, and the stable idempotency key (webhook-id,
    upsert keys) lets the target drop the copy.
    """
    return _put_back(conn, now, f"(claimed_by IS NULL OR {_NO_LIVE_LEASE})")


def reap(conn: Connection, now: float) -> tuple[int, int]:
    """`recover` as every worker runs it periodically: only claims that name an owner without a
    lease go back, so a live owner's claims (and ownerless ones) are never touched."""
    return _put_back(conn, now, f"claimed_by IS NOT NULL AND {_NO_LIVE_LEASE}")


def _put_back(conn: Connection, now: float, whose: str) -> tuple[int, int]:
    with transaction(conn):
        inbox = conn.execute(
            "UPDATE inbox SET state='pending', claimed_at=NULL, claimed_by=NULL, updated_at=?"
            f" WHERE state='claimed' AND {whose}",
            (now,),
        ).rowcount
        deliveries = conn.execute(
            "UPDATE deliveries SET status='pending', claimed_by=NULL, updated_at=?"
            f" WHERE status='sending' AND {whose}",
            (now,),
        ).rowcount
    return inbox, deliveries


def has_work(conn: Connection, now: float) -> bool:
    row = conn.execute(
        "SELECT EXISTS(SELECT 1 FROM inbox WHERE state='pending' AND coalesce(not_before, 0) <= ?)"
        " OR EXISTS(SELECT 1 FROM deliveries WHERE status IN ('pending','retrying')"
        f" AND next_attempt_at <= ? AND {NOT_PAUSED})",
        (now, now),
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
            f"   AND retry_group IS NULL ORDER BY received_at LIMIT ?{skip_locked(conn)})"
            " RETURNING id",
            (now, owner, now, now, limit),
        ).fetchall()
    return sorted(r[0] for r in rows)


def claim_due(conn: Connection, now: float, limit: int, owner: str | None = None) -> list[tuple[str, str]]:
    """Due deliveries, tagged with `owner` (None: no owner, put back only by a start's `recover`)."""
    with transaction(conn):
        rows = conn.execute(
            "UPDATE deliveries SET status='sending', claimed_by=?, updated_at=?"
            " WHERE (inbox_id, destination) IN (SELECT inbox_id, destination FROM deliveries"
            f"   WHERE status IN ('pending','retrying') AND next_attempt_at <= ? AND retry_group IS NULL"
            f"   AND {NOT_PAUSED} AND {NOT_BEING_ROUTED} ORDER BY next_attempt_at LIMIT ?{skip_locked(conn)})"
            " RETURNING inbox_id, destination",
            (owner, now, now, limit),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def release(
    conn: Connection,
    now: float,
    inbox_ids: list[str],
    deliveries: list[tuple[str, str]],
    owner: str | None = None,
) -> None:
    """Give back claims a flow run could not finish (e.g. Prefect was unreachable); with `owner`,
    only those still its own (a claim put back and taken by another owner stays theirs)."""
    mine, args = held_by(owner)
    with transaction(conn):
        conn.executemany(
            "UPDATE inbox SET state='pending', claimed_by=NULL, updated_at=?"
            f" WHERE id=? AND state='claimed'{mine}",
            [(now, i, *args) for i in inbox_ids],
        )
        conn.executemany(
            "UPDATE deliveries SET status='pending', updated_at=?"
            f" WHERE inbox_id=? AND destination=? AND status='sending'{mine}",
            [(now, i, d, *args) for i, d in deliveries],
        )
        # Deliveries the run planned itself (routing happened before it failed).
        conn.executemany(
            "UPDATE deliveries SET status='pending', updated_at=?"
            f" WHERE inbox_id=? AND status='sending'{mine}",
            [(now, i, *args) for i in inbox_ids],
        )
