"""Pause and resume a destination with the real dispatcher: a paused destination's deliveries
stay pending (no claim, no attempt, no dead letter) while the loopback receiver gets nothing;
resume delivers them; resume also enables a destination a 410 disabled."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from hub.spool import actions, claiming, delivery_outcomes, routing_store
from hub.spool.rows import PlannedDelivery
from hub.spool.transactions import open_spool
from tests.admin_hub import admin_hub
from tests.harness import wait_for


def test_a_paused_destination_keeps_its_deliveries_pending_until_resumed(tmp_path: Path) -> None:
    with admin_hub(tmp_path) as running:
        first = running.post()
        running.wait_delivered(first, "crm", "a first delivery (the dispatcher and Prefect work)")
        conn = open_spool(running.hub.spool_path)
        assert actions.pause(conn, "crm", time.time(), configured={"crm", "chat"})
        assert not actions.pause(conn, "crm", time.time())  # already paused: nothing changes
        held = [running.post() for _ in range(3)]
        wait_for(
            lambda: all(running.status(i, "crm") == "pending" for i in held),
            timeout=60,
            what="the held submissions routed (their deliveries planned)",
        )
        # Routing happened while paused; the dispatcher keeps polling. A later delivery to the
        # other path shows it went on working meanwhile, so "nothing sent" is not just "not yet".
        resent = actions.resend(conn, first, time.time(), ["chat"], {"crm", "chat"})
        assert [r.action for r in resent] == ["new"]
        running.wait_delivered(first, "chat", "a delivery to an unpaused destination while crm is paused")
        assert len(running.sink.received("/crm")) == 1
        attempts = running.rows("SELECT count(*) FROM attempts WHERE destination='crm'")[0][0]
        assert attempts == 1
        assert {running.status(i, "crm") for i in held} == {"pending"}

        resumed = actions.resume(conn, "crm")
        assert (resumed.was_paused, resumed.was_disabled, resumed.dead) == (True, None, 0)
        for inbox_id in held:
            running.wait_delivered(inbox_id, "crm")
        assert len(running.sink.received("/crm")) == 4


def test_resume_enables_a_destination_a_410_disabled(tmp_path: Path) -> None:
    conn = open_spool(tmp_path / "spool.db")
    delivery_outcomes.disable_destination(conn, 10.0, "crm", "answered HTTP 410: gone")
    assert delivery_outcomes.disabled_destinations(conn) == {"crm": "answered HTTP 410: gone"}
    resumed = actions.resume(conn, "crm", {"crm"})
    assert (resumed.was_paused, resumed.was_disabled) == (False, "answered HTTP 410: gone")
    assert delivery_outcomes.disabled_destinations(conn) == {}


def test_claims_skip_a_paused_destination(tmp_path: Path) -> None:
    conn: sqlite3.Connection = open_spool(tmp_path / "spool.db")
    conn.execute(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
        " VALUES ('A', 1, 'form', 'typeform', 'e', 'submission', x'7b7d', 'claimed')"
    )
    actions.pause(conn, "crm", 1.0)
    sent = routing_store.save_routing(
        conn, 2.0, {"A": ("{}", [PlannedDelivery("crm", "r"), PlannedDelivery("chat", "r")])}, {}
    )
    assert sent == [("A", "chat")]  # routing sends the unpaused one at once
    assert not claiming.has_work(conn, 100.0)
    assert claiming.next_due_at(conn) is None
    assert claiming.claim_due(conn, 100.0, 10) == []
    actions.resume(conn, "crm")
    assert claiming.has_work(conn, 100.0)
    assert claiming.claim_due(conn, 100.0, 10) == [("A", "crm")]


def test_unknown_destinations_are_refused_with_the_configured_ones(tmp_path: Path) -> None:
    conn = open_spool(tmp_path / "spool.db")
    with pytest.raises(actions.UnknownName, match=r"no destination named 'nosuch'; configured: chat, crm"):
        actions.pause(conn, "nosuch", 1.0, configured={"crm", "chat"})
    with pytest.raises(actions.UnknownName, match="nosuch"):
        actions.resume(conn, "nosuch", {"crm"})
