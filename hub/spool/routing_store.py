"""Storing what routing made of submissions: their Submission JSON and planned deliveries,
the submissions a notification stood for, and fetches to try again later.

Planning inserts with ON CONFLICT DO NOTHING, so re-routing a submission after a crash or a
replay adds only what is missing, and a replayed submission's delivered rows stay as they are.
With the claimant's `owner`, a submission is stored and planned only while it is still that
owner's claim: an owner that outlived its lease (its claims put back, maybe taken by another
worker) cannot plan or send them a second time. One row never fails its batch: what the
database cannot store makes that row a dead letter.

Nothing here reads the clock: a function whose rule depends on the time takes `now` (unix
seconds) from its caller.
"""

from __future__ import annotations

import json
import logging

from hub.spool import stats
from hub.spool.claiming import held_by
from hub.spool.delivery_outcomes import settle_inbox, unrecordable
from hub.spool.rows import InboxRow, Routed, chunks
from hub.spool.terms import write_terms
from hub.spool.transactions import transaction
from hub.store import Connection, StoreUnavailable

log = logging.getLogger("hookhub.ledger")


def load_inbox(conn: Connection, ids: list[str]) -> list[InboxRow]:
    rows: list[InboxRow] = []
    for chunk in chunks(ids, 500):
        marks = ",".join("?" * len(chunk))
        for r in conn.execute(
            "SELECT id, received_at, source, provider, event_id, method, url, headers, body, kind"
            f" FROM inbox WHERE id IN ({marks}) ORDER BY received_at",
            chunk,
        ):
            rows.append(
                InboxRow(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5] or "POST",
                    r[6] or "",
                    json.loads(r[7] or "{}"),
                    r[8],
                    r[9] or "submission",
                )
            )
    return rows


def fetch_later(
    conn: Connection, now: float, inbox_id: str, delay: float, reason: str, owner: str | None = None
) -> None:
    """A provider API could not be read this time: try the whole submission again `delay` after `now`
    (with `owner`, only if it is still that owner's claim)."""
    mine, args = _still_claimed(owner)
    with transaction(conn):
        conn.execute(
            "UPDATE inbox SET state='pending', not_before=?, fetch_attempts=fetch_attempts+1, error=?,"
            f" claimed_by=NULL, updated_at=? WHERE id=?{mine}",
            (now + delay, reason, now, inbox_id, *args),
        )


def _still_claimed(owner: str | None) -> tuple[str, tuple[str, ...]]:
    """The condition that a submission is still claimed by `owner` (nothing for None)."""
    mine, args = held_by(owner)
    return (" AND state='claimed'" + mine, args) if owner is not None else ("", ())


def fetch_attempts(conn: Connection, inbox_id: str) -> int:
    row = conn.execute("SELECT fetch_attempts FROM inbox WHERE id=?", (inbox_id,)).fetchone()
    return int(row[0] or 0) if row else 0


def save_routing(
    conn: Connection,
    now: float,
    routed: Routed,
    failed: dict[str, str],
    skipped: dict[str, int] | None = None,
    owner: str | None = None,
) -> list[tuple[str, str]]:
    """Store normalized submissions and plan their deliveries; returns the deliveries to send now.

    `routed`: inbox id -> (Submission JSON, planned deliveries); `failed`: inbox id -> why it
    is a dead letter (unnormalizable, route error). A submission can be both: routes that
    evaluated deliver, and the one that did not makes it a dead letter to look at.

    All in one transaction; if that fails for a reason other than the database itself (a value
    the database cannot bind), each submission is saved alone, and one that still fails is a dead
    letter saying why: one row never fails its batch.

    With `owner`, a submission that is no longer its claim is left alone (logged as
    `late_routing_refused`): nothing stored, planned or returned for it.
    """
    try:
        return _save_routing(conn, now, routed, failed, skipped, owner)
    except StoreUnavailable:  # locked, disk full, I/O: the database, not a row
        raise
    except Exception:  # noqa: BLE001 - found row by row below
        pass
    if skipped:  # `skipped` (destination -> submissions a `when` kept from it) counts once per batch
        with transaction(conn):
            stats.count_skipped(conn, skipped)
    claimed: list[tuple[str, str]] = []
    for inbox_id in [*routed, *(i for i in failed if i not in routed)]:
        one_routed = {inbox_id: routed[inbox_id]} if inbox_id in routed else {}
        one_failed = {inbox_id: failed[inbox_id]} if inbox_id in failed else {}
        try:
            claimed.extend(_save_routing(conn, now, one_routed, one_failed, None, owner))
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - this row's own dead letter
            reason = unrecordable(f"could not be stored: {type(exc).__name__}: {exc}")
            mine, args = _still_claimed(owner)
            with transaction(conn):
                conn.execute(
                    "UPDATE inbox SET state='failed', error=?, claimed_by=NULL, updated_at=?"
                    f" WHERE id=?{mine}",
                    (reason, now, inbox_id, *args),
                )
    return claimed


