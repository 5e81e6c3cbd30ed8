"""A submission delivered to several destinations by concurrent workers ends `done` exactly when
its last delivery is recorded, on both engines (the `store` fixture).

On PostgreSQL the outcomes of one submission's destinations are recorded by concurrent
transactions; each must see what the other committed before it settles the submission, and
two such transactions must not deadlock.
"""

from __future__ import annotations

import threading
import time

import pytest

from hub.spool import delivery_outcomes
from hub.spool.rows import Decision
from hub.spool.transactions import transaction
from hub.store import Connection, Store

T0 = 1_000.0
OWNER = "worker-a"
DESTINATIONS = ("crm", "mail")


def sending(conn: Connection, ids: list[str]) -> None:
    """Routed submissions whose deliveries to both destinations are claimed by OWNER."""
    conn.executemany(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
        " VALUES (?, ?, 'form', 'typeform', ?, 'submission', ?, 'routed')",
        [(inbox_id, T0, f"ev-{inbox_id}", b"{}") for inbox_id in ids],
    )
    conn.executemany(
        "INSERT INTO deliveries (inbox_id, destination, route, status, attempts, next_attempt_at,"
        " created_at, claimed_by) VALUES (?, ?, 'r', 'sending', 0, ?, ?, ?)",
        [(i, d, T0, T0, OWNER) for i in ids for d in DESTINATIONS],
    )


def delivered(ids: list[str], destination: str) -> list[Decision]:
    return [Decision(i, destination, "delivered", "delivered", status_code=200) for i in ids]


def states(conn: Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT state, count(*) FROM inbox GROUP BY state").fetchall())


def test_outcomes_recorded_at_once_for_each_destination_settle_every_submission(
    two: tuple[Connection, Connection],
) -> None:
    rounds = [[f"R{r:02}S{n}" for n in range(8)] for r in range(40)]
    sending(two[0], [i for ids in rounds for i in ids])
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def record_all(conn: Connection, destination: str) -> None:
        try:
            for ids in rounds:
                start.wait(timeout=60)
                written = delivery_outcomes.record(conn, T0 + 1, delivered(ids, destination), owner=OWNER)
                assert len(written) == len(ids)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)
            start.abort()

    threads = [
        threading.Thread(target=record_all, args=(conn, destination))
        for conn, destination in zip(two, DESTINATIONS, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []  # on PostgreSQL, FOR UPDATE here deadlocked two settlers of one batch
    assert states(two[0]) == {"done": 40 * 8}


def test_a_settler_waits_for_the_other_destinations_outcome_to_commit(
    store: Store, two: tuple[Connection, Connection]
) -> None:
    if store.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: its transactions cannot overlap (BEGIN IMMEDIATE)")
    first, second = two
    sending(first, ["S1"])
    with transaction(second):
        # The mail outcome is written and its settle finds crm still in flight; not committed yet.
        second.execute("UPDATE deliveries SET status='delivered' WHERE inbox_id='S1' AND destination='mail'")
        delivery_outcomes.settle(second, ["S1"], T0 + 1)
        pid = second.execute("SELECT pg_backend_pid()").fetchone()[0]
        worker = threading.Thread(
            target=delivery_outcomes.record, args=(first, T0 + 2, delivered(["S1"], "crm"), OWNER)
        )
        worker.start()
        observer = store.connect()
        try:
            deadline = time.monotonic() + 30
            while not observer.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE ? = ANY(pg_blocking_pids(pid))", (pid,)
            ).fetchone()[0]:
                assert worker.is_alive() and time.monotonic() < deadline, "the crm outcome did not wait"
                time.sleep(0.01)
        finally:
            observer.close()
    worker.join(timeout=30)
    assert not worker.is_alive()
    # Without the lock, each settle saw the other destination in flight and S1 stayed `routed`.
    assert states(first) == {"done": 1}
