"""Reconciliation's core (hub/reconcile/) on both engines, with a provider API that answers from
memory: the window and watermark, the identity rule in the spool (a response stored once, whichever
of webhook and reconciliation came first), failures half way, dry runs, the older rows' keys,
imports and `backfill: true`, the schedule, and the two alert rules.

The provider side of each real connector (its API, its identity rule) is tested per provider in
tests/test_reconcile_<provider>.py; this file swaps Typeform's reconciler for `MemoryReconciler`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.reconciling import (
    WebhookHealth,
)
from connectors.typeform import TypeformConnector
from flows.reconcile import due_reconciles
from hub.alerts import rules
from hub.alerts.store import ensure_alert_tables
from hub.config.loader import ConfigError, parse_config
from hub.config.models import HubConfig
from hub.console import queries
from hub.reconcile import state
from hub.reconcile.run import NotReconcilable, reconcile_source
from hub.routing.plan import plan
from hub.sender import FakeSender
from hub.spool.transactions import open_spool
from hub.spool.writer import SpoolRecord, SpoolWriter
from hub.store import Connection, Store
from hub.submission import Submission
from tests.reconcile_memory import MemoryReconciler

NOW = 1_796_000_000.0
HOUR = 3600.0


CONFIG = """
sources:
  contact-form:
    provider: typeform
    secret: s3cret
    reconcile:
      every: 1h
      lookback: 1d
      settle: 10m
      form_id: form1
      credentials: {token: tfp_test}
destinations:
  crm: {type: webhook, url: "http://127.0.0.1:9/crm", secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}
  history: {type: webhook, url: "http://127.0.0.1:9/history", secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}
routes:
  - {name: live, from: contact-form, to: [crm]}
  - {name: archive, from: contact-form, to: [history], backfill: true}
