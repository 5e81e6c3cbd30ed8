"""`hookhub serve`'s delivery process (hub/dispatch/delivery_process.py), run as the real command.

- It runs below the receiver at a lower CPU priority (SCHED_IDLE and nice +10, with what it
  starts), and its health reaches the receiver's /readyz.
- Killed on its own, it is started again and delivers what arrives afterwards.
- It writes no webhooks: only the receiver's process holds the intake (hub/spool/intake.py) open.
(That it goes when the receiver's process is killed is in tests/test_stop.py.)
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from hub.cpu_priority import NICENESS
from tests.fake_destination import FakeDestination
from tests.harness import ServeProcess, alive, descendants, wait_for
from tests.test_crash_recovery import _config, _delivery, _post

FIRST_DELIVERY = 180.0


def _delivery_processes(hub: ServeProcess) -> list[int]:
    found = []
    for pid in descendants(hub.proc.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in command and b"--attached" in command:
            found.append(pid)
    return found


def _nice(pid: int) -> int:
    return _nice_of(Path(f"/proc/{pid}/stat"))


def _policies(pid: int) -> list[int]:
    """The scheduling policy of each thread of `pid` (Linux keeps one per thread)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.append(os.sched_getscheduler(int(task.name)))
        except OSError:  # the thread ended meanwhile
            continue
    return found


def _policy(pid: int) -> int:
    policies = set(_policies(pid))
    assert len(policies) == 1, f"{pid}: threads of different policies {policies}"
    return policies.pop()


def _open_files(pid: int) -> set[str]:
    names = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            names.add(os.readlink(fd))
        except OSError:
            continue
    return names


def _delivery_health(hub: ServeProcess) -> dict[str, object]:
    try:
        delivery = httpx.get(f"{hub.url}/readyz", timeout=5).json().get("delivery", {})
    except (httpx.HTTPError, ValueError):
        return {}
    return delivery if isinstance(delivery, dict) else {}


@pytest.mark.timeout(600)
def test_a_killed_delivery_process_is_started_again_and_delivers(tmp_path: Path) -> None:
    fake = FakeDestination().start()
    log = tmp_path / "serve.log"
    hub = ServeProcess(_config(tmp_path, fake), tmp_path / "data", tmp_path / "prefect", log)
    try:
        [first] = wait_for(lambda: _delivery_processes(hub), timeout=60, what="the delivery process")
        # Set as it starts, before it takes on any work.
        wait_for(lambda: _nice(first) == _nice(hub.proc.pid) + NICENESS, timeout=60, what="its niceness")
        assert os.sched_getscheduler(first) == os.SCHED_IDLE
        assert os.sched_getscheduler(hub.proc.pid) == os.SCHED_OTHER
        wait_for(
            lambda: (
                _delivery_health(hub).get("dispatcher_alive") is True
                and _delivery_health(hub).get("prefect_reachable") is True
            ),
            timeout=FIRST_DELIVERY,
            what="the delivery process's health at /readyz",
        )

        # Its lines, on the hub's one stderr, say they are the delivery process's.
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        [ready] = [line for line in lines if line.get("event") == "prefect_ready"]
        assert ready["role"] == "delivery"
        # "hub started" comes from both; the receiver's lines carry no role.
        assert sorted(str(line.get("role")) for line in lines if line.get("event") == "started") == [
            "None",
            "delivery",
        ]

        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not alive(first), timeout=10, what="the delivery process to die")
        [second] = wait_for(
            lambda: [p for p in _delivery_processes(hub) if p != first], timeout=30, what="a new one"
        )
        assert '"delivery_process_exited"' in log.read_text(errors="replace")
        assert hub.proc.poll() is None  # the receiver went on receiving meanwhile

        _post(hub)
        wait_for(lambda: _delivery(tmp_path / "data" / "spool.db") == ("delivered", 1), FIRST_DELIVERY)
        # Every thread of it, and what it started (Prefect's server, delivery workers), yields the
        # CPU to the receiver; of the receiver's threads only the intake's mover does.
        below = [second, *descendants(second)]
        assert len(below) >= 2
        assert {_policy(pid) for pid in below} == {os.SCHED_IDLE}
        receiver = _policies(hub.proc.pid)
        assert sorted(receiver).count(os.SCHED_IDLE) == 1 and os.SCHED_OTHER in receiver
        assert len(fake.received("/hook")) == 1
        assert _delivery_processes(hub) == [second]
        # A second spool writer there would move and checkpoint the intake beside the receiver's.
        intake = str((tmp_path / "data" / "intake.db").resolve())
        assert intake in _open_files(hub.proc.pid)
        assert not {name for name in _open_files(second) if name.startswith(intake)}
    finally:
        hub.kill()
        fake.stop()


@pytest.mark.timeout(300)
def test_delivery_priority_low_keeps_delivery_a_share_at_nice_plus_ten(tmp_path: Path) -> None:
    # For hosts whose other services keep the CPUs busy (hub/cpu_priority.py): no SCHED_IDLE anywhere.
    fake = FakeDestination().start()
    log = tmp_path / "serve.log"
    hub = ServeProcess(
        _config(tmp_path, fake), tmp_path / "data", tmp_path / "prefect", log, "--delivery-priority", "low"
    )
    try:
        [child] = wait_for(lambda: _delivery_processes(hub), timeout=60, what="the delivery process")
        wait_for(lambda: _nice(child) == _nice(hub.proc.pid) + NICENESS, timeout=60, what="its niceness")
        assert _policy(child) == os.SCHED_OTHER
        # The receiver's mover runs from the start (it moves a crash's leftovers): at nice +10.
        receiver = _policies(hub.proc.pid)
        assert set(receiver) == {os.SCHED_OTHER}
        wait_for(
            lambda: _thread_nices(hub.proc.pid).count(_nice(hub.proc.pid) + NICENESS) == 1, 30, "the mover"
        )
    finally:
        hub.kill()
        fake.stop()


def _thread_nices(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.append(_nice_of(task / "stat"))
        except OSError:
            continue
    return found


def _nice_of(stat_file: Path) -> int:
    stat = stat_file.read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])
