"""`hookhub serve` killed with SIGKILL right after its 2xx, then restarted: delivered exactly once.

This runs the real command in its own process group (it and its ephemeral Prefect server
die together), against a loopback destination that counts deliveries by webhook-id.
"""

from __future__ import annotations

import sqlite3
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


@pytest.mark.timeout(600)
def test_sigkill_after_2xx_then_restart_delivers_exactly_once(tmp_path: Path) -> None:
    fake = FakeDestination().start()
    config = tmp_path / "connectors.yaml"
    config.write_text(f"""
sources:
  contact-form: {{provider: typeform, secret: {FULL['secret']}}}
destinations:
  crm: {{type: webhook, url: "{fake.url('/hook')}", secret: {WHSEC}}}
routes:
  - {{name: crm, from: [contact-form], to: [crm]}}
""", encoding="utf-8")
    data_dir, prefect_home, log = tmp_path / "data", tmp_path / "prefect", tmp_path / "serve.log"
    try:
        first = ServeProcess(config, data_dir, prefect_home, log)
        headers = {k: v for k, v in FULL["headers"].items() if k.lower() != "content-length"}
        answer = httpx.post(f"{first.url}/hooks/contact-form", content=FULL["body"].encode("utf-8"),
                            headers=headers, timeout=30)
        assert answer.status_code == 200 and answer.json()["status"] == "accepted"
        submission_id = answer.json()["id"]
        first.kill()
        before_restart = len(fake.received("/hook"))

        second = ServeProcess(config, data_dir, prefect_home, log)
        wait_for(lambda: (_delivery(data_dir / "spool.db") or ("", 0))[0] == "delivered", timeout=300,
                 what="delivery after restart")
        assert by_webhook_id(fake.received("/hook")) == {f"{submission_id}.crm": 1}, before_restart
        assert second.terminate() == 0
        # A clean stop says so and nothing else: no traceback from us, uvicorn or Prefect.
        assert "Traceback" not in log.read_text(errors="replace")
    finally:
        fake.stop()
