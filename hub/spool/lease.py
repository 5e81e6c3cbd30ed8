"""Leases: which dispatchers are alive, so that only a gone owner's claims are put back.

Each dispatcher holds a lease (owner id, pid, host, port, expiry) and renews it while it runs;
every claim it makes is tagged with its owner id. At start, leases that expired or whose
process is gone are dropped, and claims whose owner holds no lease go back to the queue
(`claiming.recover`). One hub per data dir is enforced by `hub/spool/lock.py`; the lease is the
rule that also holds for several workers sharing one store (the PostgreSQL spool), where no
file lock can tell who is alive.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from hub.spool import claiming
from hub.spool.transactions import transaction
from hub.store import Connection

LEASE_SECONDS = 60.0
"""How long a lease lasts without renewal: a frozen owner's claims wait at most this long."""
RENEW_SECONDS = 10.0
"""How often a running dispatcher renews its lease."""


@dataclass(frozen=True)
class Owner:
    id: str
    pid: int
    host: str
    port: int | None = None


def this_process(owner_id: str, port: int | None = None) -> Owner:
    return Owner(owner_id, os.getpid(), socket.gethostname(), port)


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
            " ON CONFLICT(owner) DO UPDATE SET expires_at=excluded.expires_at",
            (owner.id, owner.pid, owner.host, owner.port, now, now + ttl),
        )


def renew(conn: Connection, owner_id: str, now: float, ttl: float = LEASE_SECONDS) -> bool:
    """Extend the lease; False if it was dropped meanwhile (its claims may have been put back)."""
    with transaction(conn):
        renewed = conn.execute("UPDATE leases SET expires_at=? WHERE owner=?", (now + ttl, owner_id)).rowcount
    return renewed == 1


def give_up(conn: Connection, owner_id: str) -> None:
    """End the lease at a clean stop, after the owner gave its claims back."""
    with transaction(conn):
        conn.execute("DELETE FROM leases WHERE owner=?", (owner_id,))


def drop_dead(conn: Connection, now: float, alive: Callable[[int, str], bool] = process_alive) -> list[str]:
    """Drop the leases that expired or whose process is gone; returns their owner ids."""
    with transaction(conn):
        rows = conn.execute("SELECT owner, pid, host, expires_at FROM leases").fetchall()
        dead = [owner for owner, pid, host, expires in rows if expires <= now or not alive(pid, host)]
        conn.executemany("DELETE FROM leases WHERE owner=?", [(owner,) for owner in dead])
    return dead


def recover(
    conn: Connection, now: float, alive: Callable[[int, str], bool] = process_alive
) -> tuple[int, int]:
    """Put back the claims of owners that are gone: (submissions, deliveries)."""
    drop_dead(conn, now, alive)
    return claiming.recover(conn, now)
