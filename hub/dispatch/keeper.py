"""The dispatcher's lease, kept by a thread of its own on a connection of its own.

Every third of a lease it renews the lease, drops the leases of owners that are gone (expired,
or a process of this host that died), puts their claims back (`claiming.reap`) and keeps or
takes the cluster's maintenance role (hub/roles.py). A thread rather than the dispatcher's
event loop: that loop is blocked for seconds while Prefect's ephemeral server starts and by a
flow run's CPU work, and a short lease (`--lease 3`) would lapse meanwhile. A process frozen
as a whole (SIGSTOP, a VM paused) does lose it; at its next turn the keeper finds its lease
gone, takes a new one under a new owner id and tells the dispatcher (`on_lost`), which then
abandons the runs under way: the ledger refuses their late writes, which name the old owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from hub.roles import MaintenanceRole
from hub.spool import claiming, lease
from hub.store import Connection, StoreError
from hub.store.location import Store

log = logging.getLogger("hookhub.dispatch")

RETRY_SECONDS = 1.0
"""After a failed renewal (the store briefly away), the next try comes this soon."""


@dataclass
class LeaseKeeper:
    store: Store
    owner: str
    """This dispatcher's owner id; replaced (in the keeper's thread) when the lease was lost."""
    port: int | None
    clock: Callable[[], float]
    lease_seconds: float
    role: MaintenanceRole
    new_owner: Callable[[], str]
    on_lost: Callable[[str, str], None]
    """Called from the keeper's thread with (lost owner, new owner) once the new lease is held."""
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hookhub-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _run(self) -> None:
        conn: Connection | None = None
        pause = self.lease_seconds / 3
        while not self._stop.wait(pause):
            try:
                if conn is None:  # its own: with the server away it fails at once, not after a pool's wait
                    conn = self.store.connect(dedicated=True)
                self.turn(conn)
                pause = self.lease_seconds / 3
            except StoreError as error:  # tried again soon; a lease outlasts a few failures
                log.warning("lease not renewed", extra={"event": "lease_renewal_failed", "error": str(error)})
                pause = min(RETRY_SECONDS, self.lease_seconds / 3)
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is not None:
            conn.close()

    def turn(self, conn: Connection) -> None:
        """Renew (or, if it was dropped, replace) the lease; reap gone owners; keep the role."""
        if not lease.renew(conn, self.owner, self.clock(), self.lease_seconds):
            lost, self.owner = self.owner, self.new_owner()
            lease.hold(conn, lease.this_process(self.owner, self.port), self.clock(), self.lease_seconds)
            self.on_lost(lost, self.owner)
        lease.drop_dead(conn, self.clock())
        inbox, deliveries = claiming.reap(conn, self.clock())
        if inbox or deliveries:
            log.info(
                "put back the claims of a gone worker",
                extra={"event": "reaped", "submissions": inbox, "deliveries": deliveries},
            )
        self.role.keep(conn, self.owner, self.clock(), self.lease_seconds)


def call_soon(loop: asyncio.AbstractEventLoop, call: Callable[..., None], *args: object) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: the dispatcher stopped meanwhile
        loop.call_soon_threadsafe(call, *args)


def new_owner() -> str:
    """`<host>-<pid>-<random>`: unique across a cluster's machines and restarts, and says where it runs."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
