"""SIGTERM to `hookhub serve` while it works through a 30,000-submission backlog (issue 18).

The hub's process alone is signalled, as `docker stop` or `kill <pid>` do: it must tell its
delivery process itself (hub/dispatch/delivery_process.py). The whole tree (receiver, delivery
process, Prefect's server, delivery workers) must be gone within 10 s, and at the next start
every submission reaches both destinations exactly once: nothing lost, nothing sent twice.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from bench.ingest import signed_requests
from bench.loadgen import closed_loop
from tests.fake_destination import FakeDestination, by_webhook_id
from tests.harness import ServeProcess, alive, descendants, wait_for

BACKLOG = 30_000
STOP_LIMIT = 10.0
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CONFIG = """
sources:
  contact-form: {{provider: typeform, secret: bench-typeform-secret}}
destinations:
  archive: {{type: file, path: archive.jsonl}}
  crm: {{type: webhook, url: "{url}", secret: {whsec}}}
routes:
  - {{name: all, from: [contact-form], to: [archive, crm]}}
"""


def _states(spool: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{spool}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM inbox GROUP BY state").fetchall())


def _archived(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    complete = path.read_bytes().rsplit(b"\n", 1)[0]
    return Counter(json.loads(line)["id"] for line in complete.splitlines() if line)


@pytest.mark.timeout(900)
def test_sigterm_with_a_30000_submission_backlog_stops_within_10_s_and_the_restart_delivers_each_once(
    tmp_path: Path,
) -> None:
    fake = FakeDestination().start()
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG.format(url=fake.url("/hook"), whsec=WHSEC), encoding="utf-8")
    data_dir, prefect_home, log = tmp_path / "data", tmp_path / "prefect", tmp_path / "serve.log"
    archive, spool = data_dir / "archive.jsonl", data_dir / "spool.db"
    hub: ServeProcess | None = None
    try:
        # The backlog, through a receiver-only hub: acknowledged, stored, undelivered.
        hub = ServeProcess(config, data_dir, prefect_home, log, "--no-dispatch")
        sent = asyncio.run(closed_loop(hub.port, signed_requests(config, BACKLOG), 64))
        assert sent.ok() == BACKLOG, sent.statuses
        assert hub.terminate() == 0
        assert _states(spool) == {"pending": BACKLOG}

        hub = ServeProcess(config, data_dir, prefect_home, log)
        wait_for(lambda: len(fake.received("/hook")) >= 300, timeout=240, what="delivery under way")
        tree = {hub.proc.pid, *descendants(hub.proc.pid)}
        assert len(tree) >= 3, "receiver, delivery process and Prefect's server"
        started = time.monotonic()
        hub.signal_hub(signal.SIGTERM)
        code = hub.proc.wait(timeout=60)
        wait_for(lambda: not any(alive(p) for p in tree), timeout=60, what="every process of the hub to end")
        took = time.monotonic() - started
        left = sum(n for state, n in _states(spool).items() if state != "done")
        assert code == 0
        assert took <= STOP_LIMIT, f"the hub took {took:.1f} s to stop"
        assert left >= BACKLOG // 2, f"only {left} left: the stop did not come during a backlog"

        hub = ServeProcess(config, data_dir, prefect_home, log)
        wait_for(lambda: _states(spool) == {"done": BACKLOG}, timeout=600, what="the backlog to drain")
        assert hub.terminate() == 0
        hub = None

        archived = _archived(archive)
        assert len(archived) == BACKLOG and set(archived.values()) == {1}, archived.most_common(3)
        posted = by_webhook_id(fake.received("/hook"))
        assert len(posted) == BACKLOG and set(posted.values()) == {1}, Counter(posted.values())
    finally:
        if hub is not None:
            hub.kill()
        fake.stop()