"""


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> MemoryReconciler:
    fake = MemoryReconciler()
    monkeypatch.setattr(TypeformConnector, "reconciler", fake)
    return fake


@pytest.fixture
def config(memory: MemoryReconciler) -> HubConfig:
    return parse_config(CONFIG, "c.yaml", {})[0]


@pytest.fixture
def conn(store: Store) -> Iterator[Connection]:
    connection = open_spool(store)
    ensure_alert_tables(connection)
    yield connection
    connection.close()


NO_HTTP = FakeSender(lambda request: pytest.fail(f"no HTTP expected: {request.url}"))


def _run(conn: Connection, config: HubConfig, now: float = NOW, **kwargs: Any) -> Any:
    return asyncio.run(reconcile_source(conn, config, "contact-form", NO_HTTP, now, **kwargs))


def _webhook(
    store: Store, event_id: str, response_id: str | None, body: dict[str, Any] | None = None
) -> tuple[str, bool]:
    """Store a webhook as the receiver does (through the writer); returns (row id, duplicate)."""
    record = SpoolRecord(
        id=f"wh-{event_id}",
        received_at=NOW - 5 * HOUR,
        source="contact-form",
        provider="typeform",
        event_id=event_id,
        kind="submission",
        note=None,
        method="POST",
        url="http://127.0.0.1/hooks/contact-form",
        headers={"content-type": "application/json"},
        body=json.dumps(body or {"event_id": event_id}).encode(),
        response_key=response_id,
    )
    writer = SpoolWriter(store, clock=lambda: NOW)
    writer.start()
    try:

        async def put() -> Any:
            return await writer.store(record)

        result = asyncio.run(put())
    finally:
        writer.stop()
    return result.id, result.duplicate


def _rows(conn: Connection) -> dict[str, tuple[str, str, str]]:
    """response_key -> (event_id, kind, state) of every row of the source."""
    rows = conn.execute("SELECT response_key, event_id, kind, state FROM inbox WHERE source = 'contact-form'")
    return {key: (event_id, kind, st) for key, event_id, kind, st in rows}


def test_missing_responses_are_stored_once_and_the_watermark_moves(
    store: Store, conn: Connection, config: HubConfig, memory: MemoryReconciler
) -> None:
    for n in range(1, 9):
        memory.add(f"r{n}", NOW - 6 * HOUR + n * 60)
    for n in (1, 2, 3, 4, 5, 8):
        assert _webhook(store, f"ev{n}", f"r{n}") == (f"wh-ev{n}", False)

    report = _run(conn, config)
    assert report.ok and report.listed == 8
    assert [m.response_id for m in report.missing] == ["r6", "r7"]
    # First run: `lookback` back from now, but not before the source's first stored webhook (less
    # an hour): what the form collected before the hub heard of it is history (`hookhub import`).
    assert (report.since, report.until) == (NOW - 6 * HOUR, NOW - 600)
    rows = _rows(conn)
    assert rows["r6"] == ("reconciled:r6", "fetched", "pending") and rows["r7"][0] == "reconciled:r7"
    assert len(rows) == 8
    stored = json.loads(conn.execute("SELECT body FROM inbox WHERE response_key = 'r6'").fetchone()[0])
    assert stored["metadata"]["origin"] == "reconciled" and stored["source"] == "contact-form"
    assert stored["id"] == report.stored[0] and stored["email"] == "r6@example.org"
    after = state.read(conn, "contact-form")
    assert (after.watermark, after.last_outcome, after.reconciled, after.last_missing) == (
        NOW - 600,
        "ok",
        2,
        2,
    )

    # The next run starts at the watermark less `settle` and finds nothing new to store.
    memory.add("r9", NOW + 10)
    again = _run(conn, config, now=NOW + HOUR)
    assert (again.since, again.until) == (NOW - 1200, NOW + HOUR - 600)
    assert [m.response_id for m in again.missing] == ["r9"] and len(again.stored) == 1
    assert state.read(conn, "contact-form").reconciled == 3


def test_a_new_source_is_reconciled_from_its_first_run_on_and_its_history_is_left_to_import(
    conn: Connection, config: HubConfig, memory: MemoryReconciler
) -> None:
    memory.add("before", NOW - 3 * HOUR)  # collected before the hub ever heard of the form
    first = _run(conn, config)
    assert first.ok and (first.since, first.until) == (NOW - 600, NOW - 600) and first.listed == 0
    assert state.read(conn, "contact-form").watermark == NOW - 600
    memory.add("after", NOW + 60)
    later = _run(conn, config, now=NOW + HOUR)
    assert [m.response_id for m in later.missing] == ["after"]
    # An import brings the history in; it leaves the schedule's watermark and last run alone.
    imported = _run(conn, config, now=NOW + HOUR, since=NOW - 24 * HOUR, origin="imported")
    assert [m.response_id for m in imported.missing] == ["before"]
    after = state.read(conn, "contact-form")
    assert (after.watermark, after.last_run_at, after.imported) == (NOW + HOUR - 600, NOW + HOUR, 1)


def test_a_late_webhook_for_a_reconciled_response_is_a_duplicate(
    store: Store, conn: Connection, config: HubConfig, memory: MemoryReconciler
) -> None:
    memory.add("r6", NOW - 2 * HOUR)
    report = _run(conn, config, since=NOW - 24 * HOUR)
    assert len(report.stored) == 1
    owner, duplicate = _webhook(store, "ev6", "r6")
    assert duplicate and owner == report.stored[0]
    # Its own redelivery (same event id) is a duplicate of the same row too.
    assert _webhook(store, "ev6", "r6") == (owner, True)
    assert conn.execute("SELECT redeliveries FROM inbox WHERE id = ?", (owner,)).fetchone()[0] == 2
    assert len(_rows(conn)) == 1


def test_a_response_deleted_at_the_provider_changes_nothing_stored(
    conn: Connection, config: HubConfig, memory: MemoryReconciler
) -> None:
    memory.add("r6", NOW - 2 * HOUR)
    first = _run(conn, config, since=NOW - 24 * HOUR)
    del memory.submitted["r6"]
    again = _run(conn, config, since=NOW - 24 * HOUR)
    assert again.ok and again.listed == 0 and again.stored == []
    assert conn.execute("SELECT id, state FROM inbox").fetchall() == [(first.stored[0], "pending")]


def test_a_dry_run_shows_what_is_missing_and_changes_nothing(
    conn: Connection, config: HubConfig, memory: MemoryReconciler
) -> None:
    memory.add("r1", NOW - 2 * HOUR)
    report = _run(conn, config, since=NOW - 24 * HOUR, dry_run=True)
    assert [m.response_id for m in report.missing] == ["r1"] and report.stored == []
    assert conn.execute("SELECT count(*) FROM inbox").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM reconcile_state").fetchone()[0] == 0


def test_a_run_that_fails_half_way_keeps_what_it_stored_and_its_window(
    store: Store, conn: Connection, config: HubConfig, memory: MemoryReconciler
) -> None:
    _webhook(store, "ev0", "r0")  # received 5 h ago: the first window starts an hour before it
    for n in range(1, 6):
        memory.add(f"r{n}", NOW - 3 * HOUR + n)
    memory.fail_after_pages = 1
    report = _run(conn, config)
    assert report.error == "memory API: HTTP 401: token revoked" and not report.permanent
    assert len(report.stored) == 2
    failed = state.read(conn, "contact-form")
    assert (failed.watermark, failed.last_outcome, failed.last_error) == (None, "failed", report.error)

    memory.fail_after_pages = None
    retried = _run(conn, config, now=NOW + 60)
    assert retried.since == report.since == NOW - 6 * HOUR  # the same window again: no watermark yet
    assert [m.response_id for m in retried.missing] == ["r3", "r4", "r5"]
    assert state.read(conn, "contact-form").reconciled == 5

    memory.fail_after_pages, memory.permanent = 0, True
    refused = _run(conn, config, now=NOW + 120, since=NOW - 4 * HOUR)
    assert refused.permanent and state.read(conn, "contact-form").last_outcome == "refused"


def test_webhooks_stored_before_response_keys_existed_are_not_taken_for_missing(
    store: Store, conn: Connection, config: HubConfig, memory: MemoryReconciler
) -> None:
    body = {
        "event_id": "01HOLD",
        "event_type": "form_response",
        "form_response": {
            "form_id": "form1",
            "token": "r1",
            "submitted_at": "2026-12-01T10:00:00Z",
            "answers": [],
        },
    }
    _webhook(store, "01HOLD", None, body)  # as an older hookhub stored it: no response key
    memory.add("r1", NOW - 2 * HOUR)
    report = _run(conn, config)
    assert report.keys_filled == 1 and report.missing == []
    assert _rows(conn) == {"r1": ("01HOLD", "submission", "pending")}


def test_imports_go_only_to_routes_that_ask_for_the_history(
    conn: Connection, config: HubConfig, memory: MemoryReconciler
) -> None:
    memory.add("old1", NOW - 20 * HOUR)
    report = _run(conn, config, since=NOW - 30 * HOUR, origin="imported")
    assert report.webhook is None  # an import does not judge the webhook
    body = conn.execute("SELECT body, event_id FROM inbox").fetchone()
    submission = Submission.model_validate_json(body[0])
    assert body[1] == "imported:old1" and submission.metadata["origin"] == "imported"
    assert [d.destination for d in plan(config, submission).deliveries] == ["history"]
    reconciled = submission.model_copy(update={"metadata": {"origin": "reconciled"}})
    assert [d.destination for d in plan(config, reconciled).deliveries] == ["crm", "history"]
    assert state.read(conn, "contact-form").imported == 1


def test_the_schedule_runs_each_source_every_interval_and_a_failed_one_sooner(
    conn: Connection, config: HubConfig, memory: MemoryReconciler
) -> None:
    assert due_reconciles(config, conn, NOW) == ["contact-form"]
    _run(conn, config)
    assert due_reconciles(config, conn, NOW + HOUR - 1) == []
    assert due_reconciles(config, conn, NOW + HOUR) == ["contact-form"]
    memory.fail_after_pages = 0
    memory.add("r1", NOW + HOUR)
    _run(conn, config, now=NOW + 2 * HOUR)
    assert due_reconciles(config, conn, NOW + 2 * HOUR + 899) == []
    assert due_reconciles(config, conn, NOW + 2 * HOUR + 900) == ["contact-form"]


def test_a_disabled_webhook_fires_one_alert_until_it_is_back(
    conn: Connection, config: HubConfig, memory: MemoryReconciler
) -> None:
    config = parse_config(CONFIG + "alerts: {to: [crm]}\n", "c.yaml", {})[0]
    facts = rules.Facts(started_at=NOW - HOUR)
    memory.webhook = WebhookHealth("disabled", "Typeform says the webhook 'hookhub' is disabled")
    _run(conn, config, since=NOW - 24 * HOUR)
    fired = [a for a in rules.evaluate(conn, config, facts, NOW) if a.kind == "webhook"]
    assert [(a.key, a.state, a.details) for a in fired] == [
        ("contact-form", "firing", ["Typeform says the webhook 'hookhub' is disabled"])
    ]
    assert "disabled at the provider" in fired[0].summary
    [line] = queries.sources(conn, config, NOW)  # the console's overview says it too
    assert line.warnings == ("webhook disabled: Typeform says the webhook 'hookhub' is disabled",)
    _run(conn, config, now=NOW + HOUR)
    assert [a for a in rules.evaluate(conn, config, facts, NOW + HOUR) if a.kind == "webhook"] == []
    memory.webhook = WebhookHealth("ok", "enabled, posting to this hub")
    _run(conn, config, now=NOW + 2 * HOUR)
    back = [a for a in rules.evaluate(conn, config, facts, NOW + 2 * HOUR) if a.kind == "webhook"]
    assert [(a.key, a.state) for a in back] == [("contact-form", "recovered")]


def test_submissions_that_came_only_through_reconciliation_are_counted_in_one_alert(
    conn: Connection, memory: MemoryReconciler
) -> None:
    config = parse_config(CONFIG + "alerts: {to: [crm]}\n", "c.yaml", {})[0]
    facts = rules.Facts(started_at=NOW - HOUR)
    for n in range(12):
        memory.add(f"r{n}", NOW - 2 * HOUR + n)
    _run(conn, config, since=NOW - 24 * HOUR)
    fired = [a for a in rules.evaluate(conn, config, facts, NOW + 1) if a.kind == "reconciled"]
    assert [(a.key, a.count) for a in fired] == [("contact-form", 12)]
    assert fired[0].summary.startswith(
        "12 submission(s) of `contact-form` arrived only through reconciliation"
    )
    later = [a for a in rules.evaluate(conn, config, facts, NOW + HOUR + 1) if a.kind == "reconciled"]
    assert [(a.key, a.state) for a in later] == [("contact-form", "recovered")]


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_a_source_that_cannot_be_reconciled_says_what_to_do(
    store: Store, conn: Connection, memory: MemoryReconciler
) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(
            "sources:\n  w: {provider: wpforms, secret: s, reconcile: {every: 1h}}\n"
            "  t: {provider: typeform, secret: s, reconcile: {every: 1h, credentials: {token: x}}}\n",
            "c.yaml",
            {},
        )
    problems = [str(p) for p in error.value.problems]
    assert problems[0].startswith("c.yaml:2:37: sources.w.reconcile: provider wpforms has no responses API")
    assert "typeform" in problems[0]
    assert problems[1].startswith(
        "c.yaml:3:5: sources.t.reconcile.form_id: missing required key 'form_id'"
    ) or ("form_id" in problems[1]), problems
    config = parse_config("sources:\n  contact-form: {provider: typeform, secret: s}\n", "c.yaml", {})[0]
    with pytest.raises(NotReconcilable, match="has no `reconcile:` settings"):
        _run(conn, config)


def test_a_response_the_connector_cannot_read_is_a_dead_letter_and_the_run_goes_on(
    conn: Connection, config: HubConfig, memory: MemoryReconciler
) -> None:
    for n in range(1, 5):
        memory.add(f"r{n}", NOW - 2 * HOUR + n)
    memory.unreadable = {"r2"}
    report = _run(conn, config, since=NOW - 24 * HOUR)
    assert report.ok and report.listed == 4 and len(report.stored) == 4
    assert state.read(conn, "contact-form").watermark == NOW - 600
    rows = dict(conn.execute("SELECT response_key, state FROM inbox").fetchall())
    assert rows == {"r1": "pending", "r2": "failed", "r3": "pending", "r4": "pending"}
    error = conn.execute("SELECT error FROM inbox WHERE response_key = 'r2'").fetchone()[0]
    assert error == "reconciled from the memory API, but not readable: answers is not a list"
    assert _run(conn, config, since=NOW - 24 * HOUR).stored == []  # not stored twice


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_a_store_that_refuses_the_rows_fails_the_run_with_the_reason_and_keeps_the_window(
    store: Store, conn: Connection, config: HubConfig, memory: MemoryReconciler
) -> None:
    memory.add("r1", NOW - 2 * HOUR)
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON inbox BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    report = _run(conn, config, since=NOW - 24 * HOUR)
    assert report.error is not None and "the store could not be written" in report.error
    assert "disk full" in report.error and not report.permanent
    failed = state.read(conn, "contact-form")
    assert (failed.last_outcome, failed.watermark) == ("failed", None)
    conn.execute("DROP TRIGGER refuse")
    assert len(_run(conn, config, since=NOW - 24 * HOUR).stored) == 1
