"""Background work that yields the CPU to the receiver the moment the receiver wants it.

With delivery at nice +10 the receiver's event loop thread still waited on the run queue for
5-18 ms of many 20 ms windows while a backlog drained (its /proc/<tid>/schedstat in
bench/peak.py's steady phase at 1,000/s; kernel 6.18, 2 cores about 60 % busy), and every answer
waited with it: under EEVDF (Linux 6.6+) a waking task need not preempt a running one of a higher
nice value at once. A SCHED_IDLE task is (kernel/sched/fair.c: "Idle tasks are by definition
preempted by non-idle tasks"), and it still gets every cycle no normal task wants, so delivery
runs as fast as before whenever the receiver is idle.

The price: while other normal-priority work keeps every core busy, SCHED_IDLE work gets almost
nothing (a weight of 3 against 1,024). On a host whose other services do that, `low` (nice +10
alone, a weight of 110) keeps delivery a share (`hookhub serve --delivery-priority low`).
"""

from __future__ import annotations

import contextlib
import os
from typing import Literal

Priority = Literal["idle", "low"]
PRIORITIES: tuple[Priority, ...] = ("idle", "low")
NICENESS = 10
"""Added to the nice value in both: with `idle` too, because where SCHED_IDLE is missing (not
Linux) or refused, nice still lowers the weight, and tools such as top show it."""


def background_thread(priority: Priority = "idle") -> None:
    """The calling thread (on Linux the policy and the nice value are per thread) yields the CPU."""
    _lower(0, priority)


def background_process(priority: Priority = "idle") -> None:
    """Every thread of this process, and every thread and process it starts later (they
    inherit the policy and the nice value), yields the CPU."""
    # Threads started before this call (Prefect's, logging's) each need their own call.
    tasks = os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]
    for tid in tasks:
        _lower(int(tid), priority)


def _lower(tid: int, priority: Priority) -> None:
    with contextlib.suppress(OSError):  # a thread may have ended meanwhile; a container may refuse
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + NICENESS)
    if priority == "idle" and hasattr(os, "sched_setscheduler"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
