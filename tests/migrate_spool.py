"""A SQLite spool in every state a stopped hub can leave, written by the real writer and ledger,
and the row-for-row comparison of a copy of it in PostgreSQL (tests/test_migrate.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from hub.alerts import store as alert_store
from hub.alerts.model import Alert
from hub.reconcile import state as reconcile_state
from hub.spool import claiming, delivery_outcomes, lease, retention, routing_store
from hub.spool.actions import pause
from hub.spool.ids import new_id
from hub.spool.rows import Decision, PlannedDelivery
from hub.spool.schema import connect
from hub.spool.transactions import open_spool
from hub.spool.writer import SpoolRecord, SpoolWriter
from hub.store.copy_sqlite import TABLES
from hub.store.postgres.connection import PostgresConnection
from tests.spool_fill import submission_json

NOW = 1_760_000_000.0
OWNER = "hub-a"
CLAIM_COLUMNS = {"inbox": ("state", "claimed", "pending"), "deliveries": ("status", "sending", "pending")}


def _record(n: int, event_id: str, body: bytes, kind: str = "submission") -> SpoolRecord:
    # The submissions carry their response identity (inbox.response_key), copied like any column.
    return SpoolRecord(
        id=new_id(NOW),
        received_at=NOW + n / 1000,
        source="contact-form",
        provider="typeform",
        event_id=event_id,
        kind=kind,
        note=None,
        method="POST",
        url="http://127.0.0.1/hooks/contact-form",
        headers={"content-type": "application/json"},
        body=body,
        response_key=f"token-{n}" if kind == "submission" else None,
    )


async def _receive(path: Path, records: list[SpoolRecord]) -> None:
    writer = SpoolWriter(path, clock=lambda: NOW)
    writer.start()
    try:
        for record in records:  # one at a time: received_at order is their order
            await writer.store(record)
        await writer.probe()  # the writer's liveness row in meta: the SQLite file's own
    finally:
        writer.stop()


def build_spool(data_dir: Path) -> None:
    """Eight requests through the writer: three delivered or failing, one in flight, one claimed
    but not routed, two still pending (one with a body that is not UTF-8), one test ping."""
    path = data_dir / "spool.db"
    bodies = [b'{"n": %d}' % i for i in range(6)] + [b"\x00\xff\xfe binary \x80"]
    records = [_record(i, f"ev-{i}", body) for i, body in enumerate(bodies)]
    records.append(_record(len(records), "ping", b"{}", kind="test"))
    asyncio.run(_receive(path, records))
    ids = [r.id for r in records]
    conn = open_spool(path)
    try:
        lease.hold(conn, lease.this_process(OWNER, 8000), NOW)
        assert claiming.claim_inbox(conn, NOW, 5, OWNER) == sorted(ids[:5])
        both = [PlannedDelivery("crm", "all"), PlannedDelivery("slack", "all")]
        routed = {
            inbox_id: (submission_json(inbox_id, "contact-form", f"p{i}@example.org", f"Zoë {i}"), both)
            for i, inbox_id in enumerate(ids[:4])
        }
        # Exactly as stored, key order and spacing included: the copy must keep the text.
        routed[ids[3]] = (f'{{"z": 1,  "a": "é", "id": "{ids[3]}"}}', both)
        sending = routing_store.save_routing(conn, NOW, routed, {}, owner=OWNER)
        assert len(sending) == 8
        a, b, c, d = ids[:4]
        delivery_outcomes.record(
            conn,
            NOW + 1,
            [
                Decision(a, "crm", "delivered", "delivered", status_code=200, remote_id="crm-1"),
                Decision(a, "slack", "delivered", "delivered", status_code=200),
                Decision(
                    b, "crm", "retrying", "retry", status_code=503, next_attempt_at=NOW + 60, error="HTTP 503"
                ),
                Decision(b, "slack", "dead", "failed", status_code=400, error="invalid_blocks"),
                Decision(c, "slack", "delivered", "delivered", status_code=200),
                Decision(d, "crm", "dead", "failed", status_code=422, error="bad field"),
                Decision(
                    d, "slack", "retrying", "retry", status_code=429, next_attempt_at=NOW + 30, retry_after=30
                ),
            ],
            owner=OWNER,
        )
        # (c, crm) stays `sending`, ids[4] stays `claimed`: the hub "stopped" with them in flight.
        pause(conn, "slack", NOW + 2, "maintenance window")
        delivery_outcomes.disable_destination(conn, NOW + 3, "old-crm", "HTTP 410 Gone")
        retention.add_count(conn, "raw_requests", 3)
        reconcile_state.save(
            conn,
            reconcile_state.SourceState(
                "contact-form",
                watermark=NOW - 600,
                last_run_at=NOW,
                last_outcome="ok",
                reconciled=2,
                webhook_state="disabled",
                webhook_detail="Typeform: the webhook 'hookhub' is disabled",
            ),
        )
        alert_store.ensure_alert_tables(conn)
        alert = Alert(
            kind="dead_letters", key="crm", title="1 dead letter", summary="crm refused one", at=NOW
        )
        alert_store.owe(conn, alert, ["ops-mail", "ops-slack", "pager"], NOW)
        alert_store.save(
            conn, alert_store.RuleState("dead_letters", "crm", firing=True, since=NOW, reasons={"x": 1})
        )
        alert_store.set_watermark(conn, "dead_letters", NOW + 1)
        # The highest id is gone (sent and purged): PostgreSQL must not give it out again.
        conn.execute("DELETE FROM alert_outbox WHERE id = (SELECT max(id) FROM alert_outbox)")
    finally:
        conn.close()


def _columns(pg: PostgresConnection, table: str) -> list[str]:
    rows = pg.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = ? ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [r[0] for r in rows]


def _rows(
    conn: sqlite3.Connection | PostgresConnection, table: str, columns: list[str]
) -> list[tuple[Any, ...]]:
    where = (
        " WHERE key NOT IN ('probe', 'submission_terms_filled_to', 'schema_version')"
        if table == "meta"
        else ""
    )
    rows = conn.execute(f"SELECT {', '.join(columns)} FROM {table}{where}").fetchall()
    return sorted((tuple(r) for r in rows), key=repr)


def _expected(table: str, columns: list[str], row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The SQLite row as it must arrive: a claim (its owner stopped) back to pending."""
    values = dict(zip(columns, row, strict=True))
    if table in CLAIM_COLUMNS:
        column, claimed, pending = CLAIM_COLUMNS[table]
        if values[column] == claimed:
            values.update({column: pending, "claimed_by": None, "updated_at": "set by the copy"})
            if table == "inbox":
                values["claimed_at"] = None
    return tuple(values.values())


def assert_copied(spool: Path, url: str, copied_between: tuple[float, float]) -> dict[str, int]:
    """Every table row for row; returns the rows per table. Claims carry the copy's updated_at."""
    source = connect(spool)
    target = PostgresConnection.open(url)
    sizes: dict[str, int] = {}
    try:
        for table in TABLES:
            columns = _columns(target, table)
            want = [_expected(table, columns, row) for row in _rows(source, table, columns)]
            got = _rows(target, table, columns)
            if table in CLAIM_COLUMNS:
                at, (lo, hi) = columns.index("updated_at"), copied_between
                got = [
                    (*r[:at], "set by the copy", *r[at + 1 :])
                    if r[at] is not None and lo <= r[at] <= hi
                    else r
                    for r in got
                ]
            assert sorted(got, key=repr) == sorted(want, key=repr), table
            sizes[table] = len(got)
        assert target.execute("SELECT count(*) FROM leases").fetchone()[0] == 0
    finally:
        source.close()
        target.close()
    return sizes