def _save_routing(
    conn: Connection,
    now: float,
    routed: Routed,
    failed: dict[str, str],
    skipped: dict[str, int] | None,
    owner: str | None,
) -> list[tuple[str, str]]:
    with transaction(conn):
        if owner is not None:
            routed, failed = _still_held(conn, now, owner, routed, failed)
        claimed = _plan(conn, now, routed, owner)
        conn.executemany(
            "UPDATE inbox SET submission=?, state=?, error=?, claimed_by=NULL, updated_at=? WHERE id=?",
            [
                (
                    submission,
                    "failed" if inbox_id in failed else "routed",
                    failed.get(inbox_id),
                    now,
                    inbox_id,
                )
                for inbox_id, (submission, _) in routed.items()
            ],
        )
        write_terms(conn, [(inbox_id, submission) for inbox_id, (submission, _) in routed.items()])
        conn.executemany(
            "UPDATE inbox SET state='failed', error=?, claimed_by=NULL, updated_at=? WHERE id=?",
            [(reason, now, inbox_id) for inbox_id, reason in failed.items() if inbox_id not in routed],
        )
        if skipped:  # last: see stats.add
            stats.count_skipped(conn, skipped)
    settle_inbox(conn, now, list(routed))
    return claimed


def _plan(conn: Connection, now: float, routed: Routed, owner: str | None) -> list[tuple[str, str]]:
    """Insert the planned deliveries, those to send now already `sending` under the claim's owner;
    returns them with the earlier rows of a replayed submission still pending, now sending too.

    A new row is written once, in its final state: inserted `pending` and then updated to
    `sending`, each delivery cost a second row version, its foreign-key check and the owner
    trigger, and on PostgreSQL that UPDATE, found through the status index, read every dead
    `pending` entry a burst had left (112 ms per 500 rows at the end of bench/e2e.py's burst).
    """
    ids = [inbox_id for inbox_id, (_, planned) in routed.items() if planned]
    if not ids:
        return []
    paused = {r[0] for r in conn.execute("SELECT destination FROM paused_destinations")}
    owners = {i: owner for i in ids} if owner is not None else _claim_owners(conn, ids)
    # Rows a replay or an earlier try left; locked on PostgreSQL so that no claim takes a pending
    # one between this read and its update. Read by the primary key alone (see `settle`).
    lock = " FOR NO KEY UPDATE" if conn.dialect == "postgresql" else ""
    existing: dict[tuple[str, str], str] = {}
    for chunk in chunks(ids, 500):
        for inbox_id, destination, status in conn.execute(
            "SELECT inbox_id, destination, status FROM deliveries"
            f" WHERE inbox_id IN ({','.join('?' * len(chunk))}){lock}",
            chunk,
        ):
            existing[inbox_id, destination] = status
    # Two routes to one destination plan one delivery: the first route's, as ON CONFLICT kept it.
    new: dict[tuple[str, str], str] = {}
    for inbox_id in ids:
        for p in routed[inbox_id][1]:
            if (inbox_id, p.destination) not in existing:
                new.setdefault((inbox_id, p.destination), p.route)
    send = [key for key in new if key[1] not in paused]
    conn.executemany(
        "INSERT INTO deliveries (inbox_id, destination, route, status, attempts, next_attempt_at,"
        " created_at, updated_at, claimed_by) VALUES (?,?,?,?,0,?,?,?,?)"
        " ON CONFLICT(inbox_id, destination) DO NOTHING",
        [
            (inbox_id, destination, route, "pending", now, now, now, None)
            if destination in paused
            else (inbox_id, destination, route, "sending", now, now, now, owners.get(inbox_id))
            for (inbox_id, destination), route in new.items()
        ],
    )
    # Only what is still pending: a replayed submission's delivered rows stay as they are.
    again = sorted(key for key, status in existing.items() if status == "pending" and key[1] not in paused)
    conn.executemany(
        "UPDATE deliveries SET status='sending', updated_at=? WHERE inbox_id=? AND destination=?",
        [(now, inbox_id, destination) for inbox_id, destination in again],
    )
    return send + again


