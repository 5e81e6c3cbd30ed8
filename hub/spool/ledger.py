"""The delivery ledger: claims, plans and outcomes, each one short SQLite transaction.

Every state change a flow makes goes through here, so the rules that make delivery
exactly-once-per-ledger live in one place:
- work is claimed with a conditional UPDATE (pending -> claimed/sending), so two flow
  runs can never hold the same submission or delivery;
- a delivered row is never claimed again, whatever replays or restarts happen;
- planning inserts with INSERT OR IGNORE, so re-routing a submission after a crash or a
  replay adds only what is missing.

Nothing here reads the clock: a function whose rule depends on the time takes `now` (unix
seconds) from its caller, so the rules can be checked at any fixed instant.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hub.spool import stats
from hub.spool.schema import connect, ensure_schema
from hub.spool.terms import write_terms

log = logging.getLogger("hookhub.ledger")

DeliveryStatus = Literal["pending", "sending", "retrying", "delivered", "dead"]

NOT_PAUSED = "destination NOT IN (SELECT destination FROM paused_destinations)"
"""A paused destination's deliveries stay pending or retrying: nothing claims them (pause/resume)."""


@dataclass(frozen=True)
class InboxRow:
    id: str
    received_at: float
    source: str
    provider: str
    event_id: str
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    kind: str = "submission"
    """`fetched`: a submission a notification stood for; its body is the Submission JSON."""


@dataclass(frozen=True)
class PlannedDelivery:
    destination: str
    route: str


Routed = dict[str, tuple[str, list[PlannedDelivery]]]
"""Inbox id -> (Submission JSON, planned deliveries)."""


