"""The ledger's read side and upkeep hold the same on both engines (the `store` fixture: an empty
SQLite spool file and an empty PostgreSQL schema): search, one submission's detail, erasure,
retention, the alerts' tables and rules, the console's queries and the metrics snapshot.

Submissions are written as the hub writes them: the received row, then `save_routing` and
`record` (hub/spool), whose terms, deliveries, attempts and counters the readers read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors import get_connector
from hub.alerts import messages, rules
from hub.alerts import store as alert_store
from hub.alerts.store import RuleState
from hub.config.loader import load_config
from hub.config.models import HubConfig
from hub.console import queries
from hub.metrics.snapshot import SnapshotCache, read_snapshot
from hub.spool import actions, delivery_outcomes, retention
from hub.spool.detail import SubmissionNotFound, submission_detail
from hub.spool.erase import ERASED, erase
from hub.spool.erase_find import find_ids
from hub.spool.rows import Decision, DeliveryStatus
from hub.spool.search import SearchQuery, search
from hub.spool.transactions import open_spool
from hub.store import Connection, Store
from tests import spool_fill
from tests.test_alerts_support import write_config

CONFIG = """
sources:
  tf: {provider: typeform, secret: contract-secret, expect_every: 1h}
  jf: {provider: jotform, secret: contract-secret}
destinations:
  crm: {type: file, path: crm.jsonl}
  chat: {type: file, path: chat.jsonl}
routes:
  - {name: all, from: [tf], to: [crm, chat]}
  - {name: jotform, from: [jf], to: [crm]}
  - {name: big, from: [tf], when: "email endswith '@big.example'", to: [chat]}
