"""Many workers on one ledger: disjoint claims, leases, reaping, and fenced late writes.

Every test uses two connections (two workers), on both engines (the `store` fixture); on
PostgreSQL they are two sessions of the real server, so row locks and SKIP LOCKED are real.
"""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest

from hub.spool import claiming, delivery_outcomes, lease, routing_store
from hub.spool.rows import Decision, PlannedDelivery
from hub.spool.stats import read_counters
from hub.spool.transactions import open_spool
from hub.store import Connection, PostgresStore, Store

T0 = 1_000.0
TTL = 30.0
A = lease.Owner("worker-a", 101, "host-a")
B = lease.Owner("worker-b", 102, "host-b")


def everyone_alive(pid: int, host: str) -> bool:
    return True


def receive(conn: Connection, ids: list[str]) -> None:
    conn.executemany(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
        " VALUES (?, ?, 'form', 'typeform', ?, 'submission', ?, 'pending')",
        [(inbox_id, float(n), f"ev-{inbox_id}", b"{}") for n, inbox_id in enumerate(ids)],
    )


def plan_due(conn: Connection, ids: list[str], destination: str = "crm") -> None:
    """Routed submissions with one delivery each, due now."""
    receive(conn, ids)
    conn.executemany("UPDATE inbox SET state='routed' WHERE id=?", [(i,) for i in ids])
    conn.executemany(
        "INSERT INTO deliveries (inbox_id, destination, route, status, attempts, next_attempt_at, created_at)"
        " VALUES (?, ?, 'r', 'pending', 0, ?, ?)",
        [(i, destination, float(n), T0) for n, i in enumerate(ids)],
    )


def delivery(conn: Connection, inbox_id: str) -> tuple[str, str | None, int]:
    row = conn.execute(
        "SELECT status, claimed_by, attempts FROM deliveries WHERE inbox_id=? AND destination='crm'",
        (inbox_id,),
    ).fetchone()
    return row[0], row[1], row[2]


def claim_all(conn: Connection, owner: str, start: threading.Barrier, due: bool) -> list[object]:
    start.wait()
    taken: list[object] = []
    while True:
        batch: list[object] = (
            list(claiming.claim_due(conn, T0, 7, owner))
            if due
            else list(claiming.claim_inbox(conn, T0, 7, owner))
        )
        if not batch:
            return taken
        taken.extend(batch)


