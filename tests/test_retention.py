"""`retention:` on a fixed clock: raw bodies go after their period, whole submissions after
theirs, nothing waiting loses anything, a source's own periods win; counts in logs and /metrics;
the retention flow (a real Prefect run) when the dispatcher's upkeep finds it due."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from flows.maintenance import upkeep_retention
from flows.runtime import Runtime, bind, unbind
from hub.config.check import check_file
from hub.config.loader import load_config
from hub.spool import delivery_outcomes, retention
from hub.spool.rows import Decision
from hub.spool.schema import ensure_schema
from hub.spool.transactions import open_spool
from hub.store.location import SqliteStore
from tests.harness import FakeClock, start_hub, wait_for

DAY = 86400.0
NOW = 1_800_000_000.0
CONFIG = """
sources:
  a: {provider: typeform, secret: retention-secret}
  b: {provider: typeform, secret: retention-secret, retention: {raw_requests: 7d, submissions: null}}
destinations:
  crm: {type: file, path: out.jsonl}
routes:
  - {name: all, from: ["*"], to: [crm]}
"""
RETENTION = "retention: {raw_requests: 30d, submissions: 365d, batch_size: 2, every: 1h, flow_runs: null}"
CONFIG += RETENTION
# id -> (source, age in days, inbox state, delivery status or None)
ROWS = {
    "a-young": ("a", 10, "done", "delivered"),
    "a-old": ("a", 40, "done", "delivered"),
    "a-old2": ("a", 41, "done", "delivered"),
    "a-old3": ("a", 42, "skipped", None),
    "a-retrying": ("a", 40, "routed", "retrying"),
    "a-pending": ("a", 40, "pending", None),
    "a-dead": ("a", 40, "failed", "dead"),
    "a-resent": ("a", 40, "done", "pending"),  # a delivered one sent again: it waits again
    "a-ancient": ("a", 400, "done", "delivered"),
    "a-ancient-dead": ("a", 400, "failed", "dead"),
    "a-ancient-retrying": ("a", 400, "routed", "retrying"),
    "b-week": ("b", 8, "done", "delivered"),
    "b-ancient": ("b", 400, "done", "delivered"),
    "gone-source": ("old", 40, "done", "delivered"),
}


def fill(spool: Path) -> sqlite3.Connection:
    ensure_schema(spool)
    conn = open_spool(spool)
    for inbox_id, (source, age, state, status) in ROWS.items():
        at = NOW - age * DAY
        conn.execute(
            "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, url, headers, body, state,"
            " submission) VALUES (?, ?, ?, 'typeform', ?, 'submission', 'https://x/hooks/a', '{}', ?, ?, ?)",
            (inbox_id, at, source, inbox_id, f'{{"email": "{inbox_id}@example.org"}}'.encode(), state, "{}"),
        )
        if status is not None:
            conn.execute(
                "INSERT INTO deliveries (inbox_id, destination, route, status, attempts, next_attempt_at,"
                " created_at) VALUES (?, 'crm', 'all', ?, 1, ?, ?)",
                (inbox_id, status, at, at),
            )
            conn.execute(
                "INSERT INTO attempts (inbox_id, destination, attempt, at, outcome, error)"
                " VALUES (?, 'crm', 1, ?, 'x', 'quoted answer')",
                (inbox_id, at),
            )
    return conn


def bodies(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT id, length(body) FROM inbox").fetchall())


def test_periods_on_a_fixed_clock(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config_path = tmp_path / "connectors.yaml"
    config_path.write_text(CONFIG, encoding="utf-8")
    config = load_config(config_path)
    conn = fill(tmp_path / "spool.db")
    before = bodies(conn)
    assert retention.due(conn, config.retention, NOW)  # type: ignore[arg-type]

    with caplog.at_level(logging.INFO, logger="hookhub.retention"):
        run = retention.enforce(conn, config, NOW, pause=lambda: None)

    after = bodies(conn)
    emptied = {k for k, n in after.items() if n == 0}
    # Raw bodies older than 30 days (a) / 7 days (b's own period) of settled requests, and
    # the rows of sources no longer configured by the global period.
    assert emptied == {"a-old", "a-old2", "a-old3", "b-week", "b-ancient", "gone-source"}
    # Waiting ones keep their body whatever their age: retrying, pending, a dead letter.
    for kept in ("a-retrying", "a-pending", "a-dead", "a-resent", "a-ancient-retrying", "a-young"):
        assert after[kept] == before[kept]
    # Whole submissions after 365 days (a dead letter too), not b's (its own `submissions: null`).
    assert "a-ancient" not in after and "a-ancient-dead" not in after and "b-ancient" in after
    for table in ("deliveries", "attempts"):
        gone = conn.execute(f"SELECT count(*) FROM {table} WHERE inbox_id LIKE 'a-ancient%'").fetchone()[0]
        assert gone == 1  # only the retrying one's
    # An emptied row keeps what dedupe and the ledger need.
    row = conn.execute("SELECT event_id, state, url, headers FROM inbox WHERE id='a-old'").fetchone()
    assert row == ("a-old", "done", None, None)
    assert conn.execute("SELECT status FROM deliveries WHERE inbox_id='a-old'").fetchone() == ("delivered",)

    assert run.purged == {"raw_requests": 6, "submissions": 2}
    assert run.longest_transaction < 1.0 and run.batches >= 4  # batches of 2
    batches = [r for r in caplog.records if getattr(r, "event", None) == "retention_batch"]
    assert sum(getattr(r, "rows", 0) for r in batches) == 8
    assert all(getattr(r, "rows", 0) <= 2 for r in batches)
    done = [r for r in caplog.records if getattr(r, "event", None) == "retention_done"]
    assert len(done) == 1 and done[0].purged_raw_requests == 6
    assert not any(
        "example.org" in r.getMessage() or "example.org" in str(r.__dict__) for r in caplog.records
    )

    # Not due again within `every`; a second run finds nothing more.
    assert not retention.due(conn, config.retention, NOW + 60)  # type: ignore[arg-type]
    assert retention.enforce(conn, config, NOW + 60).purged == {"raw_requests": 0, "submissions": 0}
    # Once the retrying delivery is delivered, its body goes at the next run.
    delivery_outcomes.record(conn, NOW, [Decision("a-retrying", "crm", "delivered", "delivered")])
    assert retention.enforce(conn, config, NOW + 3600).purged["raw_requests"] == 1
    assert bodies(conn)["a-retrying"] == 0
    assert retention.purged_totals(conn) == (
        {"raw_requests": 7.0, "submissions": 2.0, "flow_runs": 0.0},
        NOW + 3600,
    )
    conn.close()


def test_counts_in_metrics(tmp_path: Path) -> None:
    config_path = tmp_path / "connectors.yaml"
    config_path.write_text(CONFIG, encoding="utf-8")
    hub, server = start_hub(config_path, tmp_path / "data", clock=FakeClock(NOW))
    try:
        conn = fill(hub.spool_path)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert 'hookhub_retention_purged_rows_total{purge="raw_requests"} 0.0' in metrics
        assert "hookhub_retention_last_run_timestamp_seconds" not in metrics
        retention.enforce(conn, hub.config.current, NOW)
        conn.close()

        def counted() -> str | None:  # /metrics serves a snapshot up to a second old
            text = httpx.get(f"{server.url}/metrics", timeout=10).text
            return text if 'hookhub_retention_purged_rows_total{purge="raw_requests"} 6.0' in text else None

        metrics = wait_for(counted, 10, what="the purge counted in /metrics")
        assert 'hookhub_retention_purged_rows_total{purge="submissions"} 2.0' in metrics
        assert f"hookhub_retention_last_run_timestamp_seconds {NOW:.1f}" in metrics.replace(
            "1.8e+09", f"{NOW:.1f}"
        )
    finally:
        server.stop()


def test_the_retention_flow_runs_when_due(tmp_path: Path) -> None:
    config_path = tmp_path / "connectors.yaml"
    config_path.write_text(CONFIG, encoding="utf-8")
    spool = tmp_path / "spool.db"
    conn = fill(spool)
    config = load_config(config_path)
    runtime = Runtime(
        config=lambda: config, store=SqliteStore(spool), data_dir=tmp_path, clock=FakeClock(NOW)
    )
    bind(runtime)
    try:
        asyncio.run(upkeep_retention(str(spool), str(config_path), config, conn, NOW))
        assert bodies(conn)["a-old"] == 0 and retention.purged_totals(conn)[1] == NOW
        # Within `every` it does not run (a row made old meanwhile stays as it is).
        conn.execute("UPDATE inbox SET state='done' WHERE id='a-pending'")
        asyncio.run(upkeep_retention(str(spool), str(config_path), config, conn, NOW + 60))
        assert bodies(conn)["a-pending"] > 0
    finally:
        unbind(runtime)
        conn.close()


@pytest.mark.parametrize(
    ("retention_yaml", "problem"),
    [
        ("{raw_requests: 30}", "greater than or equal to 3600"),
        ("{raw_requests: 30x}", "must be a duration"),
        ("{raw_requests: 400d, submissions: 365d}", "raw_requests is longer than submissions"),
        ("{keep: 1d}", "keep"),
    ],
)
def test_check_reports_bad_periods(tmp_path: Path, retention_yaml: str, problem: str) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(
        CONFIG.replace(RETENTION, f"retention: {retention_yaml}"),
        encoding="utf-8",
    )
    _, text = check_file(str(path))
    assert problem in text, text


def test_a_source_override_is_checked_too(tmp_path: Path) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(
        CONFIG.replace("{raw_requests: 7d, submissions: null}", "{raw_requests: 400d}"), encoding="utf-8"
    )
    code, text = check_file(str(path))
    assert (
        code == 0 and "sources.b.retention" in text and "raw_requests is longer than submissions" in text
    ), text


FLOW_RUNS_SCRIPT = """
import asyncio, json, time
from prefect import flow
from prefect.client.orchestration import get_client
from flows.maintenance import delete_old_flow_runs

@flow(name="hookhub-deliver")
def deliver() -> int:
    return 1

@flow(name="not-hookhubs")
def other() -> int:
    return 1

async def names():
    async with get_client() as client:
        flows = {f.id: f.name for f in await client.read_flows()}
        return sorted(flows[r.flow_id] for r in await client.read_flow_runs())

deliver(); deliver(); other()
kept = asyncio.run(delete_old_flow_runs(time.time() - 3600))
deleted = asyncio.run(delete_old_flow_runs(time.time() + 60, batch_size=1))
print(json.dumps([kept, deleted, asyncio.run(names())]))
"""


def test_old_flow_runs_of_hookhub_are_deleted_through_prefects_api(tmp_path: Path) -> None:
    # A Prefect home of its own: the session's holds other tests' runs.
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", FLOW_RUNS_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    kept, deleted, left = json.loads(done.stdout.strip().splitlines()[-1])
    assert (kept, deleted, left) == (0, 2, ["not-hookhubs"])
