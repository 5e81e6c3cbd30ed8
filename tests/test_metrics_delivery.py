"""Delivery metrics, /readyz's `delivery` part and `hookhub status` over a real running hub.

A real uvicorn hub with its dispatcher, real Prefect flow runs, webhook deliveries sent by a
delivery worker process (so the counters must come from the spool, not from memory) and a
loopback fake destination that answers each path as scripted.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.cli import main as cli
from tests.fake_destination import FakeDestination
from tests.harness import PROVIDER_FIXTURES, RunningServer, load_fixture, start_hub, wait_for

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FULL = load_fixture(PROVIDER_FIXTURES / "typeform" / "full_event_registration.json")
FIRST_DELIVERY = 180.0  # Prefect's ephemeral server starts with the session's first flow run

CONFIG = """
sources:
  contact-form: {{provider: typeform, secret: {secret}}}
destinations:
  crm: {{type: webhook, url: {crm}, secret: {whsec}, retry: {{initial: 0.2, max_delay: 0.5}}}}
  bad: {{type: webhook, url: {bad}, secret: {whsec}}}
  gone: {{type: webhook, url: {gone}, secret: {whsec}}}
  slow: {{type: webhook, url: {slow}, secret: {whsec}, retry: {{initial: 600, max_delay: 600}}}}
  quiet: {{type: webhook, url: {crm}, secret: {whsec}}}
routes:
  - name: everything
    from: ["*"]
    to: [crm, bad, gone, slow]
  - name: only-big-orders
    from: ["*"]
    when: "source == 'no-such-source'"
    to: [quiet, crm]
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def fake() -> Iterator[FakeDestination]:
    destination = FakeDestination().start()
    yield destination
    destination.stop()


def scrape(server: RunningServer) -> Samples:
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def statuses(spool: Path) -> dict[str, str]:
    conn = sqlite3.connect(spool)
    try:
        return dict(conn.execute("SELECT destination, status FROM deliveries").fetchall())
    finally:
        conn.close()


def settled(spool: Path) -> bool:
    return statuses(spool) == {"crm": "delivered", "bad": "dead", "gone": "dead", "slow": "retrying"}


