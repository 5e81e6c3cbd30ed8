"""Stopping and crashing `hookhub serve` (the real command, with its ephemeral Prefect server).

- SIGTERM to the hub's process group (what Ctrl-C and most service managers do) with a batch in
  flight: exit 0 within 10 s, only hookhub's own lines, and no flow run left `Running` in
  Prefect (read back through Prefect's client after the hub exited); the rest is finished after
  the restart.
- `kill -9` of the hub alone: its whole process tree (Prefect's server, the delivery workers)
  goes with it.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.fake_destination import FakeDestination
from tests.harness import ServeProcess, alive, descendants, flow_run_states, wait_for
from tests.test_crash_recovery import _config, _delivery, _post

STOP_LIMIT = 10.0


def _delivery_status(spool: Path) -> str:
    return (_delivery(spool) or ("none", 0))[0]


@pytest.mark.timeout(600)
def test_sigterm_with_a_batch_in_flight_exits_0_within_10_s_and_leaves_no_running_flow_run(
    tmp_path: Path,
) -> None:
    fake = FakeDestination().start()
    data_dir, prefect_home, log = tmp_path / "data", tmp_path / "prefect", tmp_path / "serve.log"
    try:
        fake.hold("/hook", 300)  # the receiver takes its time: the batch is under way at the stop
        hub = ServeProcess(_config(tmp_path, fake), data_dir, prefect_home, log)
        _post(hub)
        wait_for(lambda: fake.waiting("/hook") == 1, timeout=180, what="the delivery to be on the wire")
        before = len(log.read_bytes())

        started = time.monotonic()
        code = hub.terminate()
        took = time.monotonic() - started

        said = log.read_bytes()[before:].decode(errors="replace").splitlines()
        assert code == 0, said
        assert took <= STOP_LIMIT, f"stopped in {took:.1f} s: {said}"
        # Only hookhub's own structured lines: no Prefect "Crash detected!", no tracebacks.
        loggers = [json.loads(line)["logger"] for line in said]
        assert all(name.startswith("hookhub.") for name in loggers), said
        assert 1 <= len(said) <= 3, said
        states = flow_run_states(prefect_home)
        assert "Running" not in states and "Pending" not in states, states
        assert states.get("Crashed", 0) + states.get("Cancelled", 0) == 1, states
        assert _delivery_status(data_dir / "spool.db") == "pending"  # given back, not lost

        fake.release("/hook")
        again = ServeProcess(_config(tmp_path, fake), data_dir, prefect_home, log)
        wait_for(
            lambda: _delivery_status(data_dir / "spool.db") == "delivered",
            timeout=180,
            what="the delivery finished after the restart",
        )
        assert again.terminate() == 0
    finally:
        fake.release("/hook")
        fake.stop()


@pytest.mark.timeout(300)
def test_kill_9_of_the_hub_takes_prefects_server_and_the_delivery_workers_with_it(tmp_path: Path) -> None:
    fake = FakeDestination().start()
    log = tmp_path / "serve.log"
    try:
        hub = ServeProcess(_config(tmp_path, fake), tmp_path / "data", tmp_path / "prefect", log)
        # Prefect ready: its server runs; a webhook destination is configured: the worker too.
        wait_for(lambda: '"prefect_ready"' in log.read_text(errors="replace"), timeout=180, what="Prefect")
        wait_for(lambda: len(descendants(hub.proc.pid)) >= 2, timeout=60, what="server and worker")
        tree = descendants(hub.proc.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in tree]
        assert any(b"flows.prefect_server" in c for c in commands), commands

        hub.signal_hub(signal.SIGKILL)  # the hub alone: not its process group
        hub.proc.wait(timeout=30)

        wait_for(
            lambda: not any(alive(pid) for pid in tree),
            timeout=15,
            what=f"the hub's processes {sorted(p for p in tree if alive(p))} to end",
        )
    finally:
        hub.kill()
        fake.stop()
