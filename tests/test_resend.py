"""Resend a delivered submission with the real dispatcher: it is sent again with a new
idempotency key (webhook-id `<id>.<destination>.r1`), the ledger keeps the first attempt and
adds the resend's, and a dead pair or a destination it never went to behave as documented."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hub.spool import actions, delivery_outcomes
from hub.spool.detail import submission_detail
from hub.spool.rows import Decision
from hub.spool.transactions import open_spool
from tests.admin_hub import admin_hub
from tests.spool_fill import store


def test_a_resend_is_sent_again_with_a_new_webhook_id(tmp_path: Path) -> None:
    with admin_hub(tmp_path) as running:
        inbox_id = running.post()
        running.wait_delivered(inbox_id, "crm")
        conn = open_spool(running.hub.spool_path)
        done = actions.resend(conn, inbox_id, time.time(), None, {"crm", "chat"})
        assert [(r.destination, r.action, r.generation) for r in done] == [("crm", "resend", 1)]
        running.wait_delivered(inbox_id, "crm", "the resend delivered")
        received = running.sink.received("/crm")
        assert [r.webhook_id for r in received] == [f"{inbox_id}.crm", f"{inbox_id}.crm.r1"]
        assert received[0].body == received[1].body  # the same submission, sent again
        crm = next(d for d in submission_detail(conn, inbox_id).deliveries if d.destination == "crm")
        assert (crm.generation, crm.attempts) == (1, 2)
        assert [(a.attempt, a.generation, a.status_code) for a in crm.history] == [(1, 0, 200), (2, 1, 200)]
        assert conn.execute("SELECT state FROM inbox WHERE id=?", (inbox_id,)).fetchone() == ("done",)


def test_resend_refuses_what_is_on_its_way_and_replays_what_is_dead(tmp_path: Path) -> None:
    conn = open_spool(tmp_path / "spool.db")
    store(conn, "A", 1.0, destinations=("crm", "chat"))
    with pytest.raises(actions.NothingToResend, match="A is already on its way to crm"):
        actions.resend(conn, "A", 2.0, ["crm"])
    with pytest.raises(actions.NothingToResend, match="A is already on its way to chat, crm"):
        actions.resend(conn, "A", 2.0)
    delivery_outcomes.record(
        conn,
        3.0,
        [
            Decision("A", "crm", "dead", "failed", error="HTTP 400", remote_id="lead-1"),
            Decision("A", "chat", "delivered", "delivered", remote_id="ts-1"),
        ],
    )
    assert conn.execute("SELECT state FROM inbox WHERE id='A'").fetchone() == ("failed",)
    done = actions.resend(conn, "A", 4.0, ["crm", "chat"])
    assert [(r.destination, r.action, r.generation) for r in done] == [
        ("crm", "replay", 0),
        ("chat", "resend", 1),
    ]
    rows = conn.execute(
        "SELECT destination, status, first_attempt_at, remote_id, previous_remote_id FROM deliveries"
        " ORDER BY destination"
    )
    # The delivered pair's remote id moves aside (sent again, not edited); the dead one keeps its own.
    assert rows.fetchall() == [
        ("chat", "pending", None, None, "ts-1"),
        ("crm", "pending", None, "lead-1", None),
    ]
    assert conn.execute("SELECT state FROM inbox WHERE id='A'").fetchone() == ("routed",)


def test_resend_to_another_destination_adds_a_manual_delivery(tmp_path: Path) -> None:
    conn = open_spool(tmp_path / "spool.db")
    store(conn, "A", 1.0)  # routed nowhere
    with pytest.raises(actions.UnknownName, match=r"no destination named 'crn'; configured: chat, crm"):
        actions.resend(conn, "A", 2.0, ["crn"], {"crm", "chat"})
    with pytest.raises(actions.UnknownName, match="no submission with id 'NOSUCH'"):
        actions.resend(conn, "NOSUCH", 2.0)
    with pytest.raises(actions.NothingToResend, match="A was delivered nowhere yet; name a destination"):
        actions.resend(conn, "A", 2.0)
    done = actions.resend(conn, "A", 2.0, ["chat"], {"crm", "chat"})
    assert [(r.destination, r.action) for r in done] == [("chat", "new")]
    row = conn.execute(
        "SELECT route, status FROM deliveries WHERE inbox_id='A' AND destination='chat'"
    ).fetchone()
    assert row == (actions.MANUAL_ROUTE, "pending")
