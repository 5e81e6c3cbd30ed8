"""Delivery worker processes: the "deliver" tasks of some destination types run in other processes.

Sending is what bounds the hub's throughput (~0.5 ms of CPU per outgoing request even over
aiohttp), and in one process every send competes for one GIL with the receiver, Prefect's
engine and the ledger. Chunks for destination types that allow it (`Destination.any_process`:
nothing they keep must hold across all sends, unlike Slack's 1 message/s) are handed to a
pool of worker processes; the Prefect task still runs, and is still what the UI shows, in
the dispatcher. A worker loads the claimed rows from the spool, delivers and records every
outcome itself, exactly as the in-process path (flows/delivery.py) does.

Each worker runs every chunk it is given at once on its own event loop, as the hub's loop
would: a receiver that takes its time holds only its own chunk, not the other destinations'.
(concurrent.futures' process pool runs one call per process at a time, hence this small pool:
a pipe per worker, jobs and results pickled, results read by the dispatcher's event loop.)
Workers are spawned (not forked: the hub has threads), import no Prefect, ignore Ctrl-C (the
dispatcher drains and stops them) and die with the hub, so a killed hub leaves no worker
sending rows that its restart puts back in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from flows.destinations import UnknownDestinationType, get_destination
from flows.runtime import Runtime
from hub.config.models import HubConfig
from hub.store.location import Store

log = logging.getLogger("hookhub.delivery_pool")

STOP_SECONDS = 30.0
"""How long a stopping worker may take to finish its chunks before it is killed."""


class DeliveryWorkerLost(RuntimeError):
    """A worker process died during a chunk; the flow run fails and its claims go back to the queue."""


class DeliveryWorkerFailed(RuntimeError):
    """A chunk raised in the worker; the flow run fails and its claims go back to the queue."""


@dataclass(frozen=True)
class ChunkJob:
    """Everything a worker needs, pickled: the config in force goes along, so a reload applies at once."""

    store: Store
    """Goes to the worker over its own pipe, URL and all: never into logs or Prefect."""
    data_dir: str
    config: HubConfig
    destination: str
    inbox_ids: list[str]
    owner: str | None = None


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    pending: dict[int, asyncio.Future[dict[str, int]]] = field(default_factory=dict)
    gone: bool = False


class DeliveryPool:
    """Worker processes, used round-robin from the dispatcher's event loop (not thread-safe)."""

    def __init__(self, processes: int, log_level: str = "info") -> None:
        self.processes = processes
        self.log_level = log_level
        self._workers: list[_Worker | None] = [None] * processes
        self._turn = itertools.cycle(range(processes))
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def takes(destination_type: str) -> bool:
        try:
            return get_destination(destination_type).any_process
        except UnknownDestinationType:
            return False

    async def start(self) -> None:
        """Spawn the workers now (~1 s each) rather than under the first chunk."""
        for index in range(self.processes):
            await self._worker(index)

    def pids(self) -> list[int]:
        """The worker processes alive now."""
        return [
            w.process.pid
            for w in self._workers
            if w is not None and not w.gone and w.process.is_alive() and w.process.pid is not None
        ]

    async def deliver(self, runtime: Runtime, destination: str, inbox_ids: list[str]) -> dict[str, int]:
        config = runtime.config()
        # Only what a delivery reads: sources can hold parsed keys that do not pickle.
        needed = config.model_copy(
            update={
                "sources": {},
                "destinations": {k: v for k, v in config.destinations.items() if k == destination},
            }
        )
        job = ChunkJob(
            store=runtime.store,
            owner=runtime.owner,
            data_dir=str(runtime.data_dir),
            config=needed,
            destination=destination,
            inbox_ids=inbox_ids,
        )
        job_id = next(self._ids)
        try:
            message = pickle.dumps((job_id, job))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            log.warning(
                "destination config cannot go to a worker process; delivering in the hub's",
                extra={"event": "delivery_pool_skipped", "destination": destination, "error": str(exc)},
            )
            from flows.delivery import deliver_and_record
            from flows.http_clients import delivery_sender

            return await deliver_and_record(runtime, destination, inbox_ids, delivery_sender())
        worker = await self._worker(next(self._turn))
        result: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        worker.pending[job_id] = result
        try:
            worker.conn.send_bytes(message)
        except OSError:
            self._lost(worker)
        try:
            return await result
        except DeliveryWorkerLost:
            log.error(
                "a delivery worker process died; its chunk goes back to the queue",
                extra={"event": "delivery_worker_lost", "destination": destination, "items": len(inbox_ids)},
            )
            raise

    async def aclose(self, timeout: float = STOP_SECONDS) -> None:
        """Let the chunks under way finish within `timeout` (their outcomes get recorded), then stop
        the workers; a chunk cut short is sent again after the restart, with the same idempotency key."""
        workers = [w for w in self._workers if w is not None]
        self._workers = [None] * self.processes
        for worker in workers:
            if not worker.gone:
                with contextlib.suppress(OSError):
                    worker.conn.send_bytes(pickle.dumps(None))
        deadline = time.monotonic() + timeout
        for worker in workers:
            await asyncio.to_thread(worker.process.join, max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                await asyncio.to_thread(worker.process.join, 5)
            self._lost(worker)

    async def _worker(self, index: int) -> _Worker:
        worker = self._workers[index]
        if worker is not None and not worker.gone:
            return worker
        loop = asyncio.get_running_loop()
        self._loop = loop
        parent_end, child_end = multiprocessing.Pipe()
        process = multiprocessing.get_context("spawn").Process(
            target=_worker_main,
            args=(child_end, self.log_level),
            name=f"hookhub-delivery-{index}",
            daemon=True,
        )
        # Started from this (the dispatcher's) thread, not a helper thread: the worker's
        # die-with-parent signal follows the thread that started it. Spawning blocks this loop
        # for tens of milliseconds; the worker's imports then run in the worker.
        process.start()
        child_end.close()  # so the parent sees EOF when the worker dies
        worker = _Worker(process=process, conn=parent_end)
        self._workers[index] = worker
        loop.add_reader(parent_end.fileno(), self._on_readable, worker)
        return worker

    def _on_readable(self, worker: _Worker) -> None:
        try:
            job_id, ok, value = pickle.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            self._lost(worker)
            return
        future = worker.pending.pop(job_id, None)
        if future is None or future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(DeliveryWorkerFailed(value))

    def _lost(self, worker: _Worker) -> None:
        if worker.gone:
            return
        worker.gone = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(worker.conn.fileno())
        worker.conn.close()
        pending, worker.pending = worker.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(DeliveryWorkerLost("a delivery worker process died during this chunk"))


# -- in the worker process ------------------------------------------------------------------


def _worker_main(conn: Connection, log_level: str) -> None:
    # Ctrl-C, and a service manager's SIGTERM, reach the whole process group; the dispatcher
    # finishes the chunks under way and then stops the workers, so they must not die first
    # (they still die with the hub, below).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    from hub.logs import setup_logging

    setup_logging(log_level)
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(conn))
    finally:
        loop.close()


