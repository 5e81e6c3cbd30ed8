"""hub/cpu_priority.py: background work yields the CPU (SCHED_IDLE on Linux, or nice +10 alone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hub.cpu_priority import NICENESS, Priority, background_thread

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")

REPO = Path(__file__).resolve().parents[1]
POLICY = {"idle": os.SCHED_IDLE, "low": os.SCHED_OTHER}


@pytest.mark.parametrize("priority", ["idle", "low"])
def test_background_thread_lowers_the_calling_thread_only(priority: Priority) -> None:
    main = threading.get_native_id()
    base = os.getpriority(os.PRIO_PROCESS, main)
    seen: dict[str, int] = {}

    def work() -> None:
        background_thread(priority)
        tid = threading.get_native_id()
        seen.update(policy=os.sched_getscheduler(tid), nice=os.getpriority(os.PRIO_PROCESS, tid))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == {"policy": POLICY[priority], "nice": min(base + NICENESS, 19)}
    assert os.sched_getscheduler(main) == os.SCHED_OTHER
    assert os.getpriority(os.PRIO_PROCESS, main) == base


# A thread from before the call, the process itself, a thread and a child process from after.
_PROBE = """
import json, os, subprocess, sys, threading
from hub.cpu_priority import background_process
go, done = threading.Event(), threading.Event()
early = threading.Thread(target=lambda: (go.wait(), done.wait())); early.start()
base = os.getpriority(os.PRIO_PROCESS, 0)
background_process(sys.argv[1])
late = threading.Thread(target=done.wait); late.start()
ask = "import os; print(os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))"
child = subprocess.run([sys.executable, "-c", ask], capture_output=True, text=True, check=True).stdout.split()
threads = [(os.sched_getscheduler(int(t)), os.getpriority(os.PRIO_PROCESS, int(t)) - base)
           for t in os.listdir("/proc/self/task")]
done.set(); go.set()
print(json.dumps({"threads": threads, "child": [int(child[0]), int(child[1]) - base]}))
"""


@pytest.mark.parametrize("priority", ["idle", "low"])
def test_background_process_lowers_every_thread_and_what_it_starts(priority: Priority) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, priority], capture_output=True, text=True, check=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
    )  # fmt: skip
    seen = json.loads(out.stdout)
    lowered = [POLICY[priority], NICENESS]
    assert len(seen["threads"]) >= 3
    assert seen["threads"] == [lowered] * len(seen["threads"])
    assert seen["child"] == lowered
