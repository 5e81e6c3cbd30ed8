"""The group-commit spool writer on a real SQLite file: batching, duplicates within a batch, stopping."""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hub.spool.ids import new_id
from hub.spool.inbox_rows import row as _row
from hub.spool.intake import COLUMNS, INTAKE_FILE, open_intake
from hub.spool.writer import MAX_GROUP, SpoolRecord, SpoolUnavailable, SpoolWriter, StoreResult


def _record(event_id: str) -> SpoolRecord:
    now = time.time()
    return SpoolRecord(
        id=new_id(now),
        received_at=now,
        source="contact-form",
        provider="typeform",
        event_id=event_id,
        kind="submission",
        note=None,
        method="POST",
        url="http://127.0.0.1/hooks/contact-form",
        headers={"content-type": "application/json"},
        body=b'{"event_id": "%s"}' % event_id.encode(),
    )


class CountingQueue(queue.SimpleQueue):
    def __init__(self) -> None:
        self.puts = 0

    def put(self, item, block=True, timeout=None) -> None:  # type: ignore[no-untyped-def]
        self.puts += 1
        super().put(item, block, timeout)


class DyingQueue(queue.SimpleQueue):
    """The writer thread crashes as it waits for work, once `may_die` is set."""

    def __init__(self, may_die: threading.Event) -> None:
        self.may_die = may_die

    def get(self, block=True, timeout=None):  # type: ignore[no-untyped-def]
        self.may_die.wait(10)
        raise RuntimeError("writer thread crashed")


@pytest.fixture
def jobs() -> CountingQueue:
    return CountingQueue()


@pytest.fixture
def writer(tmp_path: Path, jobs: CountingQueue):
    spool = SpoolWriter(tmp_path / "spool.db", jobs=jobs)
    spool.start()
    yield spool
    spool.stop()


