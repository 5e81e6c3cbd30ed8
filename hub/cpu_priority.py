"""Background work that yields the CPU to the receiver the moment the receiver wants it.

With delivery at nice +10 the receiver's event loop thread still waited on the run queue for
5-18 ms of many 20 ms windows while a backlog drained (its /proc/<tid>/schedstat in
bench/peak.py's steady phase at 1,000/s; kernel 6.18, 2 cores about 60 % busy), and every answer
waited with it: under EEVDF (Linux 6.6+) a waking task need not preempt a running one of a higher
nice value at once. A SCHED_IDLE task is (kernel/sched/fair.c: "Idle tasks are by definition
preempted by non-idle tasks"), and it still gets every cycle no normal task wants, so delivery
runs as fast as before whenever the receiver is idle.
"""

from __future__ import annotations

import contextlib
import os

NICENESS = 10
"""Added to the nice value too: where SCHED_IDLE is missing (not Linux) or refused, nice still
lowers the weight (1024 against 110 at +10), and tools such as top show it."""


def background_thread() -> bool:
    """The calling thread (Linux: the policy is per thread) runs only on CPU time nothing else
    wants; whether SCHED_IDLE could be set."""
    if not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:  # a container's seccomp profile may forbid it: the work still gets done
        return False
    return True


def background_process() -> None:
    """Every thread of this process, and every thread and process it starts later (they
    inherit the policy and the nice value), runs on CPU time nothing else wants."""
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    if not hasattr(os, "sched_setscheduler"):
        return
    # Threads started before this call (Prefect's, logging's) each need their own call.
    tasks = os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else [str(os.getpid())]
    for tid in tasks:
        with contextlib.suppress(OSError):  # a thread may have ended meanwhile
            os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))
