"""Which store a hub uses: the SQLite file in its data dir, or a PostgreSQL database.

Chosen by `store:` in connectors.yaml or the HOOKHUB_STORE environment variable (which wins,
so one config file serves a laptop and a cluster). The URL may hold a password: it is never
logged, shown or passed to Prefect; `key` is the form that may be (no credentials).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from hub.store.connection import Connection, Dialect

ENV = "HOOKHUB_STORE"
SPOOL_FILE = "spool.db"
POSTGRES_SCHEMES = ("postgresql", "postgres")


class BadStoreSetting(ValueError):
    """`store:` or HOOKHUB_STORE names something hookhub cannot use."""


class Store(Protocol):
    @property
    def dialect(self) -> Dialect: ...

    @property
    def key(self) -> str:
        """Names the store in flow parameters, logs and `status`; holds no credentials."""
        ...

    @property
    def path(self) -> Path | None:
        """The SQLite file, whose size the metrics report; None for PostgreSQL."""
        ...

    def prepare(self) -> None:
        """Create or upgrade the schema (idempotent; safe from several processes at once)."""

    def connect(self, durability: Literal["full", "normal"] = "full", dedicated: bool = False) -> Connection:
        """A connection; `dedicated`: one of its own, never pooled, for a long-lived user that
        changes its session (the store pacer) or must fail at once when the server is away."""
        ...


@dataclass(frozen=True)
class SqliteStore:
    """The embedded default: one file, one hub (hub/spool/lock.py keeps a second one out)."""

    file: Path
    dialect: Dialect = field(default="sqlite", init=False)

    @property
    def key(self) -> str:
        return str(self.file)

    @property
    def path(self) -> Path | None:
        return self.file

    def prepare(self) -> None:
        from hub.spool.schema import ensure_schema

        ensure_schema(self.file)

    def connect(self, durability: Literal["full", "normal"] = "full", dedicated: bool = False) -> Connection:
        from hub.spool.schema import connect

        return connect(self.file, durability)


@dataclass(frozen=True)
class PostgresStore:
    """Shared by every receiver and worker of a cluster; each process opens its own connections."""

    url: str = field(repr=False)
    dialect: Dialect = field(default="postgresql", init=False)

    @property
    def key(self) -> str:
        return redact(self.url)

    @property
    def path(self) -> Path | None:
        return None

    def prepare(self) -> None:
        from hub.store.postgres.connection import PostgresConnection
        from hub.store.postgres.schema import migrate

        # Its own connection, not the pool's: at a start an unreachable server fails at once.
        conn = PostgresConnection.open(self.url)
        try:
            migrate(conn)
        finally:
            conn.close()

    def connect(self, durability: Literal["full", "normal"] = "full", dedicated: bool = False) -> Connection:
        # Durability is the server's (synchronous_commit); every commit waits for its WAL flush.
        from hub.store.postgres.connection import PostgresConnection

        return PostgresConnection.open(self.url) if dedicated else PostgresConnection.borrow(self.url)


def redact(url: str) -> str:
    """The URL without user name and password: `postgresql://host:5432/db?options=...`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    query = "&".join(
        pair for pair in parts.query.split("&") if pair and pair.split("=", 1)[0] not in _SECRET_PARAMETERS
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


_SECRET_PARAMETERS = frozenset({"password", "sslpassword", "passfile", "sslkey"})


def store_from_setting(setting: str | None, data_dir: Path, environ: dict[str, str] | None = None) -> Store:
    """The store HOOKHUB_STORE (else the config's `store:`) names; SQLite in `data_dir` by default."""
    env = os.environ if environ is None else environ
    chosen = env.get(ENV) or setting
    if not chosen or chosen == "sqlite":
        return SqliteStore(data_dir / SPOOL_FILE)
    scheme = urlsplit(chosen).scheme
    if scheme in POSTGRES_SCHEMES:
        return PostgresStore(chosen)
    if scheme == "sqlite":
        return SqliteStore(Path(chosen.split("://", 1)[1]) if "://" in chosen else data_dir / SPOOL_FILE)
    raise BadStoreSetting(
        f"store {redact(chosen) if '://' in chosen else chosen!r}: expected 'sqlite' (the default, a file in"
        " the data dir) or a PostgreSQL URL such as postgresql://hookhub@db.internal:5432/hookhub"
    )