def _stored(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT id, event_id FROM inbox").fetchall())


@pytest.mark.anyio
async def test_requests_of_one_loop_turn_wake_the_writer_once(
    writer: SpoolWriter, jobs: CountingQueue
) -> None:
    records = [_record(f"evt-{i}") for i in range(100)]
    results = await asyncio.gather(*(writer.store(r) for r in records))
    assert jobs.puts == 1
    assert [r.id for r in results] == [r.id for r in records]
    assert not any(r.duplicate for r in results)
    assert _stored(writer.path) == {r.id: r.event_id for r in records}


@pytest.mark.anyio
async def test_repeats_within_one_batch_point_at_the_first(writer: SpoolWriter) -> None:
    records = [_record(f"evt-{i % 5}") for i in range(10)]
    results = await asyncio.gather(*(writer.store(r) for r in records))
    assert [r.duplicate for r in results] == [False] * 5 + [True] * 5
    assert [r.id for r in results[5:]] == [r.id for r in records[:5]]
    assert set(_stored(writer.path)) == {r.id for r in records[:5]}
    with sqlite3.connect(writer.path) as conn:
        assert conn.execute("SELECT sum(redeliveries) FROM inbox").fetchone()[0] == 5


@pytest.mark.anyio
async def test_a_batch_larger_than_one_statement_is_stored_whole(writer: SpoolWriter) -> None:
    records = [_record(f"evt-{i}") for i in range(2 * MAX_GROUP + 7)]
    results = await asyncio.gather(*(writer.store(r) for r in records))
    assert not any(r.duplicate for r in results)
    assert len(_stored(writer.path)) == len(records)


@pytest.mark.anyio
async def test_stop_before_the_hand_over_answers_unavailable_instead_of_hanging(writer: SpoolWriter) -> None:
    pending = asyncio.ensure_future(writer.store(_record("evt-late")))
    await asyncio.sleep(0)  # the request is read and waits for its batch to be handed over
    writer.stop()
    with pytest.raises(SpoolUnavailable):
        await asyncio.wait_for(pending, timeout=10)
    assert _stored(writer.path) == {}
    with pytest.raises(SpoolUnavailable):
        await writer.store(_record("evt-after"))


def test_serve_freezes_the_startup_heap_out_of_the_collectors_way() -> None:
    """`hookhub serve` moves startup objects out of the cyclic GC (a full collection stalled the loop)."""
    script = (
        "import gc; from hub.server import _freeze_startup_heap; "
        "assert gc.get_freeze_count() == 0; _freeze_startup_heap(); print(gc.get_freeze_count())"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert int(out.stdout) > 10_000


@pytest.mark.anyio
async def test_an_unexpected_error_answers_unavailable_and_the_writer_keeps_serving(tmp_path: Path) -> None:
    writes = itertools.count()

    def a_bug_in_the_first_write() -> None:
        if next(writes) == 0:
            raise RuntimeError("bug")

    writer = SpoolWriter(tmp_path / "spool.db", before_write=a_bug_in_the_first_write)
    writer.start()
    try:
        with pytest.raises(SpoolUnavailable):
            await asyncio.wait_for(writer.store(_record("evt-1")), timeout=10)
        stored = await asyncio.wait_for(writer.store(_record("evt-1")), timeout=10)
        assert not stored.duplicate and writer.alive
    finally:
        writer.stop()
    assert list(_stored(writer.path).values()) == ["evt-1"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the crash is the test
@pytest.mark.anyio
async def test_work_queued_when_the_thread_dies_is_answered(tmp_path: Path) -> None:
    """If the writer thread ends for any reason, what is queued gets a 503, not a wait forever."""
    may_die = threading.Event()
    jobs = DyingQueue(may_die)
    spool = SpoolWriter(tmp_path / "spool.db", jobs=jobs)
    spool.start()

    pending = asyncio.ensure_future(spool.store(_record("evt-x")))
    await asyncio.sleep(0)  # read: waits for the loop turn's hand-over
    await asyncio.sleep(0)  # handed over: queued for a writer that will never read it
    assert jobs.qsize() == 1
    may_die.set()
    with pytest.raises(SpoolUnavailable):
        await asyncio.wait_for(pending, timeout=10)
    assert not spool.alive
    with pytest.raises(SpoolUnavailable):
        await spool.store(_record("evt-y"))
    spool.stop()


@pytest.mark.anyio
async def test_rows_and_probes_are_stamped_by_the_injected_clock(tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path / "spool.db", clock=lambda: 1_000_000.0)
    spool.start()
    try:
        await spool.store(_record("evt-clock"))
        await spool.probe()
    finally:
        spool.stop()
    with sqlite3.connect(tmp_path / "spool.db") as conn:
        assert conn.execute("SELECT updated_at FROM inbox").fetchall() == [(1_000_000.0,)]
        assert conn.execute("SELECT value FROM meta WHERE key='probe'").fetchone() == ("1000000.0",)


def _hold_write_lock(spool: Path) -> subprocess.Popen[str]:
    """Another process (the delivery process, in the hub) in a write transaction on `spool`,
    until a line is written to its stdin."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            f"conn = sqlite3.connect({str(spool)!r}, isolation_level=None)\n"
            "conn.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "conn.execute('COMMIT')\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def _release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(timeout=10)


def _redeliveries(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT redeliveries FROM inbox").fetchone()[0])


def _intake_rows(path: Path) -> list[str]:
    with sqlite3.connect(path.with_name(INTAKE_FILE)) as conn:
        return [row[0] for row in conn.execute("SELECT event_id FROM intake ORDER BY seq")]


@pytest.mark.anyio
async def test_while_another_process_holds_the_lock_webhooks_are_answered_from_the_intake(
    tmp_path: Path,
) -> None:
    spool_path = tmp_path / "spool.db"
    spool = SpoolWriter(spool_path)
    spool.start()
    holder = _hold_write_lock(spool_path)
    try:
        # Answered at once (not after the lock), from the intake: committed there, not yet moved.
        first = await asyncio.wait_for(spool.store(_record("evt-1")), 5)
        again = await asyncio.wait_for(spool.store(_record("evt-1")), 5)
        assert first.duplicate is False
        assert again == StoreResult(id=first.id, duplicate=True)  # its key is in the intake
        assert holder.poll() is None, "the lock was still held while both were answered"
        assert _intake_rows(spool_path) == ["evt-1"]
        assert _stored(spool_path) == {}
        _release(holder)
        # The mover copies it into the spool, with its id; the writer then forgets it.
        await asyncio.to_thread(_wait, lambda: _stored(spool_path) == {first.id: "evt-1"})
        later = await spool.store(_record("evt-1"))
        assert later == StoreResult(id=first.id, duplicate=True)
        await asyncio.to_thread(_wait, lambda: _intake_rows(spool_path) == [])
        # The one answered from the intake and the one after. Counts answered from the intake
        # reach the spool with the mover's next turn, which may come after the row left the
        # intake (the mover yields the CPU: hub/cpu_priority.py).
        await asyncio.to_thread(_wait, lambda: _redeliveries(spool_path) >= 2)
        # Once emptied, the intake must not number new rows from 1 again ("moved up to 1").
        holder = _hold_write_lock(spool_path)
        second = await asyncio.wait_for(spool.store(_record("evt-2")), 5)
        assert _intake_rows(spool_path) == ["evt-2"]
        _release(holder)
        await asyncio.to_thread(_wait, lambda: second.id in _stored(spool_path))
    finally:
        holder.kill()
        spool.stop()


@pytest.mark.anyio
async def test_a_key_in_the_spool_is_a_duplicate_on_the_intake_path_too(
    tmp_path: Path, writer: SpoolWriter
) -> None:
    spool_path = tmp_path / "spool.db"
    first = await writer.store(_record("evt-1"))
    holder = _hold_write_lock(spool_path)
    try:
        again = await asyncio.wait_for(writer.store(_record("evt-1")), 5)
        assert again == StoreResult(id=first.id, duplicate=True)
        assert _intake_rows(spool_path) == []
    finally:
        _release(holder)


def test_rows_a_crash_left_in_the_intake_are_moved_at_the_next_start(tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.db"
    SpoolWriter(spool_path).location.prepare()
    intake = open_intake(spool_path, "full")
    record = _record("evt-left")
    row = [*_row(record), 0, time.time()]
    intake.execute(f"INSERT INTO intake ({COLUMNS}) VALUES ({','.join('?' * len(row))})", row)
    intake.close()
    spool = SpoolWriter(spool_path)
    spool.start()
    try:
        _wait(lambda: _stored(spool_path) == {record.id: "evt-left"})
    finally:
        spool.stop()
    assert _intake_rows(spool_path) == []


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.anyio
async def test_the_spool_is_checkpointed_off_the_writer_thread(tmp_path: Path, writer: SpoolWriter) -> None:
    # The writer's connection never checkpoints (a webhook's commit would pay for it); the mover
    # does, every CHECKPOINT_SECONDS: the pages reach spool.db itself without anyone else writing.
    spool_path = tmp_path / "spool.db"
    empty = spool_path.stat().st_size
    for batch in range(4):
        records = [_record(f"evt-{batch}-{i}") for i in range(100)]
        for record in records:
            record.body = b"x" * 8192
        await asyncio.gather(*(writer.store(record) for record in records))
    with sqlite3.connect(spool_path) as conn:
        assert conn.execute("SELECT count(*) FROM inbox").fetchone()[0] == 400
    await asyncio.to_thread(_wait, lambda: spool_path.stat().st_size > empty + 400 * 8192, 10.0)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_the_mover_yields_the_cpu_and_the_writer_does_not(writer: SpoolWriter) -> None:
    # The event loop and the writer thread answer webhooks; moving and checkpointing can wait.
    threads = {thread.name: thread.native_id for thread in threading.enumerate()}
    _wait(lambda: os.sched_getscheduler(threads["hookhub-spool-mover"]) == os.SCHED_IDLE, 5.0)
    assert os.sched_getscheduler(threads["hookhub-spool-writer"]) == os.SCHED_OTHER
