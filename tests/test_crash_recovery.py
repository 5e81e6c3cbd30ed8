"""`hookhub serve` killed with SIGKILL right after its 2xx, then restarted: delivered exactly once.

This runs the real command in its own process group (it and its ephemeral Prefect server
die together), against a loopback destination that counts deliveries by webhook-id.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import httpx
import pytest

from tests.fake_destination import FakeDestination, by_webhook_id
from tests.harness import PROVIDER_FIXTURES, ServeProcess, load_fixture, wait_for

FULL = load_fixture(PROVIDER_FIXTURES / "typeform" / "full_event_registration.json")
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _delivery(spool: Path) -> tuple[str, int] | None:
    conn = sqlite3.connect(spool)
    try:
        return conn.execute("SELECT status, attempts FROM deliveries WHERE destination='crm'").fetchone()
    finally:
        conn.close()


def _config(tmp_path: Path, fake: FakeDestination) -> Path:
    config = tmp_path / "connectors.yaml"
    config.write_text(
        f"""
sources:
  contact-form: {{provider: typeform, secret: {FULL["secret"]}}}
destinations:
  crm: {{type: webhook, url: "{fake.url("/hook")}", secret: {WHSEC}}}
routes:
  - {{name: crm, from: [contact-form], to: [crm]}}
""",
        encoding="utf-8",
    )
    return config


def _post(serve: ServeProcess, expect: str = "accepted") -> str:
    headers = {k: v for k, v in FULL["headers"].items() if k.lower() != "content-length"}
    answer = httpx.post(
        f"{serve.url}/hooks/contact-form", content=FULL["body"].encode("utf-8"), headers=headers, timeout=30
    )
    assert answer.status_code == 200 and answer.json()["status"] == expect
    return str(answer.json()["id"])


def _inbox_state(spool: Path) -> str:
    conn = sqlite3.connect(spool)
    try:
        return str(conn.execute("SELECT state FROM inbox WHERE kind='submission'").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.timeout(600)
def test_sigkill_after_2xx_then_restart_delivers_exactly_once(tmp_path: Path) -> None:
    fake = FakeDestination().start()
    config = _config(tmp_path, fake)
    data_dir, prefect_home, log = tmp_path / "data", tmp_path / "prefect", tmp_path / "serve.log"
    try:
        first = ServeProcess(config, data_dir, prefect_home, log)
        submission_id = _post(first)
        first.kill()
        before_restart = len(fake.received("/hook"))

        second = ServeProcess(config, data_dir, prefect_home, log)
        wait_for(
            lambda: (_delivery(data_dir / "spool.db") or ("", 0))[0] == "delivered",
            timeout=300,
            what="delivery after restart",
        )
        assert by_webhook_id(fake.received("/hook")) == {f"{submission_id}.crm": 1}, before_restart
        assert second.terminate() == 0
        # A clean stop says so and nothing else: no traceback from us, uvicorn or Prefect.
        assert "Traceback" not in log.read_text(errors="replace")
    finally:
        fake.stop()


@pytest.mark.timeout(600)
def test_sigterm_to_the_group_with_a_batch_in_flight_stops_cleanly(tmp_path: Path) -> None:
    """Ctrl-C or a service manager signal the whole group: Prefect's server stops at once, so the
    batch under way can no longer report its state. The hub still stops cleanly, and what the
    batch delivered is not sent again after the restart."""
    fake = FakeDestination().start()
    config = _config(tmp_path, fake)
    data_dir, prefect_home, log = tmp_path / "data", tmp_path / "prefect", tmp_path / "serve.log"
    try:
        fake.hold("/hook", 120)
        first = ServeProcess(config, data_dir, prefect_home, log)
        submission_id = _post(first)
        wait_for(lambda: fake.waiting("/hook") == 1, timeout=120, what="the delivery to be on the wire")
        threading.Timer(1.0, fake.release, args=("/hook",)).start()
        assert first.terminate() == 0
        stopped = log.read_text(errors="replace")
        assert "Traceback" not in stopped
        assert "release_failed" not in stopped  # claims went back before the spool was closed
        assert _delivery(data_dir / "spool.db") == ("delivered", 1)

        second = ServeProcess(config, data_dir, prefect_home, log)
        assert _post(second, expect="duplicate") == submission_id  # the provider's retry of it
        # The restarted dispatcher gets going (Prefect ready) and finds nothing left to send.
        wait_for(
            lambda: log.read_text(errors="replace").count('"prefect_ready"') == 2,
            timeout=120,
            what="the restarted hub's Prefect",
        )
        wait_for(
            lambda: _inbox_state(data_dir / "spool.db") == "done", timeout=30, what="the submission done"
        )
        assert second.terminate() == 0
        assert by_webhook_id(fake.received("/hook")) == {f"{submission_id}.crm": 1}
        assert "Traceback" not in log.read_text(errors="replace")
    finally:
        fake.stop()