def test_metrics_readyz_and_status_after_deliveries_retries_and_dead_letters(
    tmp_path: Path, fake: FakeDestination, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script("/crm", (500, {}, "boom"), (200, {}, "{}"))
    fake.script("/bad", (400, {}, '{"error": "unknown field"}'))
    fake.script("/gone", (410, {}, "gone"))
    fake.script("/slow", (503, {}, "maintenance"))
    config = tmp_path / "connectors.yaml"
    urls = {name: fake.url(f"/{name}") for name in ("crm", "bad", "gone", "slow")}
    config.write_text(CONFIG.format(secret=FULL["secret"], whsec=WHSEC, **urls), encoding="utf-8")
    hub, server = start_hub(config, tmp_path / "data", dispatch=True)
    try:
        headers = {k: v for k, v in FULL["headers"].items() if k.lower() != "content-length"}
        body = FULL["body"].encode("utf-8")
        submission_id = httpx.post(f"{server.url}/hooks/contact-form", content=body, headers=headers).json()[
            "id"
        ]
        wait_for(lambda: settled(hub.spool_path), timeout=FIRST_DELIVERY, what="every destination settled")

        def counted() -> Samples | None:
            samples = scrape(server)  # served from a snapshot at most a second old
            return (
                samples
                if value(samples, "hookhub_deliveries_total", destination="crm", outcome="delivered")
                else None
            )

        samples = wait_for(counted, timeout=10, what="the delivery counted in /metrics")
        assert value(samples, "hookhub_deliveries_total", destination="crm", outcome="retrying") == 1
        assert value(samples, "hookhub_delivery_attempts_total", destination="crm") == 2
        assert value(samples, "hookhub_delivery_latency_seconds_count", destination="crm") == 1
        latency = value(samples, "hookhub_delivery_latency_seconds_sum", destination="crm")
        assert latency is not None and 0 < latency < 60
        assert value(samples, "hookhub_delivery_latency_seconds_bucket", destination="crm", le="+Inf") == 1
        assert value(samples, "hookhub_deliveries_total", destination="bad", outcome="dead") == 1
        assert value(samples, "hookhub_deliveries_total", destination="bad", outcome="delivered") == 0
        assert value(samples, "hookhub_deliveries_total", destination="gone", outcome="dead") == 1
        assert value(samples, "hookhub_deliveries_total", destination="slow", outcome="retrying") == 1
        # A false `when` counts as skipped for the destination it kept the submission from,
        # not for one another route delivers it to.
        assert value(samples, "hookhub_deliveries_total", destination="quiet", outcome="skipped") == 1
        assert value(samples, "hookhub_deliveries_total", destination="crm", outcome="skipped") in (None, 0)
        assert value(samples, "hookhub_dead_letters", destination="bad") == 1
        assert value(samples, "hookhub_dead_letters", destination="gone") == 1
        assert value(samples, "hookhub_dead_letters", destination="crm") == 0
        assert value(samples, "hookhub_deliveries_waiting", destination="slow", status="retrying") == 1
        assert value(samples, "hookhub_delivery_overdue_seconds", destination="slow") == 0  # due in 10 min
        assert value(samples, "hookhub_destination_disabled", destination="gone") == 1
        assert value(samples, "hookhub_destination_disabled", destination="crm") == 0
        assert value(samples, "hookhub_submissions", state="routed") == 1  # slow is still retrying
        assert value(samples, "hookhub_pending_oldest_age_seconds") == 0
        assert (value(samples, "hookhub_spool_size_bytes") or 0) > 0
        assert value(samples, "hookhub_prefect_up") == 1 and value(samples, "hookhub_dispatcher_up") == 1
        assert value(samples, "hookhub_webhooks_total", source="contact-form", outcome="accepted") == 1
        # No label carries an id or anything else unbounded.
        assert not any(submission_id in str(labels) for _, labels in samples)

        assert hub.config.reload()
        reloaded = scrape(server)
        assert value(reloaded, "hookhub_config_reloads_total", result="accepted") == 1
        assert value(reloaded, "hookhub_config_reloads_total", result="rejected") == 0
        assert (value(reloaded, "hookhub_config_last_reload_success_timestamp_seconds") or 0) > 0

        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"  # a dead CRM is no reason
        delivery = ready.json()["delivery"]
        assert delivery["dispatching"] is True and delivery["dispatcher_alive"] is True
        assert delivery["prefect_reachable"] is True
        assert delivery["pending"] == 0 and delivery["oldest_pending_age_seconds"] == 0
        reason = delivery["disabled_destinations"]["gone"]["reason"]
        assert reason.startswith("the receiver answered 410 Gone") and "gone answered" not in reason

        with _lock_file(hub.data_dir, server.port):  # as `hookhub serve` records itself
            assert cli(["status", "--data-dir", str(hub.data_dir)]) == 0
        out = capsys.readouterr().out
        assert f"pid {os.getpid()}, port {server.port}: dispatcher alive, Prefect reachable" in out
        assert "pending    0 submissions not routed yet\n" in out
        assert "disabled   gone since " in out and ": the receiver answered 410 Gone" in out
        assert "retrying   slow: 1, next attempt " in out
        last = out.split("retrying   slow: 1, next attempt ", 1)[1].splitlines()[1]
        assert last.startswith("             last: ") and "503" in last and "maintenance" in last
    finally:
        server.stop()
    assert cli(["status", "--data-dir", str(hub.data_dir)]) == 0
    assert "hub        not running on this data dir" in capsys.readouterr().out


class _lock_file:
    """Holds `<data_dir>/hub.lock` like hub/spool/lock.py: an exclusive flock, pid and port inside."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.path, self.port = data_dir / "hub.lock", port

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.pwrite(self.fd, json.dumps({"pid": os.getpid(), "host": "here", "port": self.port}).encode(), 0)

    def __exit__(self, *exc: Any) -> None:
        os.close(self.fd)
