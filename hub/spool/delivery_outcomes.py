"""Recording what delivery attempts concluded, and settling each submission's state from its deliveries.

A delivered row stays delivered whatever replays or restarts happen: an outcome never
overwrites it. An outcome from an owner whose claim was put back is refused (fencing). One row
never fails its chunk: a decision the database cannot store is written without its details.

Nothing here reads the clock: a function whose rule depends on the time takes `now` (unix
seconds) from its caller.
"""

from __future__ import annotations

import logging

from hub.spool import outcome_rows, stats
from hub.spool.rows import Decision, DeliveryRow, by_destination, chunks
from hub.spool.transactions import transaction
from hub.store import Connection, StoreUnavailable

log = logging.getLogger("hookhub.ledger")


def load_deliveries(conn: Connection, keys: list[tuple[str, str]]) -> list[DeliveryRow]:
    rows: list[DeliveryRow] = []
    for destination, inbox_ids in by_destination(keys).items():
        for chunk in chunks(inbox_ids, 500):
            rows.extend(
                DeliveryRow(*r)
                for r in conn.execute(
                    "SELECT d.inbox_id, d.destination, d.route, d.attempts, d.first_attempt_at, d.remote_id,"
                    " i.submission, d.generation"
                    " FROM deliveries d JOIN inbox i ON i.id = d.inbox_id"
                    f" WHERE d.destination=? AND d.inbox_id IN ({','.join('?' * len(chunk))})",
                    (destination, *chunk),
                )
            )
    return rows


def disabled_destinations(conn: Connection) -> dict[str, str]:
    return {d: reason for d, reason in conn.execute("SELECT destination, reason FROM disabled_destinations")}


def disable_destination(conn: Connection, now: float, destination: str, reason: str) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO disabled_destinations(destination, since, reason) VALUES (?,?,?)"
            " ON CONFLICT(destination) DO UPDATE SET since=excluded.since, reason=excluded.reason",
            (destination, now, reason),
        )


def unrecordable(reason: str) -> str:
    """A reason safe to store whatever the failed value was (its text may be what failed)."""
    return reason.encode("utf-8", "backslashreplace").decode("utf-8")


def record(
    conn: Connection, now: float, decisions: list[Decision], owner: str | None = None
) -> list[Decision]:
    """Apply what delivery attempts concluded, with one row per attempt in `attempts`.

    Set-based (`executemany`, one transaction with the settling of the submissions): this
    runs for every delivered chunk, and a statement per row and step cost more than the send.
    A decision whose delivery row is gone changes nothing.

    With `owner` (the claimant the outcomes are from), a decision is written only while its
    delivery is still `sending` and claimed by `owner`: one that stalled past its lease, whose
    claims were put back and maybe taken by another owner, has its late outcomes refused (no
    attempt row, no status change, no counter), each logged as `late_outcome_refused` and left
    out of what is returned. Without it, any row not delivered yet takes the outcome.

    If the chunk cannot be written for a reason other than the database itself (a value
    the database cannot bind: an error text or remote id with a lone surrogate, an integer beyond
    64 bits), each decision is written alone; one that still fails is written without its
    details: a delivery that was delivered stays delivered (a dead letter would be sent
    again on replay), any other becomes a dead letter saying why. Returns what was written.
    """
    try:
        written = _record(conn, now, decisions, owner)
    except StoreUnavailable:  # locked, disk full, I/O: the database, not a row
        raise
    except Exception:  # noqa: BLE001 - found decision by decision below
        written = _record_each(conn, now, decisions, owner)
    if owner is not None and len(written) < len(decisions):
        _log_refused(decisions, written)
    return written


def _record_each(
    conn: Connection, now: float, decisions: list[Decision], owner: str | None
) -> list[Decision]:
    written: list[Decision] = []
    for decision in decisions:
        try:
            written.extend(_record(conn, now, [decision], owner))
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - this row's own outcome, reduced to what can be stored
            decision = _without_details(decision, f"{type(exc).__name__}: {exc}")
            written.extend(_record(conn, now, [decision], owner))
    return written


def _log_refused(decisions: list[Decision], written: list[Decision]) -> None:
    kept = {(d.inbox_id, d.destination) for d in written}
    for decision in decisions:
        if (decision.inbox_id, decision.destination) not in kept:
            log.warning(
                "outcome refused: the delivery is no longer this owner's claim (its lease ran out)",
                extra={
                    "event": "late_outcome_refused",
                    "id": decision.inbox_id,
                    "destination": decision.destination,
                    "status": decision.status,
                },
            )


def _without_details(decision: Decision, why: str) -> Decision:
    if decision.status == "delivered":
        log.warning(
            "delivered, but details of the outcome could not be recorded",
            extra={
                "event": "record_details_failed",
                "id": decision.inbox_id,
                "destination": decision.destination,
                "error": unrecordable(why),
            },
        )
        return Decision(
            decision.inbox_id,
            decision.destination,
            "delivered",
            decision.outcome,
            attempted=decision.attempted,
        )
    reason = unrecordable(f"its outcome ({decision.outcome}) could not be recorded: {why}")
    return Decision(
        decision.inbox_id, decision.destination, "dead", "failed", attempted=decision.attempted, error=reason
    )


