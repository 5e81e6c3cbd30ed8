"""Budget fidelity: how close N worker processes sending on one key come to the configured rate.

Each process takes `count` turns on one key at `interval` through a pacer and notes, for each,
when the pacer planned it (the end of the sleep it asked for) and when it was given (the sleep
woke). The merged turns give the achieved rate against the configured 1/interval, the smallest
gap as given (what a target sees) and as planned (the pacer's schedule), and the largest wake-up
delay: on a loaded machine a turn given late shortens the gap to the next one by that delay,
which is the scheduler's doing, not the budget's. The store pacer (flows/budgets.py, one row in
PostgreSQL) is set against the in-memory one (flows/pacing.py), whose budgets are per process:
with two processes it sends twice as fast.

    python -m bench.budgets [--rounds 3] [--interval 0.25] [--seconds 10]

Prefect's `rate_limit` is not run here (it needs a Prefect server shared by the processes);
the design note's probe measured it at 0.70-0.77 of the configured rate, min gap 1.00 s at 1/s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import threading
import time
import uuid
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from typing import Any

from bench.figures import spread
from hub.store import PostgresStore

START_DELAY = 0.3
"""Seconds from the go signal to the first turn: every process has its connections open by then."""


@dataclass(frozen=True)
class Turn:
    planned: float
    """The start the pacer gave the turn: the clock reading it computed its sleep from plus that
    sleep (when it did not sleep, when the turn was given: no earlier than its start)."""
    given: float
    """When the turn was given (wait_turn returned): the planned start plus the wake-up delay."""


def turns_in_process(kind: str, url: str, key: str, interval: float, count: int, out: Any, go: Event) -> None:
    """A worker process's part: `count` turns on `key`, then the turns (or the error) on `out`."""
    from flows.budgets import StorePacer
    from flows.pacing import Pacer

    ends: list[float] = []
    read = threading.local()  # the pacer's watcher reads the clock from its own thread

    def clock() -> float:
        read.last = time.time()
        return float(read.last)

    async def sleep(seconds: float) -> None:
        ends.append(read.last + seconds)  # the pacer slept from its latest reading to the start
        await asyncio.sleep(seconds)

    pacer: Pacer | StorePacer = (
        StorePacer(PostgresStore(url), clock=clock, sleep=sleep)
        if kind == "store"
        else Pacer(clock=clock, sleep=sleep)
    )

    async def take() -> list[Turn]:
        await pacer.wait_turn(f"{key}:warm-up", 0.0)  # opens a connection before the clock runs
        out.put(("ready", None))
        await asyncio.to_thread(go.wait)
        turns = []
        for _ in range(count):
            slept = len(ends)
            await pacer.wait_turn(key, interval)
            given = time.time()
            turns.append(Turn(planned=ends[-1] if len(ends) > slept else given, given=given))
        return turns

    try:
        out.put(("turns", asyncio.run(take())))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        out.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        if isinstance(pacer, StorePacer):
            pacer.close()


class WorkerFailed(RuntimeError):
    """A worker process reported an error or did not answer in time."""


def run_processes(kind: str, url: str, interval: float, count: int, processes: int) -> list[Turn]:
    """Start `processes` spawned workers, release them together, and return every turn, in the
    order they were given.

    For the store pacer the key's row is set so that the first turn is START_DELAY after the
    release, whichever worker gets it: both then start on one schedule.
    """
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    go = context.Event()
    key = f"bench:{uuid.uuid4().hex[:12]}"
    workers = [
        context.Process(target=turns_in_process, args=(kind, url, key, interval, count, out, go))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        _collect(out, processes, "ready", deadline=time.monotonic() + 60)
        if kind == "store":
            first = time.time() + START_DELAY
            store = PostgresStore(url)
            conn = store.connect()
            try:
                conn.execute(
                    "INSERT INTO rate_budgets (key, tat, paused_until) VALUES (?, ?, 0)"
                    " ON CONFLICT (key) DO UPDATE SET tat = excluded.tat",
                    (key, first),
                )
            finally:
                conn.close()
        go.set()
        answers = _collect(out, processes, "turns", deadline=time.monotonic() + 60 + 2 * count * interval)
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    return sorted((turn for turns in answers for turn in turns), key=lambda turn: turn.given)


def _collect(out: Any, processes: int, kind: str, deadline: float) -> list[Any]:
    answers: list[Any] = []
    while len(answers) < processes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise WorkerFailed(f"{processes - len(answers)} worker(s) sent no {kind!r} in time")
        what, value = out.get(timeout=left)
        if what == "error":
            raise WorkerFailed(f"a worker failed: {value}")
        answers.append(value)
    return answers


@dataclass(frozen=True)
class Fidelity:
    achieved_ratio: float
    """Achieved rate (turns given after the first, over the time to the last) over the configured one."""
    min_gap: float
    """Smallest gap between two turns as given: what the target sees, wake-up delays included."""
    min_gap_planned: float
    """Smallest gap between two planned starts: the pacer's own schedule."""
    min_after_planned: float
    """Smallest time from a turn's planned start to the next turn given. A gap as given falls short
    of the interval by no more than the earlier turn's wake-up delay while this stays >= the
    interval; two turns given one slot would bring it near 0."""
    max_delay: float
    """Largest wake-up delay (given - planned): the machine's scheduling, not the pacer."""
    turns: int


def fidelity(turns: list[Turn], interval: float) -> Fidelity:
    """`turns` in the order they were given."""
    pairs = list(zip(turns, turns[1:], strict=False))
    planned = sorted(turn.planned for turn in turns)
    return Fidelity(
        achieved_ratio=(len(turns) - 1) / (turns[-1].given - turns[0].given) * interval,
        min_gap=min(b.given - a.given for a, b in pairs),
        min_gap_planned=min(b - a for a, b in zip(planned, planned[1:], strict=False)),
        min_after_planned=min(b.given - a.planned for a, b in pairs),
        max_delay=max(turn.given - turn.planned for turn in turns),
        turns=len(turns),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    from tests.postgres import scratch_schema

    total = round(args.seconds / args.interval)
    runs = [("store", 1), ("store", 2), ("memory", 1), ("memory", 2)]
    results: dict[tuple[str, int], list[Fidelity]] = {run: [] for run in runs}
    with scratch_schema("bench_budgets") as url:
        PostgresStore(url).prepare()
        for _ in range(args.rounds):
            for kind, processes in runs:
                times = run_processes(kind, url, args.interval, total // processes, processes)
                results[(kind, processes)].append(fidelity(times, args.interval))
    print(
        f"{1 / args.interval:g}/s configured, {total} turns per run over ~{args.seconds:g} s,"
        f" {args.rounds} rounds: median [min-max]"
    )
    columns = {
        "achieved/configured": "achieved_ratio",
        "min gap s": "min_gap",
        "min planned gap s": "min_gap_planned",
        "max wake delay s": "max_delay",
    }
    print(f"{'pacer':<7} {'procs':>5}  " + "  ".join(f"{name:<23}" for name in columns))
    for (kind, processes), found in results.items():
        cells = [spread([getattr(f, field) for f in found], digits=3) for field in columns.values()]
        print(f"{kind:<7} {processes:>5}  " + "  ".join(f"{cell:<23}" for cell in cells))
    print("prefect rate_limit (design note's probe, not run here): 0.70-0.77, min gap 1.00 s at 1/s")


if __name__ == "__main__":
    main()
