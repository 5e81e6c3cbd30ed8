"""`hookhub migrate` and `hookhub migrate --from-sqlite`: real SQLite spools, real PostgreSQL schemas.

The spool is written by the real writer and ledger functions (received, claimed, routed,
delivered, retrying, dead, in flight, paused, disabled, alerts owed), copied, and compared
table by table, row by row; claims arrive pending, leases and the SQLite file's own meta
rows stay behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.cli import main
from hub.spool import terms
from hub.spool.ids import new_id
from hub.spool.inbox_rows import row as encode_row
from hub.spool.intake import COLUMNS, open_intake
from hub.spool.schema import SCHEMA_VERSION, VERSION_KEY, connect
from hub.spool.writer import SpoolRecord, SpoolWriter
from hub.store.copy_sqlite import copy_spool
from hub.store.postgres.connection import PostgresConnection
from hub.store.postgres.schema import LATEST, migrate
from tests.migrate_spool import NOW, assert_copied, build_spool
from tests.postgres import scratch_schema


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with scratch_schema(request.node.name) as url:
        yield url


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    build_spool(tmp_path / "old-hub")
    return tmp_path / "old-hub"


def test_from_sqlite_copies_every_table_row_for_row_and_a_second_run_adds_nothing(
    data_dir: Path, pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKHUB_STORE", pg_url)
    started = time.time()
    assert main(["migrate", "--from-sqlite", str(data_dir)]) == 0
    out = capsys.readouterr().out
    sizes = assert_copied(data_dir / "spool.db", pg_url, (started, time.time()))
    assert sizes == {
        "meta": 1,  # retention's purge count; not the probe, the terms mark, the schema version
        "inbox": 8,
        "deliveries": 8,
        "attempts": 7,
        "disabled_destinations": 1,
        "paused_destinations": 1,
        "delivery_counters": sizes["delivery_counters"],
        "submission_terms": sizes["submission_terms"],
        "alert_state": 1,
        "alert_watermarks": 1,
        "alert_outbox": 2,
        "reconcile_state": 1,
    }
    assert sizes["delivery_counters"] > 0 and sizes["submission_terms"] > 0
    assert "1 submission(s) claimed and 1 delivery(ies) in flight" in out
    assert "hookhub serve --no-dispatch" in out and "HOOKHUB_STORE=" in out

    target = PostgresConnection.open(pg_url)
    try:
        states = dict(target.execute("SELECT state, count(*) FROM inbox GROUP BY state").fetchall())
        assert states["pending"] == 3 and states["skipped"] == 1 and "claimed" not in states
        statuses = dict(target.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())
        assert statuses == {"delivered": 3, "retrying": 2, "dead": 2, "pending": 1}
        # The next alert takes an id SQLite never gave out (3 were, the third then deleted).
        (new_id_,) = target.execute(
            "INSERT INTO alert_outbox (rule, key, destination, alert, created_at, next_attempt_at)"
            " VALUES ('r', 'k', 'd', '{}', 0, 0) RETURNING id"
        ).fetchone()
        assert new_id_ == 4
        target.execute("DELETE FROM alert_outbox WHERE id = 4")
    finally:
        target.close()

    assert main(["migrate", "--from-sqlite", str(data_dir)]) == 0
    again = capsys.readouterr().out
    for table, size in sizes.items():
        assert f"{size:>12,} {size:>12,} {0:>12,}" in next(
            line for line in again.splitlines() if line.startswith(table + " ")
        )
    assert assert_copied(data_dir / "spool.db", pg_url, (started, time.time())) == sizes


class Interrupted(Exception):
    pass


def test_an_interrupted_copy_is_finished_by_the_next_run_without_duplicates(
    data_dir: Path, pg_url: str
) -> None:
    target = PostgresConnection.open(pg_url)
    source = connect(data_dir / "spool.db")
    chunks: list[str] = []

    def stop_in_deliveries(table: str, done: int, total: int) -> None:
        chunks.append(table)
        if table == "deliveries" and done >= 4:
            raise Interrupted

    try:
        migrate(target)
        with pytest.raises(Interrupted):
            copy_spool(source, target, NOW + 100, stop_in_deliveries, chunk_rows=3)
        assert chunks.count("inbox") == 3  # 8 rows in chunks of 3: one chunk in memory at a time
        partial = target.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        assert 0 < partial < 8
        report = copy_spool(source, target, NOW + 100, None, chunk_rows=3)
    finally:
        source.close()
        target.close()
    assert report.mismatched == []
    copied = {count.table: count.copied for count in report.tables}
    assert copied["inbox"] == 0 and copied["deliveries"] == 8 - partial and copied["attempts"] == 7
    assert_copied(data_dir / "spool.db", pg_url, (NOW + 100, NOW + 100))


def test_refused_while_a_live_hub_holds_the_data_dir(
    data_dir: Path, pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from hub.spool.lock import DataDirLock;"
            " DataDirLock(Path(sys.argv[1])).acquire(8123); print('held', flush=True); sys.stdin.read()",
            str(data_dir),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        monkeypatch.setenv("HOOKHUB_STORE", pg_url)
        assert main(["migrate", "--from-sqlite", str(data_dir)]) == 1
        err = capsys.readouterr().err
        assert f"another hub (pid {holder.pid}, port 8123)" in err and "must be stopped" in err
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    target = PostgresConnection.open(pg_url)
    try:  # refused before anything was created or copied
        assert target.execute("SELECT to_regclass('inbox') IS NULL").fetchone()[0]
    finally:
        target.close()
    assert main(["migrate", "--from-sqlite", str(data_dir)]) == 0  # the hub gone, it goes ahead


def test_webhooks_left_in_the_intake_by_a_hard_stop_are_moved_by_a_start_before_the_copy(
    data_dir: Path, pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    record = SpoolRecord(
        id=new_id(NOW), received_at=NOW, source="contact-form", provider="typeform", event_id="left-over",
        kind="submission", note=None, method="POST", url="http://127.0.0.1/hooks/contact-form",
        headers={"content-type": "application/json"}, body=b"{}",
    )  # fmt: skip
    intake = open_intake(data_dir / "spool.db", "full")
    row = [*encode_row(record), 0, NOW]
    intake.execute(f"INSERT INTO intake ({COLUMNS}) VALUES ({','.join('?' * len(row))})", row)
    intake.close()
    monkeypatch.setenv("HOOKHUB_STORE", pg_url)
    assert main(["migrate", "--from-sqlite", str(data_dir)]) == 1
    assert "intake.db still holds 1 webhook(s)" in capsys.readouterr().err
    writer = SpoolWriter(data_dir / "spool.db")  # what `hookhub serve` starts and stops
    writer.start()
    writer.stop()
    assert main(["migrate", "--from-sqlite", str(data_dir)]) == 0
    target = PostgresConnection.open(pg_url)
    try:
        assert target.execute("SELECT count(*) FROM inbox WHERE id = ?", (record.id,)).fetchone()[0] == 1
    finally:
        target.close()


def test_from_sqlite_refuses_a_sqlite_target_and_a_dir_without_spool(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKHUB_STORE", "sqlite")
    assert main(["migrate", "--from-sqlite", str(data_dir), "--data-dir", str(tmp_path / "new")]) == 1
    assert "copies into PostgreSQL, but the configured store is SQLite" in capsys.readouterr().err
    monkeypatch.setenv("HOOKHUB_STORE", "postgresql://127.0.0.1:1/none")
    assert main(["migrate", "--from-sqlite", str(tmp_path / "empty")]) == 1
    assert "no spool at" in capsys.readouterr().err


def test_counts_that_differ_exit_non_zero(
    data_dir: Path, pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver already ran on the target: its row is kept, and the operator is told."""
    target = PostgresConnection.open(pg_url)
    try:
        migrate(target)
        target.execute(
            "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body)"
            " VALUES ('already-there', 1.0, 'contact-form', 'typeform', 'ev-new', 'submission', ?)",
            (b"{}",),
        )
    finally:
        target.close()
    monkeypatch.setenv("HOOKHUB_STORE", pg_url)
    assert main(["migrate", "--from-sqlite", str(data_dir)]) == 1
    captured = capsys.readouterr()
    assert "counts differ for inbox" in captured.err and "DIFFERS" in captured.out


