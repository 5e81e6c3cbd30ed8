"""/readyz's `delivery` part and `hookhub status` while delivery is broken, over a real socket.

The dispatcher's view is a `DeliveryHealth` the test sets as the dispatcher would (Prefect's API
refusing connections, a loop that stopped beating), so no Prefect server has to die for it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hub.cli import main as cli
from hub.server import Hub
from hub.spool import delivery_outcomes, routing_store
from hub.spool.lock import DataDirLock
from hub.spool.rows import Decision, PlannedDelivery
from hub.spool.transactions import open_spool
from tests.harness import RunningServer, start_hub

STATUS_TOKEN = "status-token-for-the-status-tests"
CONFIG = f"""
server: {{status_token: {STATUS_TOKEN}}}
sources:
  tf: {{provider: typeform, secret: status-secret}}
destinations:
  crm: {{type: file, path: out.jsonl}}
routes:
  - {{name: all, from: ["*"], to: [crm]}}
"""
REMOTE = {"x-forwarded-for": "203.0.113.9"}


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Hub, RunningServer]]:
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    hub, server = start_hub(config, tmp_path / "data")
    lock = DataDirLock(hub.data_dir)
    lock.acquire(server.port)  # as `hookhub serve` does
    yield hub, server
    lock.release()
    server.stop()


def _spool_with_a_retry_and_a_pending_submission(hub: Hub, now: float) -> None:
    conn = open_spool(hub.spool_path)
    for name, state, age in (("R", "claimed", 600.0), ("P", "pending", 90.0)):
        conn.execute(
            "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
            " VALUES (?, ?, 'tf', 'typeform', ?, 'submission', x'7b7d', ?)",
            (name, now - age, name, state),
        )
    routing_store.save_routing(conn, now - 300, {"R": ("{}", [PlannedDelivery("crm", "all")])}, {})
    retry = Decision(
        "R", "crm", "retrying", "retry", next_attempt_at=now + 120, status_code=503, error="HTTP 503"
    )
    delivery_outcomes.record(conn, now - 200, [retry])
    conn.close()


def test_broken_delivery_keeps_readyz_ready_and_shows_why(
    running, capsys: pytest.CaptureFixture[str]
) -> None:
    hub, server = running
    now = time.time()
    _spool_with_a_retry_and_a_pending_submission(hub, now)
    health = hub.health
    health.dispatching = True
    health.prefect_reachable, health.prefect_error = False, "ConnectError: connection refused"
    health.prefect_checked_at, health.dispatcher_beat_at = now - 5, now - 120  # the loop is stuck

    ready = httpx.get(f"{server.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"  # it still accepts webhooks
    delivery = ready.json()["delivery"]
    assert delivery["prefect_reachable"] is False and delivery["dispatcher_alive"] is False
    assert delivery["prefect_error"] == "ConnectError: connection refused"
    assert delivery["pending"] == 1 and 85 <= delivery["oldest_pending_age_seconds"] <= 120
    # Details name targets and errors: a remote caller gets none of it, a status token holder does.
    remote = httpx.get(f"{server.url}/readyz", headers=REMOTE, timeout=10)
    assert remote.status_code == 200 and "delivery" not in remote.json()
    token = {**REMOTE, "authorization": f"Bearer {STATUS_TOKEN}"}
    assert "delivery" in httpx.get(f"{server.url}/readyz", headers=token, timeout=10).json()

    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert "hookhub_prefect_up 0.0" in metrics and "hookhub_dispatcher_up 0.0" in metrics

    assert cli(["status", "--data-dir", str(hub.data_dir)]) == 0
    out = capsys.readouterr().out
    assert "dispatcher NOT running, Prefect UNREACHABLE (ConnectError: connection refused)" in out
    assert "pending    1 submissions not routed yet, the oldest for 9" in out  # 90 s and a little
    assert "retrying   crm: 1, next attempt " in out and "last: HTTP 503\n" in out