def _record(conn: Connection, now: float, decisions: list[Decision], owner: str | None) -> list[Decision]:
    """Write `decisions` in one transaction; returns those written (all of them without `owner`)."""
    with transaction(conn):
        if owner is not None:
            held = _held(conn, owner, [(d.inbox_id, d.destination) for d in decisions])
            decisions = [d for d in decisions if (d.inbox_id, d.destination) in held]
        open_rows = stats.open_rows(conn, decisions)  # first: only rows not delivered yet count
        counts = stats.decision_counts(now, decisions, open_rows)
        outcome_rows.write(conn, now, decisions)  # attempts numbered from the rows as they were
        # An attempt on a row delivered already (only without `owner`) is counted, its status kept.
        conn.executemany(
            "UPDATE deliveries SET attempts = attempts + 1, first_attempt_at = coalesce(first_attempt_at, ?),"
            " last_attempt_at = ? WHERE inbox_id=? AND destination=?",
            [
                (now, now, d.inbox_id, d.destination)
                for d in decisions
                if d.attempted and (d.inbox_id, d.destination) not in open_rows
            ],
        )
        settle(conn, sorted({d.inbox_id for d in decisions}), now)
        stats.add(conn, counts)
    return decisions


def _held(conn: Connection, owner: str, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The `keys` whose delivery is `sending` under `owner`'s claim, locked on PostgreSQL until the
    transaction ends, so a reaper cannot put one back between this check and the write."""
    # Found by the primary key alone and checked here (see `settle`): the owner's partial index
    # holds every delivery it has in flight, thousands in a burst.
    lock = " FOR NO KEY UPDATE" if conn.dialect == "postgresql" else ""
    held: set[tuple[str, str]] = set()
    for destination, inbox_ids in by_destination(keys).items():
        for chunk in chunks(inbox_ids, 500):
            held.update(
                (inbox_id, destination)
                for inbox_id, status, claimed_by in conn.execute(
                    "SELECT inbox_id, status, claimed_by FROM deliveries WHERE destination=?"
                    f" AND inbox_id IN ({','.join('?' * len(chunk))}){lock}",
                    (destination, *chunk),
                )
                if status == "sending" and claimed_by == owner
            )
    return held


def settle_inbox(conn: Connection, now: float, inbox_ids: list[str]) -> None:
    """Derive each submission's state from its deliveries once none is left in flight."""
    with transaction(conn):
        settle(conn, inbox_ids, now)


IN_FLIGHT = frozenset({"pending", "sending", "retrying"})
"""Delivery statuses that keep their submission `routed`."""


def settle(conn: Connection, inbox_ids: list[str], now: float) -> None:
    """`settle_inbox` inside a transaction the caller holds.

    A routed submission with nothing in flight is failed if a delivery is dead (the reasons
    joined in destination order), else done; one with deliveries still open stays routed.
    """
    if not inbox_ids:
        return
    ids = sorted(set(inbox_ids))
    if conn.dialect == "postgresql":
        # Deliveries of one submission to several destinations are recorded by concurrent
        # transactions. Without this lock each saw the other's delivery still in flight, and
        # neither settled: on bench/e2e.py 504 of 3,109 submissions stayed `routed` with every
        # delivery delivered. The read below starts after the lock is granted, so it sees what the
        # previous holder committed. NO KEY UPDATE, not UPDATE: the caller's own delivery updates
        # hold KEY SHARE locks on these rows (the foreign key's check), and FOR UPDATE conflicts
        # with another settler's KEY SHARE, which deadlocked two settlers of one batch.
        for chunk in chunks(ids, 500):
            conn.execute(
                f"SELECT id FROM inbox WHERE id IN ({','.join('?' * len(chunk))})"
                " ORDER BY id FOR NO KEY UPDATE",
                chunk,
            ).fetchall()
    # Read by the primary key alone, decided here: as correlated subqueries with a status
    # condition, PostgreSQL without statistics combined the primary key with the status index
    # and scanned every open delivery for each submission (~75 % of its CPU during a burst).
    open_ids: set[str] = set()
    dead: dict[str, list[tuple[str, str]]] = {}
    for chunk in chunks(ids, 500):
        for inbox_id, destination, status, last_error in conn.execute(
            "SELECT inbox_id, destination, status, last_error FROM deliveries"
            f" WHERE inbox_id IN ({','.join('?' * len(chunk))})",
            chunk,
        ):
            if status in IN_FLIGHT:
                open_ids.add(inbox_id)
            elif status == "dead":
                dead.setdefault(inbox_id, []).append((destination, last_error or ""))
    settled = [i for i in ids if i not in open_ids]
    conn.executemany(
        "UPDATE inbox SET state='failed', updated_at=?, error=? WHERE id=? AND state='routed'",
        [(now, "; ".join(f"{d}: {e}" for d, e in sorted(dead[i])), i) for i in settled if i in dead],
    )
    conn.executemany(
        "UPDATE inbox SET state='done', updated_at=? WHERE id=? AND state='routed'",
        [(now, i) for i in settled if i not in dead],
    )