def _claim_owners(conn: Connection, ids: list[str]) -> dict[str, str | None]:
    """Inbox id -> the owner of its claim (the owner trigger's rule, for rows inserted `sending`)."""
    owners: dict[str, str | None] = {}
    for chunk in chunks(ids, 500):
        owners.update(
            conn.execute(
                f"SELECT id, claimed_by FROM inbox WHERE id IN ({','.join('?' * len(chunk))})"
                " AND state='claimed'",
                chunk,
            ).fetchall()
        )
    return owners


def _still_held(
    conn: Connection, now: float, owner: str, routed: Routed, failed: dict[str, str]
) -> tuple[Routed, dict[str, str]]:
    """`routed` and `failed` without the submissions that are no longer `owner`'s claims.

    The UPDATE that finds them also locks them until the transaction ends (on PostgreSQL a
    reaper's put-back then waits, and finds them routed), so the check cannot go stale."""
    wanted = sorted({*routed, *failed})
    held: set[str] = set()
    for chunk in chunks(wanted, 500):
        held.update(
            r[0]
            for r in conn.execute(
                f"UPDATE inbox SET updated_at=? WHERE id IN ({','.join('?' * len(chunk))})"
                " AND state='claimed' AND claimed_by=? RETURNING id",
                (now, *chunk, owner),
            )
        )
    for inbox_id in wanted:
        if inbox_id not in held:
            log.warning(
                "routing refused: the submission is no longer this owner's claim (its lease ran out)",
                extra={"event": "late_routing_refused", "id": inbox_id},
            )
    return (
        {i: plan for i, plan in routed.items() if i in held},
        {i: why for i, why in failed.items() if i in held},
    )


def add_expanded(
    conn: Connection,
    now: float,
    parent: InboxRow,
    children: list[tuple[str, str, str]],
    owner: str,
) -> dict[str, str]:
    """Store the submissions a notification stood for as rows of their own; the parent is done.

    `children`: (new id, dedupe key, Submission JSON). A child whose dedupe key the source has
    already stored as an event id or a response key (a response fetched again by a later
    notification, or stored by reconciliation) is skipped. Returns the
    new ids actually inserted, with their Submission JSON, claimed for the calling flow run:
    under the parent's claim owner if it has one (so they are put back only if that owner's
    lease is lost, and routed only by it), else under `owner`.
    """
    added: dict[str, str] = {}
    with transaction(conn):
        parent_owner = conn.execute(
            "SELECT claimed_by FROM inbox WHERE id=? AND state='claimed'", (parent.id,)
        ).fetchone()
        if parent_owner is not None and parent_owner[0] is not None:
            owner = parent_owner[0]
        for child_id, key, submission in children:
            row = conn.execute(
                "INSERT INTO inbox (id, received_at, source, provider, event_id, response_key, kind, note,"
                " method, url, headers, body, state, redeliveries, claimed_at, claimed_by, submission,"
                " updated_at) VALUES (?,?,?,?,?,?,'fetched',?,?,?,'{}',?,'claimed',0,?,?,?,?)"
                " ON CONFLICT DO NOTHING RETURNING id",
                (
                    child_id,
                    now,
                    parent.source,
                    parent.provider,
                    key,
                    key,  # a fetched response's event id is its response id (Connector.reconciler)
                    f"fetched for notification {parent.id}",
                    parent.method,
                    parent.url,
                    submission.encode("utf-8"),
                    now,
                    owner,
                    submission,
                    now,
                ),
            ).fetchone()
            if row is not None:
                added[child_id] = submission
        write_terms(conn, added.items())
        note = f"notification: {len(added)} new of {len(children)} fetched"
        conn.execute(
            "UPDATE inbox SET state='done', note=?, error=NULL, claimed_by=NULL, updated_at=? WHERE id=?",
            (note, now, parent.id),
        )
    return added
