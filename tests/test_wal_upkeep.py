"""hub/spool/wal_upkeep.py on real SQLite files: a WAL that readers never leave is started again.

The situation it is for: some connection is always reading (the delivery process claiming,
the receiver looking up duplicates), so a PASSIVE checkpoint copies every frame but the next
writer appends after them, and the WAL grows for as long as the backlog drains.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from hub.spool.schema import connect
from hub.spool.wal_upkeep import JOURNAL_SIZE_LIMIT, RESTART_FRAMES, RESTART_WAIT_MS, checkpoint


def _spool(tmp_path: Path) -> sqlite3.Connection:
    conn = connect(tmp_path / "spool.db")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # as the receiver's writer: only the test checkpoints
    conn.execute("CREATE TABLE IF NOT EXISTS rows (body BLOB)")
    return conn


def _write(conn: sqlite3.Connection, pages: int) -> None:
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO rows VALUES (?)", [(b"x" * 3000,) for _ in range(pages)])
    conn.execute("COMMIT")


def _frames(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def _reader_on_latest(path: Path) -> sqlite3.Connection:
    """A reader inside a read transaction on the newest snapshot (as claims and dedupe lookups are)."""
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM rows").fetchone()
    return reader


def test_a_passive_checkpoint_alone_lets_the_wal_grow_while_a_reader_is_in_it(tmp_path: Path) -> None:
    # The control: what the mover did before, and why RESTART is needed.
    # Under load some reader that began before the checkpoint ended is always still reading
    # when the next commit comes; that commit then appends after the copied frames.
    writer = _spool(tmp_path)
    _write(writer, RESTART_FRAMES + 500)
    reader = _reader_on_latest(tmp_path / "spool.db")
    busy, frames, copied = writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert (busy, copied) == (0, frames)  # every frame copied
    _write(writer, 10)
    reader.close()
    assert _frames(writer) > RESTART_FRAMES + 500


def test_past_restart_frames_the_next_write_starts_the_wal_again(tmp_path: Path) -> None:
    writer = _spool(tmp_path)
    _write(writer, RESTART_FRAMES + 500)
    reader = _reader_on_latest(tmp_path / "spool.db")
    ends = threading.Timer(0.2, lambda: reader.execute("COMMIT"))
    ends.start()
    began = time.monotonic()
    restarted = checkpoint(writer)
    ends.join()
    assert restarted
    assert time.monotonic() - began >= 0.15  # it waited for the reader rather than giving up
    reader = _reader_on_latest(tmp_path / "spool.db")  # a reader as in the control above
    _write(writer, 10)
    reader.close()
    assert _frames(writer) < 50  # from the WAL's start, not after its 1,500 frames
    # The connection waits for locks as long as before.
    assert writer.execute("PRAGMA busy_timeout").fetchone()[0] == 30000


def test_a_short_wal_gets_only_the_passive_checkpoint(tmp_path: Path) -> None:
    writer = _spool(tmp_path)
    _write(writer, 100)
    reader = _reader_on_latest(tmp_path / "spool.db")  # a RESTART would wait for it
    began = time.monotonic()
    assert not checkpoint(writer)
    assert time.monotonic() - began < RESTART_WAIT_MS / 1000
    reader.close()


@pytest.mark.timeout(30)
def test_a_reader_that_stays_makes_the_restart_give_up_after_its_wait(tmp_path: Path) -> None:
    writer = _spool(tmp_path)
    _write(writer, RESTART_FRAMES + 10)
    _write(writer, 1)  # the reader below reads an older snapshot than the newest
    reader = sqlite3.connect(tmp_path / "spool.db", isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM rows").fetchone()
    _write(writer, 5)
    began = time.monotonic()
    restarted = checkpoint(writer)
    waited = time.monotonic() - began
    assert not restarted
    assert RESTART_WAIT_MS / 1000 * 0.8 <= waited < 10
    assert writer.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    reader.close()


def test_spool_connections_cap_what_a_reset_wal_keeps(tmp_path: Path) -> None:
    assert (
        connect(tmp_path / "spool.db").execute("PRAGMA journal_size_limit").fetchone()[0]
        == JOURNAL_SIZE_LIMIT
    )
