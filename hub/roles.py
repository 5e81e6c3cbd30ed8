"""Roles that one process of a cluster holds at a time: the periodic upkeep (`maintenance`).

Source upkeep (watch renewals), retention and the alert evaluator with its outbox must run
once per cluster, not once per worker: each would renew a watch, purge rows or send an alert
as many times as there are workers. A role is a lease in `role_leases`, taken when free or
expired, renewed with the dispatcher's own lease and given up at a clean stop (the table is
PostgreSQL's migration 2). On SQLite the
one hub of a data dir (hub/spool/lock.py) holds every role without asking.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from hub.spool.transactions import transaction
from hub.store import Connection, StoreError

log = logging.getLogger("hookhub.dispatch")

MAINTENANCE = "maintenance"


def take(conn: Connection, name: str, holder: str, now: float, ttl: float) -> bool:
    """Hold `name` until `now + ttl` if it is free, expired or already `holder`'s; whether it is."""
    with transaction(conn):
        row = conn.execute(
            "INSERT INTO role_leases (name, holder, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
            " WHERE role_leases.expires_at < ? OR role_leases.holder = excluded.holder"
            " RETURNING holder",
            (name, holder, now + ttl, now),
        ).fetchone()
    return row is not None


def give_up(conn: Connection, name: str, holder: str) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM role_leases WHERE name = ? AND holder = ?", (name, holder))


def holder_of(conn: Connection, name: str, now: float) -> str | None:
    """Who holds `name` now (None: nobody, or its lease expired)."""
    row = conn.execute(
        "SELECT holder FROM role_leases WHERE name = ? AND expires_at >= ?", (name, now)
    ).fetchone()
    return None if row is None else str(row[0])


@dataclass
class MaintenanceRole:
    """Whether this process runs the cluster's upkeep; read by the alert evaluator and the
    dispatcher's upkeep, kept by the dispatcher (`keep`) on the lease's rhythm."""

    held: bool = False
    shared: bool = True
    """False on SQLite: the hub of the data dir holds the role without a lease."""
    holder: str | None = field(default=None, init=False)

    def keep(self, conn: Connection, owner: str, now: float, ttl: float) -> None:
        if not self.shared:
            self.held = True
            return
        holder = f"{MAINTENANCE}:{owner}"
        try:
            held = take(conn, MAINTENANCE, holder, now, ttl)
        except StoreError as error:  # it lapses by itself; another worker may take it over
            log.warning("maintenance lease not renewed", extra={"event": "role_error", "error": str(error)})
            held = False
        if held != self.held:
            log.info(
                "runs the cluster's upkeep" if held else "no longer runs the cluster's upkeep",
                extra={"event": "role_taken" if held else "role_lost", "role": MAINTENANCE, "owner": owner},
            )
        self.held, self.holder = held, holder if held else None

    def release(self, conn: Connection) -> None:
        if self.shared and self.holder is not None:
            try:
                give_up(conn, MAINTENANCE, self.holder)
            except StoreError as error:  # it expires by itself
                log.warning(
                    "maintenance lease not given up", extra={"event": "role_error", "error": str(error)}
                )
        self.held, self.holder = not self.shared, None