async def _serve(conn: Connection) -> None:
    from flows.http_clients import close_shared_client

    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    running: set[asyncio.Task[None]] = set()

    def on_readable() -> None:
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            message = None  # the hub is gone or closed the pipe
        if message is None:
            loop.remove_reader(conn.fileno())
            stopped.set()
            return
        job_id, job = message
        task = loop.create_task(_run(conn, job_id, job))
        running.add(task)
        task.add_done_callback(running.discard)

    loop.add_reader(conn.fileno(), on_readable)
    await stopped.wait()
    if running:
        await asyncio.wait(running)
    await close_shared_client()


async def _run(conn: Connection, job_id: int, job: ChunkJob) -> None:
    from flows.delivery import deliver_and_record
    from flows.http_clients import delivery_sender

    config = job.config
    runtime = Runtime(config=lambda: config, store=job.store, data_dir=Path(job.data_dir), owner=job.owner)
    answer: tuple[int, bool, Any]
    try:
        answer = (
            job_id,
            True,
            await deliver_and_record(runtime, job.destination, job.inbox_ids, delivery_sender()),
        )
    except Exception as exc:  # reported to the task, which fails and gives its claims back
        logging.getLogger("hookhub.delivery_pool").exception(
            "chunk failed in a delivery worker",
            extra={"event": "delivery_chunk_error", "destination": job.destination},
        )
        answer = (job_id, False, f"{type(exc).__name__}: {exc}")
    with contextlib.suppress(OSError):  # the hub is gone; the ledger has the outcomes
        conn.send_bytes(pickle.dumps(answer))


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the hub process goes, however it goes."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the worker sees EOF on its pipe and stops
        pass
    import multiprocessing.process

    parent = multiprocessing.process.parent_process()
    if parent is not None and not parent.is_alive():
        os._exit(1)  # the hub died before the signal was armed: it will never come
