"""hub/cpu_priority.py: background work runs SCHED_IDLE (Linux), so the receiver gets the CPU at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hub.cpu_priority import NICENESS, background_thread

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")

REPO = Path(__file__).resolve().parents[1]


def test_background_thread_lowers_the_calling_thread_only() -> None:
    seen: dict[str, int] = {}

    def work() -> None:
        seen["set"] = background_thread()
        seen["policy"] = os.sched_getscheduler(threading.get_native_id())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == {"set": True, "policy": os.SCHED_IDLE}
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER


# A thread from before the call, the process itself, a thread and a child process from after.
_PROBE = """
import json, os, subprocess, sys, threading
from hub.cpu_priority import background_process
go, done = threading.Event(), threading.Event()
early = threading.Thread(target=lambda: (go.wait(), done.wait())); early.start()
base = os.getpriority(os.PRIO_PROCESS, 0)
background_process()
late = threading.Thread(target=done.wait); late.start()
ask = "import os; print(os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))"
child = subprocess.run([sys.executable, "-c", ask], capture_output=True, text=True, check=True).stdout.split()
policies = {tid: os.sched_getscheduler(int(tid)) for tid in os.listdir("/proc/self/task")}
done.set(); go.set()
print(json.dumps({"threads": sorted(policies.values()), "count": len(policies),
                  "child": [int(v) for v in child], "child_nice_base": base,
                  "nice": os.getpriority(os.PRIO_PROCESS, 0) - base}))
"""


def test_background_process_lowers_every_thread_and_what_it_starts() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
    )  # fmt: skip
    seen = json.loads(out.stdout)
    assert seen["count"] >= 3
    assert seen["threads"] == [os.SCHED_IDLE] * seen["count"]
    assert seen["child"] == [os.SCHED_IDLE, seen["child_nice_base"] + NICENESS]
    assert seen["nice"] == NICENESS
