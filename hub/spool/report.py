"""What the admin commands read and change: status counts, dead letters, replay.

They open the store directly (beside a serving hub: WAL on SQLite); a replay only
moves rows back to `pending`, and the running dispatcher picks them up from there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pydantic import BaseModel

from hub.reconcile import state as reconcile_state
from hub.spool.transactions import transaction
from hub.store import Connection, Cursor


@dataclass(frozen=True)
class DeadLetter:
    """A submission (destination None: not normalizable or unroutable) or one of its deliveries."""

    inbox_id: str
    source: str
    destination: str | None
    reason: str
    attempts: int
    last_status_code: int | None
    at: float
    delivered_to: tuple[str, ...] = ()
    """For a submission-level letter: where its other routes delivered it all the same (a route
    whose `when` failed fails the submission, not the routes that could be judged)."""


def source_status(conn: Connection) -> list[tuple[str, dict[str, int]]]:
    rows = conn.execute("SELECT source, state, count(*) FROM inbox GROUP BY source, state ORDER BY source")
    return _pivot(rows)


def destination_status(conn: Connection) -> list[tuple[str, dict[str, int]]]:
    rows = conn.execute(
        "SELECT destination, status, count(*) FROM deliveries"
        " GROUP BY destination, status ORDER BY destination"
    )
    return _pivot(rows)


@dataclass(frozen=True)
class Retrying:
    """A destination's deliveries waiting for another attempt, with the latest failure."""

    destination: str
    count: int
    next_attempt_at: float
    last_error: str | None
    last_status_code: int | None


def retrying(conn: Connection) -> list[Retrying]:
    out = []
    for destination, count, next_at in conn.execute(
        "SELECT destination, count(*), min(next_attempt_at) FROM deliveries WHERE status='retrying'"
        " GROUP BY destination ORDER BY destination"
    ).fetchall():
        error, code = conn.execute(
            "SELECT last_error, last_status_code FROM deliveries WHERE status='retrying' AND destination=?"
            " ORDER BY last_attempt_at DESC LIMIT 1",
            (destination,),
        ).fetchone()
        out.append(Retrying(destination, count, next_at, error, code))
    return out


def disabled(conn: Connection) -> list[tuple[str, float, str]]:
    """(destination, since, reason) of the destinations a 410 disabled."""
    rows = conn.execute("SELECT destination, since, reason FROM disabled_destinations ORDER BY destination")
    return [(name, since or 0.0, reason or "") for name, since, reason in rows]


def oldest_pending(conn: Connection) -> tuple[int, float | None]:
    """(submissions not yet routed, received_at of the oldest), pending or claimed."""
    count, oldest = conn.execute(
        "SELECT count(*), min(received_at) FROM inbox WHERE state IN ('pending', 'claimed')"
    ).fetchone()
    return count, oldest


@dataclass(frozen=True)
class HeldDestination:
    """A destination a 410 disabled or an admin paused: since when and why."""

    destination: str
    since: float
    reason: str


class LiveOwner(BaseModel):
    owner: str
    host: str
    pid: int
    port: int | None
    expires_at: float


def live_owners(conn: Connection, now: float) -> list[LiveOwner]:
    rows = conn.execute(
        "SELECT owner, host, pid, port, expires_at FROM leases WHERE expires_at > ? ORDER BY host, pid",
        (now,),
    )
    return [LiveOwner(owner=o, host=h, pid=p, port=port, expires_at=e) for o, h, p, port, e in rows]


class StatusReport(BaseModel):
    """`hookhub status --json` (and the console's overview)."""

    stored: int
    sources: dict[str, dict[str, int]]
    """Source -> inbox state -> submissions."""
    destinations: dict[str, dict[str, int]]
    """Destination -> delivery status -> deliveries."""
    pending: int
    oldest_pending_at: float | None
    disabled: list[HeldDestination]
    paused: list[HeldDestination]
    retrying: list[Retrying]
    hub: dict[str, object] | None = None
    """The running hub on this data dir (pid, port, /readyz's delivery part), if one runs."""
    store: str | None = None
    """Which store this is (its key: no credentials)."""
    workers: list[LiveOwner] = []
    """Dispatchers holding a lease on this store now: the workers of a cluster, or the one hub."""
    reconcile: dict[str, dict[str, object]] = {}
    """Source -> its reconciliation state (hub/reconcile/state.py): watermark, last run, webhook."""


