"""`hookhub backfill`: a route applied to stored submissions in a time range plans only the pairs
that do not exist (never a delivered one again), twice is once, and the dispatcher delivers them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hub.cli import main as cli
from hub.config.loader import load_config
from hub.config.models import RouteConfig
from hub.spool import delivery_outcomes
from hub.spool.backfill import backfill
from hub.spool.rows import Decision
from hub.spool.transactions import open_spool
from tests.admin_hub import admin_hub
from tests.spool_fill import store

ROUTE = RouteConfig.model_validate(
    {"name": "leads", "from": ["tf"], "when": "email endswith '@lead.example'", "to": ["crm", "chat"]}
)


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    conn = open_spool(tmp_path / "spool.db")
    store(conn, "OLD", 50.0, email="a@lead.example")  # before the range
    store(conn, "A", 100.0, email="b@lead.example", destinations=("crm",))
    delivery_outcomes.record(conn, 101.0, [Decision("A", "crm", "delivered", "delivered")])
    store(conn, "B", 200.0, email="c@lead.example")
    store(conn, "C", 300.0, email="d@other.example")  # `when` false
    store(conn, "D", 400.0, source="jf", email="e@lead.example")  # not in `from`
    store(conn, "LATE", 900.0, email="f@lead.example")  # after the range
    conn.execute(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
        " VALUES ('P', 250, 'tf', 'typeform', 'p', 'submission', x'7b7d', 'pending')"
    )
    return conn


def pairs(conn: sqlite3.Connection) -> dict[tuple[str, str], tuple[str, str]]:
    rows = conn.execute("SELECT inbox_id, destination, route, status FROM deliveries").fetchall()
    return {(i, d): (r, s) for i, d, r, s in rows}


def test_dry_run_counts_and_changes_nothing(conn: sqlite3.Connection) -> None:
    before = pairs(conn)
    counts = backfill(conn, ROUTE, 100.0, 500.0, 1000.0, dry_run=True)
    assert (counts.examined, counts.matched, counts.existing) == (4, 2, 1)
    assert counts.planned == {"crm": 1, "chat": 2}
    assert pairs(conn) == before


def test_backfill_plans_missing_pairs_once(conn: sqlite3.Connection) -> None:
    seen: list[int] = []
    counts = backfill(conn, ROUTE, 100.0, 500.0, 1000.0, progress=lambda c: seen.append(c.examined))
    assert counts.planned == {"crm": 1, "chat": 2}
    assert seen == [4]
    assert pairs(conn) == {
        ("A", "crm"): ("all", "delivered"),  # left as it was: never delivered twice
        ("A", "chat"): ("leads", "pending"),
        ("B", "crm"): ("leads", "pending"),
        ("B", "chat"): ("leads", "pending"),
    }
    assert conn.execute("SELECT state FROM inbox WHERE id='A'").fetchone() == ("routed",)
    again = backfill(conn, ROUTE, 100.0, 500.0, 1001.0)
    assert (again.planned, again.existing) == ({}, 4)


def test_backfill_through_the_command_line_is_delivered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with admin_hub(tmp_path) as running:
        first = running.post()
        running.wait_delivered(first, "crm")
        # The admin adds a route to chat (the serving hub need not reload: the route's rows carry it).
        later = tmp_path / "later.yaml"
        later.write_text(
            running.config.read_text(encoding="utf-8").replace(
                "routes:\n", "routes:\n  - {name: to-chat, from: [form], to: [chat]}\n"
            ),
            encoding="utf-8",
        )
        assert [r.name for r in load_config(later).routes] == ["to-chat", "to-crm"]
        args = ["backfill", "--route", "to-chat", "--since", "1h", "--config", str(later)]
        args += ["--data-dir", str(running.hub.data_dir)]
        assert cli([*args, "--dry-run"]) == 0
        assert "would plan: chat 1; 0 already had a delivery" in capsys.readouterr().out
        assert cli(args) == 0
        assert "planned: chat 1" in capsys.readouterr().out
        running.wait_delivered(first, "chat", "the backfilled delivery")
        assert len(running.sink.received("/crm")) == 1  # the delivered pair was not sent again
        assert cli(args) == 0
        assert "planned: nothing; 1 already had a delivery" in capsys.readouterr().out
        assert cli(["backfill", "--route", "nosuch", "--since", "1h", "--config", str(later)]) == 2
        assert "no route named 'nosuch'" in capsys.readouterr().err
