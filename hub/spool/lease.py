"""Leases: which dispatchers and workers are alive, so that only a gone owner's claims are put back.

Each owner (a hub's dispatcher, a worker process) holds a lease (owner id, pid, host, port,
expiry) and renews it while it runs; every claim it makes is tagged with its owner id. A lease
that expired, or whose process is gone from this host, is dropped, and the claims whose owner
holds no lease go back to the queue (`reap`, safe to run every few seconds from every worker;
`recover` at start also puts back claims that name no owner at all). One hub per data dir is
enforced by `hub/spool/lock.py`; the lease is the rule that also holds for several workers
sharing one store (the PostgreSQL spool), where no file lock can tell who is alive.

An owner that stalls longer than its lease (a paused VM, a SIGSTOP, a long GC) finds out at its
next renewal (`renew` returns False); what it records meanwhile about the claims it lost is
refused (`owner` in hub/spool/delivery_outcomes.py and hub/spool/routing_store.py).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from hub.spool import claiming
from hub.spool.transactions import transaction
from hub.store import Connection

log = logging.getLogger("hookhub.lease")

LEASE_SECONDS = 60.0
"""How long a lease lasts without renewal: a frozen owner's claims wait at most this long."""
RENEW_SECONDS = 10.0
"""How often a running dispatcher renews its lease (well inside LEASE_SECONDS; see renew_every)."""

Alive = Callable[[int, str], bool]
"""Whether the process (pid, host) of a lease runs; injected so tests need no real processes."""


@dataclass(frozen=True)
class Owner:
    id: str
    pid: int
    host: str
    port: int | None = None


def this_process(owner_id: str, port: int | None = None) -> Owner:
    return Owner(owner_id, os.getpid(), socket.gethostname(), port)


def renew_every(ttl: float = LEASE_SECONDS) -> float:
    """How often to renew a lease of `ttl` seconds: a third of it, so two renewals can fail
    (a busy database, a slow turn) before the lease runs out."""
    return ttl / 3


def process_alive(pid: int, host: str) -> bool:
    """Whether the lease holder's process runs; on another host only its expiry can tell."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def hold(conn: Connection, owner: Owner, now: float, ttl: float = LEASE_SECONDS) -> None:
    """Take (or take again) `owner`'s lease until `now + ttl`."""
    with transaction(conn):
        conn.execute(
            "INSERT INTO leases (owner, pid, host, port, started_at, expires_at) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT(owner) DO UPDATE SET expires_at=excluded.expires_at, pid=excluded.pid,"
            " host=excluded.host, port=excluded.port",
            (owner.id, owner.pid, owner.host, owner.port, now, now + ttl),
        )


def renew(conn: Connection, owner_id: str, now: float, ttl: float = LEASE_SECONDS) -> bool:
    """Extend the lease; False if it was dropped meanwhile (its claims may have been put back:
    the owner should take a new lease and treat what it held as lost)."""
    with transaction(conn):
        renewed = conn.execute("UPDATE leases SET expires_at=? WHERE owner=?", (now + ttl, owner_id)).rowcount
    return renewed == 1


def give_up(conn: Connection, owner_id: str) -> None:
    """End the lease at a clean stop, after the owner gave its claims back."""
    with transaction(conn):
        conn.execute("DELETE FROM leases WHERE owner=?", (owner_id,))


def drop_dead(conn: Connection, now: float, alive: Alive = process_alive) -> list[str]:
    """Drop the leases that expired or whose process is gone; returns their owner ids."""
    with transaction(conn):
        return _drop_dead(conn, now, alive)


def _drop_dead(conn: Connection, now: float, alive: Alive) -> list[str]:
    # Each DELETE repeats its reason: on PostgreSQL an owner may renew between the read and the
    # delete, and a lease renewed meanwhile must stay.
    expired = [r[0] for r in conn.execute("DELETE FROM leases WHERE expires_at <= ? RETURNING owner", (now,))]
    gone = [
        (owner, pid)
        for owner, pid, host in conn.execute("SELECT owner, pid, host FROM leases").fetchall()
        if not alive(pid, host)
    ]
    for owner, pid in gone:
        if conn.execute(
            "DELETE FROM leases WHERE owner=? AND pid=? RETURNING owner", (owner, pid)
        ).fetchone():
            expired.append(owner)
    return sorted(expired)


def recover(conn: Connection, now: float, alive: Alive = process_alive) -> tuple[int, int]:
    """At an owner's start: put back the claims of owners that are gone, and claims that name no
    owner (a spool from before leases); (submissions, deliveries)."""
    drop_dead(conn, now, alive)
    return claiming.recover(conn, now)


def reap(conn: Connection, now: float, alive: Alive = process_alive) -> tuple[int, int]:
    """Every few seconds from every worker: drop the leases that expired or whose process is
    gone, and put back the claims that name an owner without a lease; (submissions, deliveries).

    A live owner's claims are never touched, however many workers reap at once.
    """
    dropped = drop_dead(conn, now, alive)
    counts = claiming.reap(conn, now)
    _log_put_back(dropped, counts)
    return counts


def _log_put_back(dropped: list[str], counts: tuple[int, int]) -> None:
    if dropped or any(counts):
        log.warning(
            "claims of gone owners put back",
            extra={
                "event": "claims_reaped",
                "owners": dropped,
                "submissions": counts[0],
                "deliveries": counts[1],
            },
        )