@dataclass(frozen=True)
class DeliveryRow:
    inbox_id: str
    destination: str
    route: str
    attempts: int
    first_attempt_at: float | None
    remote_id: str | None
    submission: str | None
    """The normalized Submission JSON stored at routing time."""
    generation: int = 0
    """0 for the first sending; +1 per `hookhub resend` (hub/spool/actions.py)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.inbox_id, self.destination)

    @property
    def delivery_key(self) -> str:
        """The idempotency key receivers dedupe on: stable across retries, new for each resend."""
        base = f"{self.inbox_id}.{self.destination}"
        return f"{base}.r{self.generation}" if self.generation else base


@dataclass(frozen=True)
class Decision:
    """What one attempt concluded for one (submission, destination)."""

    inbox_id: str
    destination: str
    status: DeliveryStatus  # delivered, retrying or dead
    outcome: str  # what the attempt itself was: delivered, retry, failed, disabled, gave_up
    attempted: bool = True
    next_attempt_at: float | None = None
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    remote_id: str | None = None


def open_spool(path: Path) -> sqlite3.Connection:
    ensure_schema(path)
    return connect(path, durability="full")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def recover(conn: sqlite3.Connection, now: float) -> tuple[int, int]:
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


def has_work(conn: sqlite3.Connection, now: float) -> bool:
    row = conn.execute(
        "SELECT EXISTS(SELECT 1 FROM inbox WHERE state='pending' AND coalesce(not_before, 0) <= ?1)"
        " OR EXISTS(SELECT 1 FROM deliveries WHERE status IN ('pending','retrying')"
        f" AND next_attempt_at <= ?1 AND {NOT_PAUSED})",
        (now,),
    ).fetchone()
    return bool(row[0])


def pending_count(conn: sqlite3.Connection, now: float) -> int:
    count: int = conn.execute(
        "SELECT count(*) FROM inbox WHERE state='pending' AND coalesce(not_before, 0) <= ?"
        " AND retry_group IS NULL",
        (now,),
    ).fetchone()[0]
    return count


def next_due_at(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(
        f"SELECT min(next_attempt_at) FROM deliveries WHERE status IN ('pending','retrying') AND {NOT_PAUSED}"
    ).fetchone()
    due: float | None = row[0]
    return due


def claim_inbox(conn: sqlite3.Connection, now: float, limit: int, owner: str) -> list[str]:
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


def claim_due(
    conn: sqlite3.Connection, now: float, limit: int, owner: str | None = None
) -> list[tuple[str, str]]:
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


def release(
    conn: sqlite3.Connection, now: float, inbox_ids: list[str], deliveries: list[tuple[str, str]]
) -> None:
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


def load_inbox(conn: sqlite3.Connection, ids: list[str]) -> list[InboxRow]:
    rows: list[InboxRow] = []
    for chunk in _chunks(ids, 500):
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


def save_routing(
    conn: sqlite3.Connection,
    now: float,
    routed: Routed,
    failed: dict[str, str],
    skipped: dict[str, int] | None = None,
) -> list[tuple[str, str]]:
    """Store normalized submissions and plan their deliveries; returns the deliveries to send now.

    `routed`: inbox id -> (Submission JSON, planned deliveries); `failed`: inbox id -> why it
    is a dead letter (unnormalizable, route error). A submission can be both: routes that
    evaluated deliver, and the one that did not makes it a dead letter to look at.

    All in one transaction; if that fails for a reason other than the database itself (a value
    SQLite cannot bind), each submission is saved alone, and one that still fails is a dead
    letter saying why: one row never fails its batch.
    """
    try:
        return _save_routing(conn, now, routed, failed, skipped)
    except sqlite3.OperationalError:  # locked, disk full, I/O: the database, not a row
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
            claimed.extend(_save_routing(conn, now, one_routed, one_failed, None))
        except sqlite3.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - this row's own dead letter
            reason = unrecordable(f"could not be stored: {type(exc).__name__}: {exc}")
            with transaction(conn):
                conn.execute(
                    "UPDATE inbox SET state='failed', error=?, claimed_by=NULL, updated_at=? WHERE id=?",
                    (reason, now, inbox_id),
                )
    return claimed


def unrecordable(reason: str) -> str:
    """A reason safe to store whatever the failed value was (its text may be what failed)."""
    return reason.encode("utf-8", "backslashreplace").decode("utf-8")


def _save_routing(
    conn: sqlite3.Connection,
    now: float,
    routed: Routed,
    failed: dict[str, str],
    skipped: dict[str, int] | None,
) -> list[tuple[str, str]]:
    claimed: list[tuple[str, str]] = []
    with transaction(conn):
        if skipped:
            stats.count_skipped(conn, skipped)
        for inbox_id, (submission, planned) in routed.items():
            conn.executemany(
                "INSERT OR IGNORE INTO deliveries (inbox_id, destination, route, status, attempts,"
                " next_attempt_at, created_at, updated_at) VALUES (?,?,?,'pending',0,?,?,?)",
                [(inbox_id, p.destination, p.route, now, now, now) for p in planned],
            )
            if planned:
                # Only what is still pending: a replayed submission's delivered rows stay as they are.
                claimed.extend(
                    conn.execute(
                        "UPDATE deliveries SET status='sending', updated_at=?"
                        f" WHERE inbox_id=? AND status='pending' AND {NOT_PAUSED}"
                        " RETURNING inbox_id, destination",
                        (now, inbox_id),
                    ).fetchall()
                )
            state = "failed" if inbox_id in failed else "routed"
            conn.execute(
                "UPDATE inbox SET submission=?, state=?, error=?, claimed_by=NULL, updated_at=? WHERE id=?",
                (submission, state, failed.get(inbox_id), now, inbox_id),
            )
        write_terms(conn, [(inbox_id, submission) for inbox_id, (submission, _) in routed.items()])
        for inbox_id, reason in failed.items():
            if inbox_id not in routed:
                conn.execute(
                    "UPDATE inbox SET state='failed', error=?, claimed_by=NULL, updated_at=? WHERE id=?",
                    (reason, now, inbox_id),
                )
    settle_inbox(conn, now, list(routed))
    return claimed


def fetch_later(conn: sqlite3.Connection, now: float, inbox_id: str, delay: float, reason: str) -> None:
    """A provider API could not be read this time: try the whole submission again `delay` after `now`."""
    with transaction(conn):
        conn.execute(
            "UPDATE inbox SET state='pending', not_before=?, fetch_attempts=fetch_attempts+1, error=?,"
            " claimed_by=NULL, updated_at=? WHERE id=?",
            (now + delay, reason, now, inbox_id),
        )


def fetch_attempts(conn: sqlite3.Connection, inbox_id: str) -> int:
    row = conn.execute("SELECT fetch_attempts FROM inbox WHERE id=?", (inbox_id,)).fetchone()
    return int(row[0] or 0) if row else 0


def add_expanded(
    conn: sqlite3.Connection,
    now: float,
    parent: InboxRow,
    children: list[tuple[str, str, str]],
    owner: str,
) -> dict[str, str]:
    """Store the submissions a notification stood for as rows of their own; the parent is done.

    `children`: (new id, dedupe key, Submission JSON). A child whose dedupe key the source has
    already stored (a response fetched again by a later notification) is skipped. Returns the
    new ids actually inserted, with their Submission JSON, claimed for the calling flow run.
    """
    added: dict[str, str] = {}
    with transaction(conn):
        for child_id, key, submission in children:
            row = conn.execute(
                "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, note, method, url,"
                " headers, body, state, redeliveries, claimed_at, claimed_by, submission, updated_at)"
                " VALUES (?,?,?,?,?,'fetched',?,?,?,'{}',?,'claimed',0,?,?,?,?)"
                " ON CONFLICT(source, event_id) DO NOTHING RETURNING id",
                (
                    child_id,
                    now,
                    parent.source,
                    parent.provider,
                    key,
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


def load_deliveries(conn: sqlite3.Connection, keys: list[tuple[str, str]]) -> list[DeliveryRow]:
    by_destination: dict[str, list[str]] = {}
    for inbox_id, destination in keys:
        by_destination.setdefault(destination, []).append(inbox_id)
    rows: list[DeliveryRow] = []
    for destination, inbox_ids in by_destination.items():
        for chunk in _chunks(inbox_ids, 500):
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


def disabled_destinations(conn: sqlite3.Connection) -> dict[str, str]:
    return {d: reason for d, reason in conn.execute("SELECT destination, reason FROM disabled_destinations")}


def disable_destination(conn: sqlite3.Connection, now: float, destination: str, reason: str) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT OR REPLACE INTO disabled_destinations(destination, since, reason) VALUES (?,?,?)",
            (destination, now, reason),
        )


def record(conn: sqlite3.Connection, now: float, decisions: list[Decision]) -> list[Decision]:
    """Apply what delivery attempts concluded, with one row per attempt in `attempts`.

    Set-based (`executemany`, one transaction with the settling of the submissions): this
    runs for every delivered chunk, and a statement per row and step cost more than the send.
    A decision whose delivery row is gone changes nothing.

    If the chunk cannot be written for a reason other than the database itself (a value
    SQLite cannot bind: an error text or remote id with a lone surrogate, an integer beyond
    64 bits), each decision is written alone; one that still fails is written without its
    details: a delivery that was delivered stays delivered (a dead letter would be sent
    again on replay), any other becomes a dead letter saying why. Returns what was written.
    """
    try:
        _record(conn, now, decisions)
        return decisions
    except sqlite3.OperationalError:  # locked, disk full, I/O: the database, not a row
        raise
    except Exception:  # noqa: BLE001 - found decision by decision below
        pass
    written: list[Decision] = []
    for decision in decisions:
        try:
            _record(conn, now, [decision])
        except sqlite3.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - this row's own outcome, reduced to what can be stored
            decision = _without_details(decision, f"{type(exc).__name__}: {exc}")
            _record(conn, now, [decision])
        written.append(decision)
    return written


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


def _record(conn: sqlite3.Connection, now: float, decisions: list[Decision]) -> None:
    attempted = [(d.inbox_id, d.destination) for d in decisions if d.attempted]
    with transaction(conn):
        stats.count_decisions(conn, now, decisions)  # first: it counts only rows not delivered yet
        conn.executemany(
            "UPDATE deliveries SET attempts = attempts + 1, first_attempt_at = coalesce(first_attempt_at, ?),"
            " last_attempt_at = ? WHERE inbox_id=? AND destination=?",
            [(now, now, inbox_id, destination) for inbox_id, destination in attempted],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO attempts (inbox_id, destination, attempt, at, outcome, status_code,"
            " error, retry_after, generation) SELECT inbox_id, destination, attempts, ?, ?, ?, ?, ?,"
            " generation FROM deliveries"
            " WHERE inbox_id=? AND destination=?",
            [
                (now, d.outcome, d.status_code, d.error, d.retry_after, d.inbox_id, d.destination)
                for d in decisions
                if d.attempted
            ],
        )
        conn.executemany(
            "UPDATE deliveries SET status=?, next_attempt_at=coalesce(?, next_attempt_at),"
            " last_status_code=coalesce(?, last_status_code), last_error=?,"
            " remote_id=coalesce(?, remote_id), delivered_at=?, updated_at=?"
            " WHERE inbox_id=? AND destination=? AND status != 'delivered'",
            [
                (
                    d.status,
                    d.next_attempt_at,
                    d.status_code,
                    None if d.status == "delivered" else d.error,
                    d.remote_id,
                    now if d.status == "delivered" else None,
                    now,
                    d.inbox_id,
                    d.destination,
                )
                for d in decisions
            ],
        )
        settle(conn, sorted({d.inbox_id for d in decisions}), now)


def settle_inbox(conn: sqlite3.Connection, now: float, inbox_ids: list[str]) -> None:
    """Derive each submission's state from its deliveries once none is left in flight."""
    with transaction(conn):
        settle(conn, inbox_ids, now)


_NONE_OPEN = (
    "NOT EXISTS (SELECT 1 FROM deliveries WHERE inbox_id = inbox.id"
    " AND status IN ('pending', 'sending', 'retrying'))"
)


def settle(conn: sqlite3.Connection, inbox_ids: list[str], now: float) -> None:
    """`settle_inbox` inside a transaction the caller holds."""
    # A routed submission with nothing in flight is failed if a delivery is dead (the reasons
    # joined), else done; one with deliveries still open stays routed.
    conn.executemany(
        "UPDATE inbox SET state='failed', updated_at=?, error=(SELECT group_concat("
        " destination || ': ' || coalesce(last_error, ''), '; ') FROM deliveries"
        " WHERE inbox_id = inbox.id AND status = 'dead')"
        f" WHERE id=? AND state='routed' AND {_NONE_OPEN}"
        " AND EXISTS (SELECT 1 FROM deliveries WHERE inbox_id = inbox.id AND status = 'dead')",
        [(now, inbox_id) for inbox_id in inbox_ids],
    )
    conn.executemany(
        f"UPDATE inbox SET state='done', updated_at=? WHERE id=? AND state='routed' AND {_NONE_OPEN}",
        [(now, inbox_id) for inbox_id in inbox_ids],
    )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
