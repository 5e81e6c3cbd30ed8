"""Delivery counters in the spool and their exposition, on real SQLite files at fixed instants."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hub.health import DeliveryHealth
from hub.metrics.collector import DeliveryCollector
from hub.metrics.snapshot import SnapshotCache
from hub.runtime import ConfigHolder
from hub.spool import delivery_outcomes, routing_store
from hub.spool.rows import Decision, DeliveryStatus, PlannedDelivery, Routed
from hub.spool.stats import read_counters
from hub.spool.transactions import open_spool, transaction

RECEIVED = 1_000.0


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_spool(tmp_path / "spool.db")
    for n in range(3):
        connection.execute(
            "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
            f" VALUES ('S{n}', {RECEIVED + n}, 'form', 'typeform', 'e{n}', 'submission', x'7b7d', 'claimed')"
        )
    plan = [PlannedDelivery("crm", "r"), PlannedDelivery("chat", "r")]
    routed: Routed = {f"S{n}": ("{}", plan) for n in range(3)}
    routing_store.save_routing(connection, RECEIVED + 5, routed, {}, skipped={"sheet": 3, "chat": 0})
    yield connection
    connection.close()


def _decision(inbox_id: str, status: DeliveryStatus, attempted: bool = True) -> Decision:
    next_at = RECEIVED + 600 if status == "retrying" else None
    return Decision(inbox_id, "crm", status, status, attempted=attempted, next_attempt_at=next_at, error="x")


def test_outcomes_attempts_and_latency_are_counted_once_per_change(conn: sqlite3.Connection) -> None:
    delivery_outcomes.record(
        conn, RECEIVED + 10, [_decision("S0", "retrying"), _decision("S1", "retrying", False)]
    )
    delivery_outcomes.record(conn, RECEIVED + 20, [_decision("S0", "delivered"), _decision("S2", "dead")])
    # Recorded again (a worker and the hub both reporting one chunk): a delivered row changes no more.
    delivery_outcomes.record(conn, RECEIVED + 30, [_decision("S0", "delivered")])
    # No such row:
    delivery_outcomes.record(conn, RECEIVED + 30, [Decision("gone", "crm", "delivered", "delivered")])

    crm = read_counters(conn)["crm"]
    assert crm["outcome:retrying"] == 1 and crm["outcome:deferred"] == 1  # a deferral is no attempt
    assert crm["outcome:delivered"] == 1 and crm["outcome:dead"] == 1
    assert crm["attempts"] == 3
    assert crm["latency_sum"] == 20.0  # S0 received at 1000, delivered at 1020
    assert crm["latency_bucket:7"] == 1  # 10 < 20 <= 30
    assert read_counters(conn)["sheet"] == {"outcome:skipped": 3}
    assert "chat" not in read_counters(conn)  # a zero adds no row


def test_the_collector_exposes_counters_gauges_and_health(conn: sqlite3.Connection, tmp_path: Path) -> None:
    delivery_outcomes.record(conn, RECEIVED + 10, [_decision("S0", "delivered"), _decision("S1", "retrying")])
    delivery_outcomes.record(conn, RECEIVED + 10, [_decision("S2", "dead")])
    delivery_outcomes.disable_destination(conn, RECEIVED + 10, "chat", "the receiver answered 410 Gone")
    conn.execute(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
        " VALUES ('P', 1990.0, 'form', 'typeform', 'p', 'submission', x'7b7d', 'pending')"
    )
    config = tmp_path / "connectors.yaml"
    config.write_text("sources: {}\ndestinations: {}\nroutes: []\n", encoding="utf-8")
    holder = ConfigHolder(config)
    health = DeliveryHealth(dispatching=True, prefect_reachable=False, dispatcher_beat_at=1990.0)
    cache = SnapshotCache(tmp_path / "spool.db", clock=lambda: 2000.0)
    registry = CollectorRegistry()
    registry.register(
        DeliveryCollector(cache, lambda: ["crm", "idle"], holder, lambda: health, lambda: 2000.0)
    )
    before_any_read = {m.name for m in registry.collect()}  # collect() itself never reads the spool
    assert before_any_read == {
        "hookhub_config_reloads",
        "hookhub_config_last_reload_success_timestamp_seconds",
        "hookhub_prefect_up",
        "hookhub_dispatcher_up",
    }
    cache.refresh()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert samples[("hookhub_deliveries_total", (("destination", "crm"), ("outcome", "delivered")))] == 1
    assert samples[("hookhub_deliveries_total", (("destination", "idle"), ("outcome", "delivered")))] == 0
    assert samples[("hookhub_deliveries_total", (("destination", "sheet"), ("outcome", "skipped")))] == 3
    assert samples[("hookhub_delivery_latency_seconds_bucket", (("destination", "crm"), ("le", "10.0")))] == 1
    assert samples[("hookhub_delivery_latency_seconds_bucket", (("destination", "crm"), ("le", "5.0")))] == 0
    assert samples[("hookhub_dead_letters", (("destination", "crm"),))] == 1
    assert samples[("hookhub_deliveries_waiting", (("destination", "crm"), ("status", "retrying")))] == 1
    assert samples[("hookhub_deliveries_waiting", (("destination", "chat"), ("status", "sending")))] == 3
    assert samples[("hookhub_delivery_overdue_seconds", (("destination", "crm"),))] == 400  # due at 1600
    assert samples[("hookhub_destination_disabled", (("destination", "chat"),))] == 1
    assert samples[("hookhub_submissions", (("state", "pending"),))] == 1
    assert samples[("hookhub_pending_oldest_age_seconds", ())] == 10
    assert samples[("hookhub_prefect_up", ())] == 0 and samples[("hookhub_dispatcher_up", ())] == 1
    assert samples[("hookhub_config_reloads_total", (("result", "rejected"),))] == 0
    health.dispatching = False  # --no-dispatch: another process delivers, nothing to alert on here
    assert ("hookhub_prefect_up", ()) not in {
        (s.name, ()) for family in registry.collect() for s in family.samples
    }


def test_a_snapshot_is_read_again_only_when_older_than_max_age(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    now = [2000.0]
    cache = SnapshotCache(tmp_path / "spool.db", max_age=1.0, clock=lambda: now[0])
    first = cache.refresh()
    now[0] += 0.5
    assert cache.refresh() is first
    now[0] += 0.6
    assert cache.refresh() is not first
    cache.close()


def test_scrape_cost_with_100000_deliveries(tmp_path: Path) -> None:
    """Not a benchmark: a bound far above the few ms measured, so a query that loses its index fails."""
    conn = open_spool(tmp_path / "spool.db")
    statuses = ["delivered"] * 97 + ["retrying", "dead", "pending"]
    with transaction(conn):
        conn.executemany(
            "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
            " VALUES (?, ?, 'form', 'typeform', ?, 'submission', x'7b7d', ?)",
            [(f"S{n:06d}", 1000.0 + n, f"e{n}", "done" if n % 50 else "pending") for n in range(100_000)],
        )
        conn.executemany(
            "INSERT INTO deliveries (inbox_id, destination, route, status, attempts, next_attempt_at,"
            " created_at) VALUES (?, ?, 'r', ?, 1, ?, 0)",
            [(f"S{n:06d}", f"d{n % 5}", statuses[n % 100], 1000.0 + n) for n in range(100_000)],
        )
    cache = SnapshotCache(tmp_path / "spool.db", max_age=0.0)
    cache.refresh()  # warm: the first read opens the connection
    started = time.perf_counter()
    snapshot = cache.refresh()
    took = time.perf_counter() - started
    assert snapshot.open_deliveries[("dead", "d3")].count == 1000
    assert snapshot.submissions["pending"] == 2000
    assert took < 0.5, f"a scrape read took {took:.3f} s"
