"""The PostgreSQL server tests use: HOOKHUB_TEST_POSTGRES_URL, else the machine's local one.

Each test gets a schema of its own (named after it, made unique) on that server, reached
through a URL whose search_path points at it, and the schema is dropped afterwards. Where no
server answers, the tests that need one are skipped with a message saying how to run them.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
import pytest

from hub.store.postgres.pool import close_pools

URL = os.environ.get("HOOKHUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

HOW_TO_RUN = (
    "no PostgreSQL at {url} ({why}); start one (PostgreSQL 14 or newer, a role allowed to create"
    " schemas) and point HOOKHUB_TEST_POSTGRES_URL at it, e.g."
    " postgresql://postgres@127.0.0.1:5432/test"
)


@functools.cache
def unreachable_reason() -> str | None:
    try:
        with psycopg.connect(URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return HOW_TO_RUN.format(url=URL, why=str(exc).strip().splitlines()[0])
    return None


def require_postgres() -> None:
    reason = unreachable_reason()
    if reason is not None:
        pytest.skip(reason)


def with_search_path(url: str, schema: str) -> str:
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def scratch_schema(label: str = "t") -> Iterator[str]:
    """A new empty schema; yields a URL whose connections use it, then drops it."""
    require_postgres()
    name = f"hookhub_{''.join(c if c.isalnum() else '_' for c in label.lower())[:30]}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(URL, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
    url = with_search_path(URL, name)
    try:
        yield url
    finally:
        close_pools(url)
        with psycopg.connect(URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
