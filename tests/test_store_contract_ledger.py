"""The ledger's contract on both engines (the `store` fixture: SQLite file, PostgreSQL schema).

One statement text serves both, so each rule is checked once per engine: storing and deduping,
claims, planning, recording and settling, suspects, pause and resume, resend, backfill, the
admin reports and the delivery counters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg
import pytest

from hub.config.models import RouteConfig
from hub.spool import actions, claiming, delivery_outcomes, report, routing_store, suspects
from hub.spool.backfill import backfill
from hub.spool.ids import new_id
from hub.spool.rows import Decision, PlannedDelivery
from hub.spool.stats import read_counters
from hub.spool.transactions import open_spool
from hub.spool.writer import MAX_GROUP, NOTIFY_CHANNEL, SpoolRecord, SpoolWriter
from hub.store import Connection, PostgresStore, Store

NOW = 1_000.0


@pytest.fixture
def conn(store: Store) -> Iterator[Connection]:
    connection = open_spool(store)
    yield connection
    connection.close()


def receive(conn: Connection, inbox_id: str, at: float, state: str = "pending", source: str = "form") -> None:
    """A request as the writer stores it."""
    conn.execute(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
        " VALUES (?, ?, ?, 'typeform', ?, 'submission', ?, ?)",
        (inbox_id, at, source, f"ev-{inbox_id}", b"{}", state),
    )


def route(conn: Connection, inbox_id: str, *destinations: str, at: float = NOW) -> list[tuple[str, str]]:
    """Claim `inbox_id` as owner "w" and plan its deliveries; what routing put in `sending`."""
    assert claiming.claim_inbox(conn, at, 100, "w") == [inbox_id]
    planned = [PlannedDelivery(d, "r") for d in destinations]
    return routing_store.save_routing(conn, at, {inbox_id: ("{}", planned)}, {}, owner="w")


def state(conn: Connection, inbox_id: str) -> tuple[str, str | None]:
    row = conn.execute("SELECT state, error FROM inbox WHERE id=?", (inbox_id,)).fetchone()
    return row[0], row[1]


def statuses(conn: Connection) -> dict[tuple[str, str], str]:
    return {(i, d): s for i, d, s in conn.execute("SELECT inbox_id, destination, status FROM deliveries")}


REQUEST = {
    "source": "form",
    "provider": "typeform",
    "kind": "submission",
    "note": None,
    "method": "POST",
    "url": "http://127.0.0.1/hooks/form",
    "headers": {"content-type": "application/json"},
    "body": b'{"e": 1}',
}


def spool_record(event_id: str) -> SpoolRecord:
    return SpoolRecord(id=new_id(), received_at=time.time(), event_id=event_id, **REQUEST)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_the_writer_stores_once_and_answers_repeats_as_duplicates(store: Store) -> None:
    writer = SpoolWriter(store)
    writer.start()
    try:
        records = [spool_record(f"e{i % 3}") for i in range(6)]
        results = await asyncio.gather(*(writer.store(r) for r in records))
        again = await writer.store(spool_record("e0"))
        await writer.probe()
    finally:
        writer.stop()
    assert [r.duplicate for r in results] == [False] * 3 + [True] * 3
    assert [r.id for r in results[3:]] == [r.id for r in records[:3]]
    assert again.duplicate and again.id == records[0].id
    conn = open_spool(store)
    rows = conn.execute("SELECT id, state, redeliveries, body FROM inbox ORDER BY event_id").fetchall()
    conn.close()
    assert [(r[0], r[1], r[2], bytes(r[3])) for r in rows] == [
        (records[0].id, "pending", 2, b'{"e": 1}'),
        (records[1].id, "pending", 1, b'{"e": 1}'),
        (records[2].id, "pending", 1, b'{"e": 1}'),
    ]


@pytest.mark.anyio
async def test_nul_and_lone_surrogates_in_ids_and_notes_are_stored_apart(store: Store) -> None:
    from connectors.base import storable_text

    keys = [storable_text(text) for text in ("a\x00b", "a\x00\x00b", "Ren\ud83d", "Ren\ud83e", "plain")]
    assert len(set(keys)) == 5 and all("\x00" not in key for key in keys)
    writer = SpoolWriter(store)
    writer.start()
    try:
        results = [await writer.store(spool_record(key)) for key in keys]
        noted = spool_record("noted")
        noted.note = "unsupported payload: bad \x00 value"
        await writer.store(noted)
        again = await writer.store(spool_record(storable_text("a\x00b")))
    finally:
        writer.stop()
    assert not any(r.duplicate for r in results) and again.duplicate and again.id == results[0].id
    conn = open_spool(store)
    note = conn.execute("SELECT note FROM inbox WHERE event_id = 'noted'").fetchone()[0]
    conn.close()
    assert note == "unsupported payload: bad \\x00 value"


@pytest.mark.anyio
async def test_more_rows_than_one_statement_holds_are_all_stored(store: Store) -> None:
    writer = SpoolWriter(store)
    writer.start()
    try:
        results = await asyncio.gather(
            *(writer.store(spool_record(f"e{i}")) for i in range(2 * MAX_GROUP + 7))
        )
    finally:
        writer.stop()
    assert not any(r.duplicate for r in results)
    conn = open_spool(store)
    assert conn.execute("SELECT count(*) FROM inbox").fetchone()[0] == 2 * MAX_GROUP + 7
    conn.close()


@pytest.mark.anyio
async def test_a_group_with_new_work_notifies_waiting_workers_on_postgres(store: Store) -> None:
    if not isinstance(store, PostgresStore):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; a SQLite hub's dispatcher polls its one file")
    writer = SpoolWriter(store)
    writer.start()
    with psycopg.connect(store.url, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        try:
            await writer.store(spool_record("new"))
            first = list(listener.notifies(timeout=5, stop_after=1))
            await writer.store(spool_record("new"))  # a repeat stores no work
            repeat = list(listener.notifies(timeout=0.5, stop_after=1))
        finally:
            writer.stop()
    assert [n.channel for n in first] == [NOTIFY_CHANNEL]
    assert repeat == []


def test_claims_take_the_oldest_once_and_reap_spares_live_owners(conn: Connection) -> None:
    for n, at in enumerate((3.0, 1.0, 2.0)):
        receive(conn, f"S{n}", at)
    receive(conn, "LATER", 4.0)
    conn.execute("UPDATE inbox SET not_before=? WHERE id='LATER'", (NOW + 60,))
    assert claiming.has_work(conn, NOW) and claiming.pending_count(conn, NOW) == 3
    assert claiming.claim_inbox(conn, NOW, 2, "a") == ["S1", "S2"]  # the two oldest
    assert claiming.claim_inbox(conn, NOW, 10, "b") == ["S0"]
    assert claiming.claim_inbox(conn, NOW, 10, "c") == []
    conn.execute("INSERT INTO leases (owner, pid, host, expires_at) VALUES ('a', 1, 'h', ?)", (NOW + 60,))
    assert claiming.reap(conn, NOW) == (1, 0)  # b holds no lease; a does
    assert claiming.claim_inbox(conn, NOW, 10, "c") == ["S0"]
    assert claiming.claim_inbox(conn, NOW + 61, 10, "c") == ["LATER"]


def test_routing_plans_once_and_delivered_pairs_are_never_claimed_again(conn: Connection) -> None:
    receive(conn, "S1", 1.0)
    assert sorted(route(conn, "S1", "crm", "chat")) == [("S1", "chat"), ("S1", "crm")]
    owners = conn.execute("SELECT DISTINCT claimed_by FROM deliveries").fetchall()
    assert owners == [("w",)]  # a planned delivery is its submission's claimant's
    again = routing_store.save_routing(conn, NOW, {"S1": ("{}", [PlannedDelivery("crm", "r")])}, {})
    assert again == [] and len(statuses(conn)) == 2
    delivery_outcomes.record(conn, NOW + 1, [Decision("S1", "crm", "delivered", "delivered")], owner="w")
    conn.execute("UPDATE deliveries SET status='pending' WHERE destination='chat'")
    assert claiming.claim_due(conn, NOW + 2, 10, "x") == [("S1", "chat")]
    assert claiming.claim_due(conn, NOW + 2, 10, "x") == []
    claiming.release(conn, NOW + 3, [], [("S1", "chat")], owner="x")
    assert claiming.claim_due(conn, NOW + 4, 10, "y") == [("S1", "chat")]  # crm stays delivered


def test_record_and_settle_done_and_failed_with_the_reasons_joined(conn: Connection) -> None:
    for inbox_id in ("A", "B"):
        receive(conn, inbox_id, 1.0)
        route(conn, inbox_id, "crm", "chat")
    written = delivery_outcomes.record(
        conn,
        NOW + 5,
        [
            Decision("A", "crm", "delivered", "delivered", status_code=200, remote_id="lead-1"),
            Decision(
                "A", "chat", "retrying", "retry", status_code=503, next_attempt_at=NOW + 60, error="503"
            ),
            Decision("B", "crm", "dead", "failed", status_code=400, error="bad email"),
            Decision("B", "chat", "dead", "failed", status_code=404, error="no channel"),
        ],
        owner="w",
    )
    assert len(written) == 4
    assert state(conn, "A") == ("routed", None)
    assert state(conn, "B") == ("failed", "chat: no channel; crm: bad email")
    assert claiming.next_due_at(conn) == NOW + 60
    assert claiming.claim_due(conn, NOW + 59, 10, "w") == []
    assert claiming.claim_due(conn, NOW + 60, 10, "w") == [("A", "chat")]
    delivery_outcomes.record(conn, NOW + 61, [Decision("A", "chat", "delivered", "delivered")], owner="w")
    assert state(conn, "A") == ("done", None)
    attempts = conn.execute(
        "SELECT attempt, outcome, status_code FROM attempts WHERE inbox_id='A' AND destination='chat'"
        " ORDER BY attempt"
    ).fetchall()
    assert attempts == [(1, "retry", 503), (2, "delivered", None)]
    (row,) = delivery_outcomes.load_deliveries(conn, [("A", "crm")])
    assert (row.attempts, row.remote_id, row.delivery_key) == (1, "lead-1", "A.crm")


def test_counters_count_each_change_once(conn: Connection) -> None:
    receive(conn, "S1", 100.0)
    route(conn, "S1", "crm", at=100.0)
    retry = Decision("S1", "crm", "retrying", "retry", next_attempt_at=200.0, error="x")
    delivery_outcomes.record(conn, 110.0, [retry])
    delivery_outcomes.record(conn, 130.0, [Decision("S1", "crm", "delivered", "delivered")])
    delivery_outcomes.record(conn, 140.0, [Decision("S1", "crm", "delivered", "delivered")])  # again
    crm = read_counters(conn)["crm"]
    assert crm["outcome:retrying"] == 1 and crm["outcome:delivered"] == 1 and crm["attempts"] == 2
    assert crm["latency_sum"] == 30.0


def test_suspects_come_back_in_halves_and_alone_are_quarantined(conn: Connection) -> None:
    for n in range(4):
        receive(conn, f"S{n}", float(n))
    ids = claiming.claim_inbox(conn, NOW, 10, "w")
    assert suspects.flow_failed(conn, ids, [], "boom", NOW, 30.0, 2, owner="w") == []
    assert claiming.claim_inbox(conn, NOW + 60, 10, "w") == []  # suspects are not ordinary claims
    assert suspects.claim_suspects(conn, NOW + 10, "w") == ([], [])  # backing off
    first, _ = suspects.claim_suspects(conn, NOW + 30, "w")
    assert first == ["S0", "S1"]
    suspects.flow_succeeded(conn, first, [])
    second, _ = suspects.claim_suspects(conn, NOW + 30, "w")
    assert second == ["S2", "S3"]
    suspects.flow_failed(conn, second, [], "boom", NOW + 30, 30.0, 2, owner="w")  # groups of one now
    assert suspects.claim_suspects(conn, NOW + 60, "w") == (["S2"], [])
    assert suspects.flow_failed(conn, ["S2"], [], "boom", NOW + 60, 30.0, 2, owner="w") == []
    assert suspects.claim_suspects(conn, NOW + 60, "w") == (["S3"], [])
    assert suspects.claim_suspects(conn, NOW + 90, "w") == (["S2"], [])
    assert suspects.flow_failed(conn, ["S2"], [], "boom", NOW + 90, 30.0, 2, owner="w") == ["S2"]
    assert state(conn, "S2") == ("failed", "quarantined after 2 failed flow runs of it alone: boom")


def test_a_failed_runs_deliveries_come_back_as_suspects(conn: Connection) -> None:
    receive(conn, "S", 1.0)
    route(conn, "S", "crm")
    assert suspects.flow_failed(conn, [], [("S", "crm")], "boom", NOW, 30.0, 3, owner="w") == []
    assert claiming.claim_due(conn, NOW + 30, 10, "w") == []  # suspects only as suspects
    assert suspects.claim_suspects(conn, NOW + 29, "w") == ([], [])
    assert suspects.claim_suspects(conn, NOW + 30, "w") == ([], [("S", "crm")])
    suspects.flow_succeeded(conn, [], [("S", "crm")])
    assert conn.execute("SELECT retry_group, flow_failures FROM deliveries").fetchone() == (None, 0)


def test_pause_holds_deliveries_and_resume_lets_them_go(conn: Connection) -> None:
    receive(conn, "S1", 1.0)
    assert actions.pause(conn, "crm", NOW, "maintenance") is True
    assert actions.pause(conn, "crm", NOW) is False
    assert route(conn, "S1", "crm") == []  # planned, not sent
    assert claiming.claim_due(conn, NOW + 1, 10, "w") == [] and not claiming.has_work(conn, NOW + 1)
    assert actions.paused(conn) == [("crm", NOW, "maintenance")]
    delivery_outcomes.disable_destination(conn, NOW, "crm", "410 gone")
    delivery_outcomes.disable_destination(conn, NOW + 1, "crm", "410 gone again")
    assert delivery_outcomes.disabled_destinations(conn) == {"crm": "410 gone again"}
    resumed = actions.resume(conn, "crm")
    assert (resumed.was_paused, resumed.was_disabled, resumed.dead) == (True, "410 gone again", 0)
    assert claiming.claim_due(conn, NOW + 1, 10, "w") == [("S1", "crm")]


def test_resend_starts_a_new_generation_and_replay_puts_dead_letters_back(conn: Connection) -> None:
    receive(conn, "A", 1.0)
    route(conn, "A", "crm", "chat")
    delivery_outcomes.record(
        conn,
        NOW,
        [
            Decision("A", "crm", "dead", "failed", error="HTTP 400", remote_id="lead-1"),
            Decision("A", "chat", "delivered", "delivered", remote_id="ts-1"),
        ],
        owner="w",
    )
    assert [(d.destination, d.reason) for d in report.dead_letters(conn)] == [("crm", "HTTP 400")]
    done = actions.resend(conn, "A", NOW + 1, ["crm", "chat"])
    assert [(r.destination, r.action, r.generation) for r in done] == [
        ("crm", "replay", 0),
        ("chat", "resend", 1),
    ]
    rows = conn.execute(
        "SELECT destination, status, remote_id, previous_remote_id FROM deliveries ORDER BY destination"
    ).fetchall()
    assert rows == [("chat", "pending", None, "ts-1"), ("crm", "pending", "lead-1", None)]
    assert state(conn, "A") == ("routed", None)
    receive(conn, "B", 2.0)
    conn.execute("UPDATE inbox SET state='failed', error='unroutable' WHERE id='B'")
    (letter,) = report.dead_letters(conn, ids=["B"])
    assert report.replay(conn, [letter], NOW + 2) == 1
    assert state(conn, "B") == ("pending", None)


def test_backfill_plans_only_missing_pairs_once(conn: Connection) -> None:
    leads = RouteConfig.model_validate({"name": "leads", "from": ["form"], "to": ["crm", "chat"]})
    receive(conn, "A", 100.0)
    route(conn, "A", "crm")
    delivery_outcomes.record(conn, NOW, [Decision("A", "crm", "delivered", "delivered")], owner="w")
    receive(conn, "P", 150.0)  # not routed yet: left to the dispatcher
    dry = backfill(conn, leads, 0.0, None, NOW, dry_run=True)
    assert (dry.examined, dry.planned, dry.existing) == (1, {"chat": 1}, 1)
    counts = backfill(conn, leads, 0.0, None, NOW)
    assert counts.planned == {"chat": 1} and state(conn, "A") == ("routed", None)
    assert backfill(conn, leads, 0.0, None, NOW).planned == {}
    assert statuses(conn) == {("A", "crm"): "delivered", ("A", "chat"): "pending"}


def test_status_report_counts_by_state(conn: Connection) -> None:
    receive(conn, "A", 1.0)
    route(conn, "A", "crm")
    delivery_outcomes.record(
        conn, NOW, [Decision("A", "crm", "retrying", "retry", next_attempt_at=NOW + 9, error="e")], owner="w"
    )
    receive(conn, "B", 2.0, source="other")
    status = report.status_report(conn)
    assert status.sources == {"form": {"routed": 1}, "other": {"pending": 1}}
    assert status.destinations == {"crm": {"retrying": 1}}
    assert (status.stored, status.pending, status.oldest_pending_at) == (2, 1, 2.0)
    assert [(r.destination, r.count, r.next_attempt_at) for r in status.retrying] == [("crm", 1, NOW + 9)]
    assert report.source_exists(conn, "other") and not report.source_exists(conn, "nope")


def test_expanded_children_are_claimed_by_the_parents_owner_and_fetch_later_waits(conn: Connection) -> None:
    receive(conn, "N", 1.0)
    (parent_id,) = claiming.claim_inbox(conn, NOW, 10, "w")
    (parent,) = routing_store.load_inbox(conn, [parent_id])
    added = routing_store.add_expanded(conn, NOW, parent, [("C1", "resp-1", "{}")], "flow")
    assert list(added) == ["C1"]
    assert conn.execute("SELECT state, claimed_by FROM inbox WHERE id='C1'").fetchone() == ("claimed", "w")
    assert state(conn, "N")[0] == "done"
    routing_store.fetch_later(conn, NOW, "C1", 30.0, "API down", owner="other")  # not its claim
    assert state(conn, "C1")[0] == "claimed"
    routing_store.fetch_later(conn, NOW, "C1", 30.0, "API down", owner="w")
    assert routing_store.fetch_attempts(conn, "C1") == 1
    assert claiming.claim_inbox(conn, NOW + 29, 10, "w") == []
    assert claiming.claim_inbox(conn, NOW + 30, 10, "w") == ["C1"]