@pytest.mark.parametrize("due", [False, True], ids=["inbox", "deliveries"])
def test_two_workers_claiming_at_once_get_disjoint_rows_that_cover_everything(
    two: tuple[Connection, Connection], due: bool
) -> None:
    ids = [f"S{n:03}" for n in range(150)]
    (plan_due if due else receive)(two[0], ids)
    start = threading.Barrier(2)
    taken: dict[str, list[object]] = {}
    threads = [
        threading.Thread(target=lambda c=conn, o=owner: taken.__setitem__(o, claim_all(c, o, start, due)))
        for conn, owner in zip(two, ("a", "b"), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    a, b = set(taken["a"]), set(taken["b"])
    assert len(a) == len(taken["a"]) and len(b) == len(taken["b"])  # nobody got a row twice
    assert not a & b
    expected = {(i, "crm") for i in ids} if due else set(ids)
    assert a | b == expected


def test_a_claim_skips_rows_another_worker_is_taking_instead_of_waiting(store: Store) -> None:
    if not isinstance(store, PostgresStore):
        pytest.skip("SQLite has one writer at a time: its claims take turns by design (BEGIN IMMEDIATE)")
    conn = open_spool(store)
    receive(conn, ["S0", "S1", "S2", "S3"])
    with psycopg.connect(store.url, autocommit=False) as taking:
        # Another worker's claim of the two oldest, caught between its row locks and its commit.
        taking.execute("SELECT id FROM inbox ORDER BY received_at LIMIT 2 FOR UPDATE")
        conn.execute("SET statement_timeout = '3s'")  # a claim that waited would fail here
        assert claiming.claim_inbox(conn, T0, 10, "b") == ["S2", "S3"]
        taking.rollback()
    assert claiming.claim_inbox(conn, T0, 10, "b") == ["S0", "S1"]
    conn.close()


def test_a_late_owner_is_fenced_out_after_its_claims_were_reaped_and_taken_over(
    two: tuple[Connection, Connection], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = two
    plan_due(a, ["S1", "S2"])
    lease.hold(a, A, T0, ttl=TTL)
    lease.hold(b, B, T0, ttl=TTL * 10)
    assert sorted(claiming.claim_due(a, T0, 10, A.id)) == [("S1", "crm"), ("S2", "crm")]
    # A stalls (a SIGSTOP, a paused VM) past its lease; B's periodic reap puts its claims back.
    assert lease.reap(b, T0 + TTL + 1, everyone_alive) == (0, 2)
    assert lease.renew(a, A.id, T0 + TTL + 2, ttl=TTL) is False
    assert claiming.claim_due(b, T0 + TTL + 3, 1, B.id) == [("S1", "crm")]
    caplog.set_level(logging.WARNING, logger="hookhub.ledger")
    late = [Decision(i, "crm", "dead", "failed", error="A's stale answer") for i in ("S1", "S2")]
    assert delivery_outcomes.record(a, T0 + TTL + 4, late, owner=A.id) == []
    refused = [r for r in caplog.records if getattr(r, "event", None) == "late_outcome_refused"]
    assert sorted((r.id, r.destination) for r in refused) == [("S1", "crm"), ("S2", "crm")]  # type: ignore[attr-defined]
    assert "stale" not in caplog.text
    assert delivery(b, "S1") == ("sending", B.id, 0)  # B's claim, untouched
    assert delivery(b, "S2") == ("pending", None, 0)
    assert b.execute("SELECT count(*) FROM attempts").fetchone()[0] == 0
    assert read_counters(b) == {}
    delivered = [Decision("S1", "crm", "delivered", "delivered", status_code=200)]
    assert delivery_outcomes.record(b, T0 + TTL + 5, delivered, owner=B.id) == delivered
    assert delivery(a, "S1") == ("delivered", B.id, 1)
    assert delivery_outcomes.record(a, T0 + TTL + 6, late[:1], owner=A.id) == []  # still refused
    assert b.execute("SELECT state FROM inbox WHERE id='S1'").fetchone()[0] == "done"


def test_a_live_owners_claims_survive_every_other_workers_reap(two: tuple[Connection, Connection]) -> None:
    a, b = two
    receive(a, ["S1"])
    plan_due(a, ["D1"])
    lease.hold(a, A, T0, ttl=TTL)
    lease.hold(b, B, T0, ttl=TTL)
    assert claiming.claim_inbox(a, T0, 10, A.id) == ["S1"]
    assert claiming.claim_due(a, T0, 10, A.id) == [("D1", "crm")]
    for at in (T0 + 1, T0 + TTL / 2, T0 + TTL - 0.1):
        assert lease.reap(b, at, everyone_alive) == (0, 0)
        assert lease.renew(b, B.id, at, ttl=TTL)
    assert lease.renew(a, A.id, T0 + TTL - 0.1, ttl=TTL)  # renewed just in time: lives on
    assert lease.reap(b, T0 + TTL + 1, everyone_alive) == (0, 0)
    assert a.execute("SELECT state, claimed_by FROM inbox WHERE id='S1'").fetchone() == ("claimed", A.id)
    assert delivery(a, "D1") == ("sending", A.id, 0)
    # A process gone from this host loses its claims at once, before its lease would expire.
    assert lease.reap(b, T0 + TTL + 2, lambda pid, host: pid != A.pid) == (1, 1)
    assert lease.renew(a, A.id, T0 + TTL + 3, ttl=TTL) is False


def test_a_late_owner_cannot_route_a_submission_another_worker_took_over(
    two: tuple[Connection, Connection],
) -> None:
    a, b = two
    receive(a, ["S1"])
    lease.hold(a, A, T0, ttl=TTL)
    lease.hold(b, B, T0, ttl=TTL * 10)
    assert claiming.claim_inbox(a, T0, 10, A.id) == ["S1"]
    assert lease.reap(b, T0 + TTL + 1, everyone_alive) == (1, 0)
    assert claiming.claim_inbox(b, T0 + TTL + 1, 10, B.id) == ["S1"]
    plan = {"S1": ("{}", [PlannedDelivery("crm", "r")])}
    assert routing_store.save_routing(a, T0 + TTL + 2, plan, {}, owner=A.id) == []
    assert a.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0
    claiming.release(a, T0 + TTL + 2, ["S1"], [], owner=A.id)  # A giving back what it lost: nothing
    routing_store.fetch_later(a, T0 + TTL + 2, "S1", 60.0, "A's fetch failed", owner=A.id)
    assert b.execute("SELECT state, claimed_by, error FROM inbox WHERE id='S1'").fetchone() == (
        "claimed",
        B.id,
        None,
    )
    assert routing_store.save_routing(b, T0 + TTL + 3, plan, {}, owner=B.id) == [("S1", "crm")]
    assert delivery(a, "S1") == ("sending", B.id, 0)
    assert lease.reap(a, T0 + TTL + 4, everyone_alive) == (0, 0)  # B's routed work stays B's


def test_leases_are_held_renewed_and_given_up_with_their_own_length(
    two: tuple[Connection, Connection],
) -> None:
    a, b = two
    lease.hold(a, A, T0, ttl=5.0)
    assert lease.drop_dead(b, T0 + 4.9, everyone_alive) == []
    assert lease.renew(a, A.id, T0 + 4.9, ttl=5.0)
    assert lease.drop_dead(b, T0 + 9.8, everyone_alive) == []
    assert lease.drop_dead(b, T0 + 9.9, everyone_alive) == [A.id]
    assert lease.renew(a, A.id, T0 + 10, ttl=5.0) is False
    lease.hold(a, A, T0 + 10, ttl=5.0)  # taken again: renewals work again
    assert lease.renew(a, A.id, T0 + 11, ttl=5.0)
    lease.give_up(a, A.id)
    assert lease.renew(a, A.id, T0 + 12, ttl=5.0) is False
    assert lease.renew_every(30.0) == 10.0


def test_ownerless_claims_are_left_to_a_starts_recovery(two: tuple[Connection, Connection]) -> None:
    a, b = two
    plan_due(a, ["D1"])
    assert claiming.claim_due(a, T0, 10, None) == [("D1", "crm")]  # a caller without a lease
    assert lease.reap(b, T0, everyone_alive) == (0, 0)
    assert lease.recover(b, T0, everyone_alive) == (0, 1)
    assert delivery(a, "D1") == ("pending", None, 0)
