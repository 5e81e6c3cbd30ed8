"""The store layer itself: choosing a store, PostgreSQL's schema versions, placeholders."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from hub.spool.transactions import open_spool, transaction
from hub.store import PostgresStore, SqliteStore, Store, StoreUnavailable, store_from_setting
from hub.store.location import BadStoreSetting, redact
from hub.store.postgres import schema as pg_schema
from hub.store.postgres.connection import PostgresConnection, to_numbered
from tests.postgres import URL, scratch_schema


def test_the_default_is_the_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    assert store_from_setting(None, tmp_path, environ={}) == SqliteStore(tmp_path / "spool.db")
    assert store_from_setting("sqlite", tmp_path, environ={}) == SqliteStore(tmp_path / "spool.db")


def test_the_environment_wins_over_the_config(tmp_path: Path) -> None:
    chosen = store_from_setting("sqlite", tmp_path, environ={"HOOKHUB_STORE": "postgresql://u:pw@db/hub"})
    assert isinstance(chosen, PostgresStore)
    assert chosen.url == "postgresql://u:pw@db/hub"


def test_the_key_and_repr_hold_no_password(tmp_path: Path) -> None:
    chosen = store_from_setting(
        "postgresql://hub:s3cret@db.internal:5433/hub?password=x&sslmode=require", tmp_path, {}
    )
    assert "s3cret" not in chosen.key and "s3cret" not in repr(chosen) and "password" not in chosen.key
    assert chosen.key == "postgresql://db.internal:5433/hub?sslmode=require"
    assert redact("postgresql://db/hub") == "postgresql://db/hub"


def test_an_unknown_store_is_refused_with_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(BadStoreSetting, match="postgresql://"):
        store_from_setting("mysql://root@db/hub", tmp_path, environ={})


def test_placeholders_become_numbered_and_percent_signs_are_kept() -> None:
    assert to_numbered("SELECT ? WHERE a LIKE '%' || ?") == "SELECT $1 WHERE a LIKE '%' || $2"


def test_a_long_statement_with_percent_signs_runs_on_postgres() -> None:
    with scratch_schema("placeholders") as url:
        conn = PostgresStore(url).connect()
        values = ",".join(["(?)"] * 600)
        rows = conn.execute(f"SELECT count(*) FROM (VALUES {values}) v(x) WHERE x LIKE '%a%'", ["a"] * 600)
        assert rows.fetchone()[0] == 600
        conn.close()


def test_postgres_migrations_run_once_and_record_their_version() -> None:
    with scratch_schema("migrations") as url:
        store = PostgresStore(url)
        conn = store.connect()
        assert pg_schema.current_version(conn) == 0
        assert pg_schema.migrate(conn, now=1.0) == [number for number, _, _ in pg_schema.MIGRATIONS]
        assert pg_schema.migrate(conn, now=2.0) == []
        assert pg_schema.current_version(conn) == pg_schema.LATEST
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?, 'from the future', 3.0)", (pg_schema.LATEST + 1,)
        )
        with pytest.raises(pg_schema.SchemaTooNew, match="upgrade hookhub"):
            pg_schema.migrate(conn)
        conn.close()


def test_a_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    conn = open_spool(store)
    with pytest.raises(RuntimeError), transaction(conn):
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("k", "v"))
        raise RuntimeError("boom")
    assert conn.execute("SELECT count(*) FROM meta WHERE key = ?", ("k",)).fetchone()[0] == 0
    conn.close()


def test_the_admin_commands_reach_the_postgresql_store_named_by_hookhub_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.cli import main

    with scratch_schema("cli") as url:
        store = PostgresStore(url)
        conn = open_spool(store)
        conn.execute(
            "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state, submission)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                "sub-1",
                1.0,
                "contact",
                "typeform",
                "ev-1",
                "submission",
                b'{"email":"ada@example.com"}',
                "done",
                '{"email": "ada@example.com"}',
            ),
        )
        monkeypatch.setenv("HOOKHUB_STORE", url)
        # No SQLite spool in the data dir: the commands must not look for one.
        assert main(["status", "--data-dir", str(tmp_path)]) == 0
        assert "postgresql://" in capsys.readouterr().out
        assert main(["erase", "--email", "ada@example.com", "--data-dir", str(tmp_path)]) == 0
        # The row stays as a tombstone (its id answers "erased"); what it held is gone.
        kept = conn.execute("SELECT body, submission, headers FROM inbox WHERE id = 'sub-1'").fetchone()
        assert kept is not None and b"ada@" not in bytes(kept[0]) and kept[1] is None
        conn.close()
    assert not (tmp_path / "spool.db").exists()


def _cut(conn: PostgresConnection) -> None:
    """End `conn`'s server backend, as a restart of the server does."""
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(URL, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone()[0] is True


@pytest.mark.parametrize("kind", ["dedicated", "pooled"])
def test_a_dropped_connection_is_replaced_at_the_next_statement_but_never_inside_a_transaction(
    kind: str,
) -> None:
    with scratch_schema("reconnect") as url:
        PostgresStore(url).prepare()
        conn = PostgresConnection.open(url) if kind == "dedicated" else PostgresConnection.borrow(url)
        try:
            conn.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
            _cut(conn)
            with pytest.raises(StoreUnavailable):  # the statement that finds the loss fails
                conn.execute("SELECT 1")
            assert conn.execute("SELECT value FROM meta WHERE key = 'a'").fetchone()[0] == "1"

            with pytest.raises(StoreUnavailable), transaction(conn):
                conn.execute("INSERT INTO meta (key, value) VALUES ('b', '2')")
                _cut(conn)
                with pytest.raises(StoreUnavailable):
                    conn.execute("INSERT INTO meta (key, value) VALUES ('c', '3')")
                # Still inside the transaction: not run on a new connection, committed on its own.
                conn.execute("INSERT INTO meta (key, value) VALUES ('d', '4')")
            assert conn.execute("SELECT key FROM meta WHERE key IN ('b', 'c', 'd')").fetchall() == []
        finally:
            conn.close()