def _hookhub(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "hub.cli", *argv]
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_migrate_creates_a_postgres_schema_then_finds_it_up_to_date_without_showing_the_password(
    pg_url: str, tmp_path: Path
) -> None:
    with_password = pg_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret-pw@")
    assert with_password != pg_url
    first = _hookhub("migrate", "--data-dir", str(tmp_path), env={"HOOKHUB_STORE": with_password})
    assert first.returncode == 0, first.stderr
    assert f"schema version none -> {LATEST}" in first.stdout and "(PostgreSQL)" in first.stdout
    second = _hookhub("migrate", "--data-dir", str(tmp_path), env={"HOOKHUB_STORE": with_password})
    assert second.returncode == 0, second.stderr
    assert f"schema version {LATEST}: up to date" in second.stdout
    assert "s3cret-pw" not in first.stdout + first.stderr + second.stdout + second.stderr
    assert not (tmp_path / "spool.db").exists()


def test_a_newer_postgres_schema_is_refused(pg_url: str, tmp_path: Path) -> None:
    conn = PostgresConnection.open(pg_url)
    try:
        migrate(conn)
        conn.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 0)", (LATEST + 1,))
    finally:
        conn.close()
    result = _hookhub("migrate", "--data-dir", str(tmp_path), env={"HOOKHUB_STORE": pg_url})
    assert result.returncode == 1
    assert f"schema version {LATEST + 1}, newer than this hookhub knows ({LATEST})" in result.stderr


