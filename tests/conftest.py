"""Test session setup: Prefect runs on its own ephemeral server with a throw-away home.

Set before anything imports prefect (it reads its settings once, at import), so tests
never touch the developer's ~/.prefect and every run starts from an empty Prefect DB.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.spool.transactions import open_spool
from hub.store import Connection, PostgresStore, SqliteStore, Store
from tests.postgres import scratch_schema

_PREFECT_HOME = tempfile.mkdtemp(prefix="hookhub-tests-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.pop("PREFECT_API_URL", None)


def pytest_unconfigure(config: object) -> None:
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


@pytest.fixture
def anyio_backend() -> str:
    """`@pytest.mark.anyio` tests run on asyncio only: the hub runs on asyncio (aiohttp)."""
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Store]:
    """An empty, prepared store of each kind: the ledger's contract holds on both engines."""
    if request.param == "sqlite":
        sqlite = SqliteStore(Path(str(tmp_path)) / "spool.db")
        sqlite.prepare()
        yield sqlite
        return
    with scratch_schema(request.node.name) as url:
        postgres = PostgresStore(url)
        postgres.prepare()
        yield postgres


@pytest.fixture
def two(store: Store) -> Iterator[tuple[Connection, Connection]]:
    """Two connections to one `store`, as two workers have (the first prepared the schema)."""
    first = open_spool(store)
    second = store.connect()
    yield first, second
    first.close()
    second.close()
