"""What an admin does to one submission or destination: resend, send elsewhere, pause, resume.

Each is one short transaction on the spool that only moves rows back to `pending` (or inserts
one); the running dispatcher does the sending. Semantics (README, "Resend, backfill and pause"):
- resend of a delivered pair starts a new *generation* of that (submission, destination) row:
  the row goes back to pending with a fresh retry horizon, keeps its attempt history (attempt
  numbers go on counting; each attempt row carries its generation), moves its remote id to
  `previous_remote_id` (with one, Slack would edit its message and Pipedrive skip the lead it
  made: not sent again), and its idempotency key becomes `<id>.<destination>.r<generation>`, so
  receivers that dedupe on it take the resend as a new delivery;
- a dead pair is put back as `hookhub replay` does (same generation: it was never delivered);
- a destination that never had the submission gets a new row (route `manual`);
- a paused destination keeps its rows pending or retrying: no claim, no attempt, no dead letter.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from pydantic import BaseModel

from hub.spool.transactions import transaction
from hub.store import Connection

MANUAL_ROUTE = "manual"
"""The route recorded for a delivery an admin asked for (`hookhub resend --destination`)."""


class UnknownName(LookupError):
    """A submission, destination or route that does not exist; the message lists what does."""


class NothingToResend(ValueError):
    """The deliveries asked for cannot be resent now (not normalized yet, or already under way)."""


class Resent(BaseModel):
    destination: str
    action: Literal["resend", "replay", "new"]
    generation: int


def _known(name: str, known: Collection[str] | None, what: str) -> None:
    """Raise UnknownName unless `name` is among `known` (None: not checked)."""
    if known is not None and name not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise UnknownName(f"no {what} named {name!r}; configured: {listed}")


def resend(
    conn: Connection,
    inbox_id: str,
    now: float,
    destinations: list[str] | None = None,
    configured: Collection[str] | None = None,
) -> list[Resent]:
    """Send a submission again: to `destinations` (each: resend, replay or a new row), or to
    every destination it was delivered to. `configured`: the destinations in the config."""
    row = conn.execute("SELECT submission, state FROM inbox WHERE id=?", (inbox_id,)).fetchone()
    if row is None:
        raise UnknownName(f"no submission with id {inbox_id!r}")
    if row[0] is None:
        raise NothingToResend(
            f"{inbox_id} has not been normalized yet:"
            " the dispatcher routes it (or `hookhub replay` if it failed)"
        )
    for name in destinations or []:
        _known(name, configured, "destination")
    with transaction(conn):
        pairs = dict(
            conn.execute(
                "SELECT destination, status FROM deliveries WHERE inbox_id=?", (inbox_id,)
            ).fetchall()
        )
        wanted = destinations or [d for d, status in pairs.items() if status == "delivered"]
        busy = [d for d in wanted or pairs if pairs.get(d) in ("pending", "sending", "retrying")]
        if not wanted and not busy:
            raise NothingToResend(
                f"{inbox_id} was delivered nowhere yet; name a destination with --destination"
            )
        if busy:
            raise NothingToResend(f"{inbox_id} is already on its way to {', '.join(busy)}")
        done = [_resend_one(conn, inbox_id, d, pairs.get(d), now) for d in wanted]
        # Settled again when its deliveries are; one failed by a route error (no dead delivery)
        # stays failed, so that dead letter stays visible.
        if row[1] == "done" or (row[1] == "failed" and "dead" in pairs.values()):
            conn.execute(
                "UPDATE inbox SET state='routed', error=NULL, updated_at=? WHERE id=?", (now, inbox_id)
            )
    return done


def _resend_one(conn: Connection, inbox_id: str, destination: str, status: str | None, now: float) -> Resent:
    if status is None:
        conn.execute(
            "INSERT INTO deliveries (inbox_id, destination, route, status, attempts, next_attempt_at,"
            " created_at, updated_at) VALUES (?,?,?,'pending',0,?,?,?)",
            (inbox_id, destination, MANUAL_ROUTE, now, now, now),
        )
        return Resent(destination=destination, action="new", generation=0)
    bump = 1 if status == "delivered" else 0
    # first_attempt_at cleared: the retry horizon counts from the resend's own first attempt.
    # A replayed dead pair keeps its remote id: a half-done CRM delivery finishes what it began.
    (generation,) = conn.execute(
        "UPDATE deliveries SET status='pending', generation=generation+?, next_attempt_at=?,"
        " previous_remote_id=CASE WHEN ? = 1 THEN coalesce(remote_id, previous_remote_id)"
        "   ELSE previous_remote_id END, remote_id=CASE WHEN ? = 1 THEN NULL ELSE remote_id END,"
        " first_attempt_at=NULL, delivered_at=NULL, last_error=NULL, last_status_code=NULL,"
        " flow_failures=0, retry_group=NULL, updated_at=? WHERE inbox_id=? AND destination=?"
        " RETURNING generation",
        (bump, now, bump, bump, now, inbox_id, destination),
    ).fetchone()
    return Resent(destination=destination, action="resend" if bump else "replay", generation=generation)


class Resumed(BaseModel):
    destination: str
    was_paused: bool
    was_disabled: str | None
    """The 410's reason if the destination had been disabled; resume enables it again."""
    dead: int
    """Its dead letters (e.g. those the 410 made): `hookhub replay` puts them back."""


def pause(
    conn: Connection,
    destination: str,
    now: float,
    reason: str = "",
    configured: Collection[str] | None = None,
) -> bool:
    """Hold a destination's deliveries (True if it was not paused already)."""
    _known(destination, configured, "destination")
    with transaction(conn):
        added = conn.execute(
            "INSERT INTO paused_destinations(destination, since, reason) VALUES (?,?,?)"
            " ON CONFLICT(destination) DO NOTHING",
            (destination, now, reason or "paused by an admin"),
        ).rowcount
    return bool(added)


def resume(conn: Connection, destination: str, configured: Collection[str] | None = None) -> Resumed:
    """Let a paused destination's deliveries go, and enable one a 410 disabled."""
    _known(destination, configured, "destination")
    with transaction(conn):
        paused = conn.execute("DELETE FROM paused_destinations WHERE destination=?", (destination,)).rowcount
        disabled = conn.execute(
            "DELETE FROM disabled_destinations WHERE destination=? RETURNING reason", (destination,)
        ).fetchone()
        (dead,) = conn.execute(
            "SELECT count(*) FROM deliveries WHERE destination=? AND status='dead'", (destination,)
        ).fetchone()
    return Resumed(
        destination=destination,
        was_paused=bool(paused),
        was_disabled=(disabled[0] or "disabled") if disabled else None,
        dead=dead,
    )


def paused(conn: Connection) -> list[tuple[str, float, str]]:
    """(destination, since, reason) of the paused destinations."""
    rows = conn.execute("SELECT destination, since, reason FROM paused_destinations ORDER BY destination")
    return [(name, since or 0.0, reason or "") for name, since, reason in rows]
