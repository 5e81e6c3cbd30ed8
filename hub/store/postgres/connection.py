"""A psycopg 3 connection that takes the ledger's qmark (`?`) statements.

The ledger's SQL is written once for both engines; the one spelling PostgreSQL needs changed
is the placeholder. psycopg has no qmark style, so `?` becomes PostgreSQL's own `$1..$n`,
once per statement text (cached), and the statements run on psycopg's RawCursor: with `%s`,
psycopg parses a statement over 4,096 characters again at every execute (~40 us of client
CPU per row for the writer's 128-row INSERTs; 6 us this way, bench/store_writer.py). The
ledger's statements carry no `?` inside string literals (the contract tests run them all).

psycopg 3 rather than asyncpg: the spool writer is a plain thread, and so are the ledger's
callers (`asyncio.to_thread`); psycopg's synchronous connection drops in where sqlite3's is,
while asyncpg would need an event loop in each of those threads. bench/store_writer.py
measures both in the writer's own statement shape.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg_pool import ConnectionPool

from hub.store.connection import Cursor, Dialect
from hub.store.postgres.pool import pool_for

log = logging.getLogger("hookhub.store")


@functools.lru_cache(maxsize=1024)
def to_numbered(sql: str) -> str:
    pieces = sql.split("?")
    return pieces[0] + "".join(f"${n}{piece}" for n, piece in enumerate(pieces[1:], start=1))


class _JsonAsText(Loader):
    """Submissions are stored as `json` (so `->>` works on both engines) but read as the text
    written, which the ledger parses itself: key order and numbers stay exactly as stored."""

    def load(self, data: Any) -> str:
        return bytes(data).decode("utf-8")


class _NumericAsNumber(Loader):
    """sum() over integers is `numeric` in PostgreSQL; the ledger wants int or float, as SQLite gives."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode("ascii")
        return float(text) if any(c in text for c in ".eEN") else int(text)


def process_name(role: str = "hookhub") -> str:
    """The `application_name` of this process's connections: pg_stat_activity then shows which
    host and pid each backend serves (PostgreSQL keeps the first 63 bytes)."""
    return f"{role} {socket.gethostname()} pid {os.getpid()}"[:63]


def _adopt(raw: psycopg.Connection[Any]) -> None:
    raw.adapters.register_loader("json", _JsonAsText)
    raw.adapters.register_loader("numeric", _NumericAsNumber)


class PostgresConnection:
    """What the ledger needs of a connection, in autocommit mode as the SQLite one is."""

    dialect: Dialect = "postgresql"

    def __init__(
        self,
        raw: psycopg.Connection[Any],
        pool: ConnectionPool[Any] | None = None,
        reconnect: Callable[[], psycopg.Connection[Any]] | None = None,
    ) -> None:
        self.raw = raw
        self._pool = pool
        self._reconnect = reconnect
        self._in_transaction = False
        _adopt(raw)

    @classmethod
    def open(cls, url: str, application_name: str | None = None) -> PostgresConnection:
        name = application_name or process_name()

        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(
                url, autocommit=True, application_name=name, cursor_factory=psycopg.RawCursor
            )

        return cls(connect(), reconnect=connect)

    @classmethod
    def borrow(cls, url: str, application_name: str | None = None) -> PostgresConnection:
        """A connection from this process's pool for `url`; `close()` gives it back."""
        pool = pool_for(url, application_name or process_name())
        return cls(pool.getconn(), pool)

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        self._ready(sql)
        if not parameters:
            return self.raw.execute(sql)
        return self.raw.execute(to_numbered(sql), parameters)

    def _ready(self, sql: str) -> None:
        """Connect again before `sql` if the server dropped this connection (a restart, a failover,
        an idle timeout). Holders keep a connection for their whole life (the spool writer, the
        dispatcher), and without this a receiver answered 503 to every request after one
        restart of the database (tests/test_store_roles.py cuts every connection of a running
        receiver and worker).

        Never inside a transaction: the rest of it would run on the new connection, committed
        one statement at a time. Its next statement fails on the dead connection instead, and
        the caller's ROLLBACK, which ends it, connects again.
        """
        if sql.startswith(("COMMIT", "ROLLBACK")):
            ending, self._in_transaction = self._in_transaction, False
            if ending and sql.startswith("ROLLBACK") and self.raw.broken:
                self._replace()  # nothing is left to roll back on a connection that is gone
            return
        if self.raw.broken and not self._in_transaction:
            self._replace()
        if sql.startswith("BEGIN"):
            self._in_transaction = True

    def _replace(self) -> None:
        """A new connection in place of the broken one; if none can be had, the broken one stays
        and the next statement tries again (a server that is down fails at once)."""
        broken = self.raw
        if self._pool is not None:
            self.raw = self._pool.getconn()
            self._pool.putconn(broken)  # the pool discards a broken connection
        elif self._reconnect is not None:
            self.raw = self._reconnect()
            broken.close()
        _adopt(self.raw)
        log.info("reconnected to PostgreSQL", extra={"event": "store_reconnected"})

    def execute_unprepared(self, sql: str, parameters: Sequence[Any]) -> Cursor:
        """`execute`, planned for these parameters each time (a statement over arrays whose size
        varies: a generic plan would guess their length)."""
        self._ready(sql)
        return self.raw.execute(to_numbered(sql), parameters, prepare=False)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        self._ready(sql)
        cursor = self.raw.cursor()
        rows = list(parameters)
        if rows:
            cursor.executemany(to_numbered(sql), rows)
        return cursor

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def close(self) -> None:
        if self._pool is None:
            self.raw.close()
        elif not self.raw.closed:
            pool, self._pool = self._pool, None  # a second close() must not return it twice
            pool.putconn(self.raw)
