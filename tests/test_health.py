"""`Hub.health`: what the dispatcher last knew about delivery, kept current by a real dispatcher."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hub.health import DeliveryHealth
from tests.harness import start_hub, wait_for
from tests.test_data_dir_lock import CONFIG


def test_dispatcher_alive_needs_a_dispatcher_and_a_recent_beat() -> None:
    assert not DeliveryHealth().dispatcher_alive(100.0)
    assert not DeliveryHealth(dispatching=False, dispatcher_beat_at=100.0).dispatcher_alive(100.0)
    beating = DeliveryHealth(dispatching=True, dispatcher_beat_at=100.0)
    assert beating.dispatcher_alive(130.0)
    assert not beating.dispatcher_alive(130.1)
    assert beating.dispatcher_alive(140.0, within=40.0)


@pytest.mark.timeout(300)
def test_a_running_dispatcher_beats_and_records_that_prefect_answers(tmp_path: Path) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    hub, server = start_hub(config, tmp_path / "data", dispatch=True)
    try:
        assert hub.health.dispatching
        wait_for(lambda: hub.health.prefect_reachable, timeout=240, what="Prefect checked and answering")
        assert hub.health.prefect_error is None
        assert hub.health.prefect_checked_at is not None
        first = hub.health.dispatcher_beat_at
        assert first is not None and hub.health.dispatcher_alive(time.time())
        wait_for(lambda: (hub.health.dispatcher_beat_at or 0) > first, timeout=10, what="another beat")
    finally:
        server.stop()