"""
SIGNATURE = "sha256=c2lnbmF0dXJlLW9mLXRoZS1ib2R5"
HANDSHAKE = "handshake-key-in-the-body"
URL_TOKEN = "url-token-value-0123456789"
CHLOE = "chloe.martin@example.com"
ERIN_BODY = b'\xff\xfe{"email": "ERIN@Example.com"}'  # not UTF-8, the address in capitals
ESCAPE_TRAP = b'{"note": "\xc93@example.org"}'  # PostgreSQL escapes \xc9 as \311: "13@..." is not in it


@dataclass
class Ledger:
    conn: Connection
    config: HubConfig


def received(conn: Connection, inbox_id: str, at: float, body: bytes, state: str = "pending") -> None:
    """A request as the receiver stores it, not yet normalized."""
    conn.execute(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state, method, url,"
        " headers, updated_at) VALUES (?, ?, 'tf', 'typeform', ?, 'submission', ?, ?, 'POST', ?, '{}', ?)",
        (inbox_id, at, f"ev-{inbox_id}", body, state, "http://hub/hooks/tf", at),
    )


@pytest.fixture
def ledger(store: Store, tmp_path: Path) -> Iterator[Ledger]:
    (tmp_path / "connectors.yaml").write_text(CONFIG, encoding="utf-8")
    config = load_config(tmp_path / "connectors.yaml")
    conn = open_spool(store)
    alert_store.ensure_alert_tables(conn)  # as the evaluator does; PostgreSQL's migration made them
    headers = {"content-type": "application/json", "typeform-signature": SIGNATURE, "user-agent": "Typeform"}
    body = json.dumps({"form_response": {"answers": []}, "email": "Chloe.Martin@Example.com"})
    spool_fill.store(
        conn,
        "A",
        100.0,
        "tf",
        "Chloe.Martin@Example.com",
        "Chloé Martin",
        "f1",
        ("crm", "chat"),
        body=(body[:-1] + f', "HandshakeKey": "{HANDSHAKE}"}}').encode(),
        headers=json.dumps(headers),
        url=f"http://hub/hooks/tf?token={URL_TOKEN}&lang=fr",
    )
    spool_fill.store(conn, "B", 200.0, "tf", "bob@example.com", "Bob Stone", "f2", ("crm",))
    spool_fill.store(conn, "C", 300.0, "jf", CHLOE, "Chloé Martin", "f1", ("crm",))
    spool_fill.store(conn, "D", 300.0, "jf", "dan@example.com", "Dan Brown", "Contact us")
    received(conn, "E", 400.0, ERIN_BODY)
    received(conn, "F", 410.0, ESCAPE_TRAP)
    record = delivery_outcomes.record
    record(
        conn,
        110.0,
        [
            Decision("A", "crm", "delivered", "delivered", status_code=201, remote_id="crm-A"),
            Decision("A", "chat", "delivered", "delivered", status_code=200, remote_id="1712.0001"),
            Decision(
                "B", "crm", "retrying", "retry", next_attempt_at=150.0, status_code=503, error="HTTP 503"
            ),
            Decision("C", "crm", "retrying", "retry", next_attempt_at=900.0, status_code=503, error="busy"),
        ],
    )
    record(
        conn,
        210.0,
        [Decision("B", "crm", "dead", "failed", status_code=422, error="duplicate of Chloé Martin")],
    )
    yield Ledger(conn, config)
    conn.close()


def ids(conn: Connection, **filters: object) -> list[str]:
    return [s.id for s in search(conn, SearchQuery.model_validate(filters)).items]


def test_search_filters_newest_first(ledger: Ledger) -> None:
    conn = ledger.conn
    assert ids(conn) == ["F", "E", "D", "C", "B", "A"]
    assert ids(conn, email="CHLOE.MARTIN@example.com") == ["C", "A"]
    assert ids(conn, name="chloe") == ["C", "A"]
    assert ids(conn, name="CHLOÉ  martin", source="jf") == ["C"]
    assert ids(conn, form="contact US") == ["D"]
    assert ids(conn, email=CHLOE, form="f1", since=150) == ["C"]
    assert ids(conn, event_id="ev-B") == ["B"]
    assert ids(conn, source="jf") == ["D", "C"]
    assert ids(conn, state="failed") == ["B"]
    assert ids(conn, state="pending", until=405) == ["E"]
    assert ids(conn, since=200, until=300) == ["B"]
    found = search(conn, SearchQuery(email="dan@example.com")).items[0]
    assert (found.email, found.name, found.form_id, found.source, found.state) == (
        "dan@example.com",
        "Dan Brown",
        "Contact us",
        "jf",
        "done",
    )
    assert search(conn, SearchQuery(state="failed")).items[0].error == "crm: duplicate of Chloé Martin"


def test_pages_cover_every_row_once_with_equal_times(ledger: Ledger) -> None:
    for query in (
        SearchQuery(limit=2),
        SearchQuery(limit=1, source="jf"),
        SearchQuery(limit=1, name="chloe"),
    ):
        seen = spool_fill.every_page(ledger.conn, query)
        assert seen == ids(
            ledger.conn, **query.model_copy(update={"limit": 500}).model_dump(exclude_none=True)
        )
        assert len(seen) == len(set(seen)) and len(seen) > 1


def test_detail_answers_routes_attempts_and_a_redacted_request(ledger: Ledger) -> None:
    detail = submission_detail(ledger.conn, "A", ledger.config, get_connector("typeform"))
    assert detail.submission is not None and detail.submission["answers"][0]["value"] == "pro"
    assert (detail.email, detail.state, detail.kind) == ("Chloe.Martin@Example.com", "done", "submission")
    routes = {r.route: r for r in detail.routes or []}
    assert (routes["all"].matched, routes["all"].destinations) == (True, ["crm", "chat"])
    assert routes["jotform"].why_not == "source 'tf' is not in from ['jf']"
    assert routes["big"].why_not == "`when` is false: email endswith '@big.example'"
    assert [(d.destination, d.status, d.remote_id, d.delivered_at) for d in detail.deliveries] == [
        ("chat", "delivered", "1712.0001", 110.0),
        ("crm", "delivered", "crm-A", 110.0),
    ]
    shown = detail.raw.model_dump_json()
    assert not any(secret in shown for secret in (SIGNATURE, HANDSHAKE, URL_TOKEN))
    assert sorted(detail.raw.redacted) == ["body HandshakeKey", "header typeform-signature", "query token"]
    assert "lang=fr" in detail.raw.url and detail.raw.headers["user-agent"] == "Typeform"
    dead = submission_detail(ledger.conn, "B").deliveries[0]
    assert (dead.status, dead.attempts, dead.next_attempt_at, dead.last_status_code) == ("dead", 2, None, 422)
    assert [(a.attempt, a.at, a.outcome, a.status_code, a.error) for a in dead.history] == [
        (1, 110.0, "retry", 503, "HTTP 503"),
        (2, 210.0, "failed", 422, "duplicate of Chloé Martin"),
    ]
    waiting = submission_detail(ledger.conn, "C").deliveries[0]
    assert (waiting.status, waiting.next_attempt_at) == ("retrying", 900.0)
    raw = submission_detail(ledger.conn, "E")
    assert (raw.submission, raw.routes, raw.raw.body_bytes) == (None, None, len(ERIN_BODY))
    with pytest.raises(SubmissionNotFound):
        submission_detail(ledger.conn, "NOSUCH")


def test_erase_by_email_empties_the_rows_and_scrubs_the_quotes(ledger: Ledger) -> None:
    conn = ledger.conn
    alert_store.save(conn, RuleState("failing", "crm", True, 100.0, reasons={f"rejected {CHLOE}": 2}))
    alert_store.owe(conn, messages.failing("crm", 3, [f"HTTP 409: {CHLOE} exists"], 120.0), ["ops"], 120.0)
    dry = erase(conn, email="Chloe.Martin@EXAMPLE.com", now=1000.0, dry_run=True)
    assert [s.id for s in dry.submissions] == ["A", "C"] and ids(conn, email=CHLOE) == ["C", "A"]

    report = erase(conn, email="Chloe.Martin@EXAMPLE.com", now=1000.0)

    assert [s.id for s in report.submissions] == ["A", "C"]
    assert [(d.destination, d.status, d.remote_id) for d in report.submissions[0].deliveries] == [
        ("chat", "delivered", "1712.0001"),
        ("crm", "delivered", "crm-A"),
    ]
    # C's retry (its undelivered crm delivery, and its one attempt error); five quoting texts:
    # the alert, its state's reasons, and B's dead letter in deliveries, attempts and inbox.
    assert (report.deliveries_removed, report.attempts_scrubbed, report.alert_texts_scrubbed) == (1, 1, 5)
    assert report.store == conn.dialect
    if conn.dialect == "sqlite":
        assert report.wal_checkpointed
    else:
        assert report.vacuumed
    assert ids(conn, email=CHLOE) == [] and ids(conn, name="chloe") == []
    rows = conn.execute(
        "SELECT id, body, headers, url, submission, state FROM inbox WHERE id IN ('A', 'C') ORDER BY id"
    ).fetchall()
    assert [(r[0], bytes(r[1]), *r[2:]) for r in rows] == [
        ("A", b"", None, None, None, "done"),
        ("C", b"", None, None, None, "done"),
    ]
    assert (
        conn.execute("SELECT count(*) FROM submission_terms WHERE inbox_id IN ('A', 'C')").fetchone()[0] == 0
    )
    assert conn.execute(
        "SELECT destination, status, remote_id FROM deliveries WHERE inbox_id IN ('A', 'C') ORDER BY 1"
    ).fetchall() == [("chat", "delivered", None), ("crm", "delivered", None)]
    assert conn.execute("SELECT error FROM attempts WHERE inbox_id = 'C'").fetchall() == [(None,)]
    texts = [
        *conn.execute("SELECT alert FROM alert_outbox").fetchall(),
        *conn.execute("SELECT reasons FROM alert_state").fetchall(),
        *conn.execute("SELECT error FROM attempts WHERE inbox_id = 'B' AND error IS NOT NULL").fetchall(),
        *conn.execute("SELECT last_error FROM deliveries WHERE inbox_id = 'B'").fetchall(),
        *conn.execute("SELECT error FROM inbox WHERE id = 'B'").fetchall(),
    ]
    assert all(CHLOE not in t and "Chloé Martin" not in t for (t,) in texts)
    assert sum(ERASED in t for (t,) in texts) == 5
    assert ids(conn, email="bob@example.com") == ["B"]  # someone else's submission stays


def test_erase_finds_an_address_in_raw_bytes_of_any_encoding_and_case(ledger: Ledger) -> None:
    assert find_ids(ledger.conn, email="erin@example.com") == ["E"]
    assert find_ids(ledger.conn, email="3@example.org") == ["F"]
    assert find_ids(ledger.conn, email="13@example.org") == []  # only in PostgreSQL's escaped text
    report = erase(ledger.conn, email="erin@example.com", now=1000.0)
    assert [s.id for s in report.submissions] == ["E"]
    assert bytes(ledger.conn.execute("SELECT body FROM inbox WHERE id = 'E'").fetchone()[0]) == b""
    assert find_ids(ledger.conn, email="erin@example.com") == []
    assert find_ids(ledger.conn, submission_id="D") == ["D"]


DAY = 86400.0
NOW = 1_800_000_000.0
RETENTION = "retention: {raw_requests: 30d, submissions: 365d, batch_size: 2, every: 1h, flow_runs: null}\n"
# id -> (age in days, what the last attempt concluded, or None: never routed)
AGED: dict[str, tuple[float, DeliveryStatus | None]] = {
    "young": (10, "delivered"),
    "old1": (40, "delivered"),
    "old2": (41, "delivered"),
    "old3": (42, "delivered"),
    "old-dead": (40, "dead"),
    "old-retrying": (40, "retrying"),
    "old-pending": (40, None),
    "ancient": (400, "delivered"),
    "ancient-dead": (400, "dead"),
    "ancient-retrying": (400, "retrying"),
    "ancient-pending": (400, None),
}


def test_retention_drops_what_is_old_and_settled_never_what_waits(store: Store, tmp_path: Path) -> None:
    (tmp_path / "connectors.yaml").write_text(CONFIG + RETENTION, encoding="utf-8")
    config = load_config(tmp_path / "connectors.yaml")
    conn = open_spool(store)
    for inbox_id, (age, outcome) in AGED.items():
        at = NOW - age * DAY
        if outcome is None:
            received(conn, inbox_id, at, b'{"email": "x@example.org"}')
            continue
        spool_fill.store(conn, inbox_id, at, "tf", f"{inbox_id}@example.org", "Someone", "f1", ("crm",))
        attempt = {"delivered": "delivered", "retrying": "retry", "dead": "failed"}[outcome]
        decision = Decision(inbox_id, "crm", outcome, attempt, next_attempt_at=NOW + 60, error="e")
        delivery_outcomes.record(conn, at + 1, [decision])
    assert config.retention is not None and retention.due(conn, config.retention, NOW)

    run = retention.enforce(conn, config, NOW, pause=lambda: None)

    assert run.purged == {"raw_requests": 3, "submissions": 2}
    assert run.batches == 3  # 2 + 1 raw requests, 2 submissions in batches of 2
    left = {
        row[0]: len(bytes(row[1]))
        for row in conn.execute("SELECT id, body FROM inbox ORDER BY id").fetchall()
    }
    assert set(AGED) - set(left) == {"ancient", "ancient-dead"}
    assert {i for i, size in left.items() if size == 0} == {"old1", "old2", "old3"}
    gone = ("ancient", "ancient-dead")
    for table in ("deliveries", "attempts", "submission_terms"):
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE inbox_id IN (?, ?)", gone).fetchone()[0] == 0
    assert ids(conn, email="old1@example.org") == ["old1"]  # emptied raw request: still listed, searchable
    assert retention.purged_totals(conn) == ({"raw_requests": 3.0, "submissions": 2.0, "flow_runs": 0.0}, NOW)
    assert not retention.due(conn, config.retention, NOW + 60)
    assert retention.enforce(conn, config, NOW, pause=lambda: None).purged == {
        "raw_requests": 0,
        "submissions": 0,
    }
    conn.close()


def test_alert_tables_upsert_watermark_and_owe(ledger: Ledger) -> None:
    conn = ledger.conn
    alert_store.save(conn, RuleState("failing", "crm", True, 100.0, 100.0, reasons={"x": 1}))
    alert_store.save(conn, RuleState("failing", "crm", False, 100.0, 100.0, sources=["tf"]))
    state = alert_store.states(conn, "failing")["crm"]
    assert (state.firing, state.reasons, state.sources, state.last_sent_at) == (False, {}, ["tf"], 100.0)
    assert alert_store.watermark(conn, "dead_letters", 5.0) == 5.0
    alert_store.set_watermark(conn, "dead_letters", 7.5)
    alert_store.set_watermark(conn, "dead_letters", 8.5)
    assert alert_store.watermark(conn, "dead_letters", 5.0) == 8.5
    alert_store.owe(conn, messages.disabled("chat", "HTTP 410", 300.0), ["ops", "mail"], 300.0)
    owed = alert_store.due(conn, 300.0)
    assert [(o.destination, o.alert.kind, o.attempts) for o in owed] == [
        ("ops", "disabled", 0),
        ("mail", "disabled", 0),
    ]
    alert_store.mark_failed(conn, owed[0].id, "HTTP 500", 360.0)
    alert_store.mark_sent(conn, owed[1].id, 301.0)
    assert alert_store.due(conn, 359.0) == []
    assert [(o.destination, o.attempts) for o in alert_store.due(conn, 360.0)] == [("ops", 1)]
    alert_store.mark_failed(conn, owed[0].id, "HTTP 500", None)
    assert alert_store.due(conn, 10_000.0) == []
    assert conn.execute(
        "SELECT status, count(*) FROM alert_outbox GROUP BY status ORDER BY 1"
    ).fetchall() == [
        ("dropped", 1),
        ("sent", 1),
    ]


def test_alert_rules_read_the_ledger(ledger: Ledger, tmp_path: Path) -> None:
    config = load_config(
        write_config(tmp_path / "alerts.yaml", "to: [ops-slack]\ngroup_window: 30s\nstalled_after: 5m\n")
    )
    conn = ledger.conn
    facts = rules.Facts(started_at=0.0, dispatching=True)
    # E and F wait since 400 and 410: stalled after 5 minutes. Dead letters count from here on.
    first = rules.evaluate(conn, config, facts, 1000.0)
    assert [(a.kind, a.key) for a in first] == [("stalled", "delivery")]
    assert "2 submissions and 0 deliveries are waiting" in first[0].summary + " ".join(first[0].details)
    delivery_outcomes.disable_destination(conn, 1001.0, "crm", "HTTP 410: gone")
    conn.execute("UPDATE deliveries SET updated_at = 1001.0 WHERE status = 'dead'")
    conn.execute(
        "UPDATE inbox SET state = 'failed', error = 'unreadable', updated_at = 1002.0 WHERE id = 'D'"
    )
    assert [(a.kind, a.key) for a in rules.evaluate(conn, config, facts, 1010.0)] == [("disabled", "crm")]
    assert rules.evaluate(conn, config, facts, 1030.0) == []  # the group window (30 s) is open
    later = rules.evaluate(conn, config, facts, 1041.0)
    assert sorted((a.kind, a.key, a.count) for a in later) == [
        ("dead_letters", "(before delivery)", 1),
        ("dead_letters", "crm", 1),
    ]
    owed = alert_store.due(conn, 1041.0)
    assert len(owed) == 4 and {o.destination for o in owed} == {"ops-slack"}
    assert alert_store.states(conn, "dead_letters")["crm"].firing


def test_console_queries_and_the_metrics_snapshot(ledger: Ledger, store: Store) -> None:
    conn = ledger.conn
    delivery_outcomes.disable_destination(conn, 500.0, "chat", "HTTP 410: gone")
    actions.pause(conn, "crm", 500.0)
    alert_store.owe(conn, messages.disabled("chat", "HTTP 410", 501.0), ["ops", "mail"], 501.0)
    snap = read_snapshot(conn, store.path, 1000.0)
    assert snap.submissions == {"pending": 2, "routed": 1, "failed": 1}
    assert snap.oldest_pending_at == 400.0
    assert {k: (v.count, v.next_attempt_at) for k, v in snap.open_deliveries.items()} == {
        ("dead", "crm"): (1, 150.0),
        ("retrying", "crm"): (1, 900.0),
    }
    assert snap.counters["crm"]["outcome:delivered"] == 1 and snap.counters["chat"]["outcome:delivered"] == 1
    assert snap.disabled["chat"].reason == "HTTP 410: gone" and snap.spool_bytes > 0

    cache = SnapshotCache(store, max_age=60.0, clock=lambda: 1000.0)
    try:
        assert cache.refresh().submissions == snap.submissions and cache.refresh() is cache.refresh()
    finally:
        cache.close()

    lines = {line.name: line for line in queries.sources(conn, ledger.config, 100.0 + 3600 * 2)}
    assert (lines["tf"].today, lines["tf"].last_received, lines["jf"].week) == (4, 410.0, 2)
    assert lines["tf"].silent_for is not None and lines["jf"].silent_for is None
    dests = {d.name: d for d in queries.destinations(conn, ledger.config, snap)}
    assert (dests["crm"].delivered, dests["crm"].dead, dests["crm"].retrying, dests["crm"].paused) == (
        1,
        1,
        1,
        True,
    )
    # The latest of its retrying and dead deliveries' errors: B's dead letter, tried last at 210.
    assert (dests["crm"].last_error, dests["crm"].last_error_at) == ("duplicate of Chloé Martin", 210.0)
    assert dests["chat"].disabled == "HTTP 410: gone"
    conn.execute("UPDATE inbox SET state = 'failed', error = 'unreadable' WHERE id = 'D'")
    assert sorted(queries.dead_groups(conn, None), key=str) == sorted(
        [("crm", "duplicate of Chloé Martin", 1), (None, "unreadable", 1)], key=str
    )
    assert queries.dead_groups(conn, "tf") == [("crm", "duplicate of Chloé Martin", 1)]
    (alert,) = queries.recent_alerts(conn)
    assert (alert["rule"], alert["key"], sorted(alert["statuses"].split(","))) == (
        "disabled",
        "chat",
        ["owed", "owed"],
    )
    assert alert["title"]