def test_sqlite_migrate_records_the_version_and_refuses_a_newer_spool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOKHUB_STORE", raising=False)
    config = tmp_path / "connectors.yaml"
    config.write_text("store: sqlite\n")
    args = ["migrate", "--config", str(config), "--data-dir", str(tmp_path / "d")]
    assert main(args) == 0
    assert f"schema version none -> {SCHEMA_VERSION}" in capsys.readouterr().out
    assert main(args) == 0
    assert f"schema version {SCHEMA_VERSION}: up to date" in capsys.readouterr().out

    conn = connect(tmp_path / "d" / "spool.db")
    try:  # a spool from before versions were recorded is brought up to date
        conn.execute("DELETE FROM meta WHERE key=?", (VERSION_KEY,))
    finally:
        conn.close()
    assert main(args) == 0
    assert f"schema version none -> {SCHEMA_VERSION}" in capsys.readouterr().out

    conn = connect(tmp_path / "d" / "spool.db")
    try:
        conn.execute("UPDATE meta SET value=? WHERE key=?", (str(SCHEMA_VERSION + 1), VERSION_KEY))
    finally:
        conn.close()
    assert main(args) == 1
    assert f"newer than this hookhub knows ({SCHEMA_VERSION})" in capsys.readouterr().err


def test_search_terms_still_to_fill_are_filled_before_the_copy(
    data_dir: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spool upgraded from before `submission_terms` fills them in a thread beside a serving hub;
    migrate waits for that thread instead of copying half a search index."""
    conn = connect(data_dir / "spool.db")
    try:
        expected = conn.execute("SELECT count(*) FROM submission_terms").fetchone()[0]
        conn.execute("DROP TABLE submission_terms")  # as written before the table existed
        conn.execute("DELETE FROM meta WHERE key=?", (terms.BACKFILL_KEY,))
    finally:
        conn.close()
    monkeypatch.setattr(terms, "INLINE_FILL", 0)  # even these few go to the thread,
    monkeypatch.setattr(terms, "_BACKFILL_BATCH", 1)  # a commit each: a copy not waiting would see few
    monkeypatch.setenv("HOOKHUB_STORE", pg_url)
    started = time.time()
    assert main(["migrate", "--from-sqlite", str(data_dir)]) == 0
    assert (
        assert_copied(data_dir / "spool.db", pg_url, (started, time.time()))["submission_terms"] == expected
    )