def status_report(conn: Connection, now: float | None = None) -> StatusReport:
    sources = dict(source_status(conn))
    count, oldest = oldest_pending(conn)
    paused = conn.execute("SELECT destination, since, reason FROM paused_destinations ORDER BY destination")
    return StatusReport(
        stored=sum(n for counts in sources.values() for n in counts.values()),
        sources=sources,
        destinations=dict(destination_status(conn)),
        pending=count,
        oldest_pending_at=oldest,
        disabled=[HeldDestination(*row) for row in disabled(conn)],
        paused=[HeldDestination(name, since or 0.0, reason or "") for name, since, reason in paused],
        retrying=retrying(conn),
        workers=[] if now is None else live_owners(conn, now),
        reconcile={source: asdict(row) for source, row in reconcile_state.read_all(conn).items()},
    )


def source_exists(conn: Connection, source: str) -> bool:
    """Whether the spool holds anything from `source` (one index probe)."""
    return conn.execute("SELECT 1 FROM inbox WHERE source=? LIMIT 1", (source,)).fetchone() is not None


def _pivot(rows: Cursor) -> list[tuple[str, dict[str, int]]]:
    out: dict[str, dict[str, int]] = {}
    for name, state, count in rows:
        out.setdefault(name, {})[state] = count
    return list(out.items())


def dead_letters(
    conn: Connection, source: str | None = None, ids: list[str] | None = None
) -> list[DeadLetter]:
    where, args = _filter("i", source, ids)
    letters = [
        DeadLetter(r[0], r[1], None, r[2] or "failed", 0, None, r[3], _delivered_to(conn, r[0]))
        for r in conn.execute(
            "SELECT i.id, i.source, i.error, i.updated_at FROM inbox i"
            " WHERE i.state='failed' AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.inbox_id=i.id"
            f"   AND d.status='dead') {where} ORDER BY i.received_at",
            args,
        )
    ]
    letters += [
        DeadLetter(r[0], r[1], r[2], r[3] or "failed", r[4], r[5], r[6])
        for r in conn.execute(
            "SELECT d.inbox_id, i.source, d.destination, d.last_error, d.attempts, d.last_status_code,"
            " d.updated_at"
            f" FROM deliveries d JOIN inbox i ON i.id=d.inbox_id WHERE d.status='dead' {where}"
            " ORDER BY i.received_at, d.destination",
            args,
        )
    ]
    return letters


def _delivered_to(conn: Connection, inbox_id: str) -> tuple[str, ...]:
    rows = conn.execute(
        "SELECT destination FROM deliveries WHERE inbox_id=? AND status='delivered' ORDER BY destination",
        (inbox_id,),
    )
    return tuple(row[0] for row in rows)


def replay(conn: Connection, letters: list[DeadLetter], now: float) -> int:
    """Put dead letters back in the queue; delivered (submission, destination) pairs stay delivered.

    A dead delivery goes back to pending with a fresh retry horizon; a submission that
    could not be normalized or routed goes back to pending as a whole, so it is normalized
    and routed again by the connector and routes now in force (ON CONFLICT DO NOTHING keeps its
    delivered rows). Destinations disabled by a 410 are enabled again.
    """
    with transaction(conn):
        for letter in letters:
            if letter.destination is None:
                conn.execute(
                    "UPDATE inbox SET state='pending', error=NULL, fetch_attempts=0, not_before=NULL,"
                    " flow_failures=0, retry_group=NULL, updated_at=? WHERE id=? AND state='failed'",
                    (now, letter.inbox_id),
                )
                continue
            conn.execute(
                "UPDATE deliveries SET status='pending', next_attempt_at=?, first_attempt_at=NULL,"
                " flow_failures=0, retry_group=NULL, updated_at=? WHERE inbox_id=? AND destination=?"
                " AND status='dead'",
                (now, now, letter.inbox_id, letter.destination),
            )
            conn.execute("DELETE FROM disabled_destinations WHERE destination=?", (letter.destination,))
            conn.execute(
                "UPDATE inbox SET state='routed', error=NULL, updated_at=? WHERE id=? AND state='failed'",
                (now, letter.inbox_id),
            )
    return len(letters)


def _filter(alias: str, source: str | None, ids: list[str] | None) -> tuple[str, list[str]]:
    clauses, args = [], []
    if source:
        clauses.append(f"{alias}.source = ?")
        args.append(source)
    if ids:
        clauses.append(f"{alias}.id IN ({','.join('?' * len(ids))})")
        args.extend(ids)
    return ("AND " + " AND ".join(clauses)) if clauses else "", args
