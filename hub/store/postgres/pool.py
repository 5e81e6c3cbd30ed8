"""One pool of PostgreSQL connections per process and store.

The flows open a connection per task (routing a batch, recording a chunk, reporting it): on
SQLite that is opening a file, on PostgreSQL a new server backend each time (a fork and an
authentication, several milliseconds). The pool keeps them open across tasks. Connections
come back with their session settings reset (`RESET ALL`), so one user's setting (the store
pacer's `synchronous_commit = off`) never reaches the ledger's next writer.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

MAX_CONNECTIONS = 32
"""Per process and store: the writer, the dispatcher, the lease keeper, the pacer's threads and
the flows' tasks in flight; PostgreSQL's default max_connections (100) fits a few processes."""
WAIT_SECONDS = 10.0
"""How long a task waits for a connection before it fails as the store being unavailable."""

_pools: dict[tuple[int, str], ConnectionPool[psycopg.Connection[Any]]] = {}
_lock = threading.Lock()


def _reset(conn: psycopg.Connection[Any]) -> None:
    conn.execute("RESET ALL")


def pool_for(url: str, application_name: str) -> ConnectionPool[psycopg.Connection[Any]]:
    # Keyed by pid too: a process forked from a hub must not use its parent's sockets.
    key = (os.getpid(), url)
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            pool = ConnectionPool(
                url,
                kwargs={
                    "autocommit": True,
                    "application_name": application_name,
                    "cursor_factory": psycopg.RawCursor,
                },
                min_size=1,
                max_size=MAX_CONNECTIONS,
                timeout=WAIT_SECONDS,
                check=ConnectionPool.check_connection,  # a server restart costs no failed task
                reset=_reset,
                name=f"hookhub-{application_name}",
                open=True,
            )
            _pools[key] = pool
    return pool


def close_pools(url: str | None = None) -> None:
    """Close this process's pools (of `url` only, if given): at a stop, or when a test's
    database goes away, so that no pool keeps reconnecting to it."""
    with _lock:
        mine = [key for key in _pools if key[0] == os.getpid() and url in (None, key[1])]
        pools = [_pools.pop(key) for key in mine]
    for pool in pools:
        pool.close()
