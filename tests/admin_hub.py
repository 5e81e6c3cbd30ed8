"""A real hub with its dispatcher and two loopback webhook destinations, for the admin actions'
tests (pause/resume, resend, send elsewhere): signed Typeform posts in, the ledger read back."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from hub.config.loader import load_config
from hub.runtime import prepare_sources
from hub.server import Hub
from tests.fake_destination import FakeDestination
from tests.harness import RunningServer, start_hub, wait_for

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TYPEFORM_SECRET = "admin-actions-typeform-secret"
DELIVERY_TIMEOUT = 120.0
"""A first delivery includes Prefect's ephemeral server starting on this shared machine."""


@dataclass
class AdminHub:
    hub: Hub
    server: RunningServer
    sink: FakeDestination
    config: Path

    def post(self) -> str:
        """One signed submission; its id."""
        source = prepare_sources(load_config(self.config))["form"]
        url = f"{self.server.url}/hooks/form"
        request = source.connector.sample_request(source.config, url, time.time())
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        answer = httpx.post(url, content=request.body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        inbox_id: str = answer.json()["id"]
        return inbox_id

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(self.hub.spool_path)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def status(self, inbox_id: str, destination: str) -> object:
        found = self.rows(
            "SELECT status FROM deliveries WHERE inbox_id=? AND destination=?", inbox_id, destination
        )
        return found[0][0] if found else None

    def wait_delivered(self, inbox_id: str, destination: str, what: str = "") -> None:
        wait_for(
            lambda: self.status(inbox_id, destination) == "delivered",
            timeout=DELIVERY_TIMEOUT,
            interval=0.1,
            what=what or f"{inbox_id} delivered to {destination}",
        )


def write_config(path: Path, sink: FakeDestination) -> Path:
    path.write_text(
        f"""
sources:
  form: {{provider: typeform, secret: {TYPEFORM_SECRET}}}
destinations:
  crm: {{type: webhook, url: "{sink.url("/crm")}", secret: {WHSEC}, retry: {{initial: 1, max_delay: 2}}}}
  chat: {{type: webhook, url: "{sink.url("/chat")}", secret: {WHSEC}, retry: {{initial: 1, max_delay: 2}}}}
routes:
  - {{name: to-crm, from: [form], to: [crm]}}
dispatch: {{batch_wait: 0.1}}
""",
        encoding="utf-8",
    )
    return path


@contextmanager
def admin_hub(tmp_path: Path) -> Iterator[AdminHub]:
    sink = FakeDestination().start()
    config = write_config(tmp_path / "connectors.yaml", sink)
    hub, server = start_hub(config, tmp_path / "data", dispatch=True)
    try:
        yield AdminHub(hub, server, sink, config)
    finally:
        server.stop()
        sink.stop()
