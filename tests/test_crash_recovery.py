"""`hookhub serve` killed with SIGKILL right after its 2xx, then restarted: delivered exactly once.

This runs the real command in its own process group (it and its ephemeral Prefect server
die together), against a loopback destination that counts deliveries by webhook-id.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fake_destination import FakeDestination, by_webhook_id
from tests.harness import PROVIDER_FIXTURES, free_socket, load_fixture, wait_for

FULL = load_fixture(PROVIDER_FIXTURES / "typeform" / "full_event_registration.json")
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class ServeProcess:
    def __init__(self, config: Path, data_dir: Path, prefect_home: Path, log: Path) -> None:
        sock = free_socket()
        self.port = sock.getsockname()[1]
        sock.close()
        env = {**os.environ, "PREFECT_HOME": str(prefect_home)}
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--config", str(config), "--data-dir", str(data_dir),
             "--port", str(self.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"), start_new_session=True,
        )
        wait_for(self._healthy, timeout=60, what="hookhub serve to answer /healthz")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, f"hookhub serve exited: {self.log.read_text(errors='replace')}"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self) -> int:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of the group
            except ProcessLookupError:
                pass


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
