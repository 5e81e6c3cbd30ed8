"""The connection every ledger function takes, whichever engine is behind it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol

import psycopg

Dialect = Literal["sqlite", "postgresql"]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What sqlite3.Connection offers and hub/store/postgres/connection.py gives PostgreSQL.

    Statements use qmark placeholders (`?`) on both engines. Connections are in autocommit
    mode: a lone statement is its own transaction, and hub/spool/transactions.py opens the
    longer ones explicitly.
    """

    @property
    def dialect(self) -> Dialect: ...

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    def close(self) -> None: ...


StoreError: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
"""Catch these where a database error must be answered (503, tried again next turn), not raised."""

StoreUnavailable: tuple[type[Exception], ...] = (sqlite3.OperationalError, psycopg.OperationalError)
"""The database itself failed (locked, disk full, connection lost), as opposed to one row's values."""
