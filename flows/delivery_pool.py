"""Delivery worker processes: the "deliver" tasks of some destination types run in other processes.

Sending is what bounds the hub's throughput (~0.5 ms of CPU per outgoing request even over
aiohttp), and in one process every send competes for one GIL with the receiver, Prefect's
engine and the ledger. Chunks for destination types that allow it (`Destination.any_process`:
nothing they keep must hold across all sends, unlike Slack's 1 message/s) are handed to a
pool of worker processes; the Prefect task still runs, and is still what the UI shows, in
the dispatcher. A worker loads the claimed rows from the spool, delivers and records every
outcome itself, exactly as the in-process path (flows/delivery.py) does.

Workers are spawned (not forked: the hub has threads), import no Prefect, ignore Ctrl-C (the
dispatcher drains and stops them) and die with the hub, so a killed hub leaves no worker
sending rows that its restart puts back in the queue.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import pickle
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import util as mp_util
from pathlib import Path

from flows.destinations import UnknownDestinationType, get_destination
from flows.runtime import Runtime
from hub.config.models import HubConfig

log = logging.getLogger("hookhub.delivery_pool")


class DeliveryWorkerLost(RuntimeError):
    """A worker process died during a chunk; the flow run fails and its claims go back to the queue."""


@dataclass(frozen=True)
class ChunkJob:
    """Everything a worker needs, pickled: the live config goes along, so a reload applies at once."""

    spool_path: str
    data_dir: str
    config: HubConfig
    destination: str
    inbox_ids: list[str]


class DeliveryPool:
    def __init__(self, processes: int, log_level: str = "info") -> None:
        self.processes = processes
        self.log_level = log_level
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @staticmethod
    def takes(destination_type: str) -> bool:
        try:
            return get_destination(destination_type).any_process
        except UnknownDestinationType:
            return False

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker, initargs=(self.log_level,),
                )
            return self._executor

    async def start(self) -> None:
        """Spawn the workers now (~1 s each) rather than under the first chunk."""
        loop = asyncio.get_running_loop()
        pool = self._pool()
        await asyncio.gather(*(loop.run_in_executor(pool, _ready) for _ in range(self.processes)))

    async def deliver(self, runtime: Runtime, destination: str, inbox_ids: list[str]) -> dict[str, int]:
        config = runtime.config()
        # Only what a delivery reads: sources can hold parsed keys that do not pickle.
        needed = config.model_copy(update={"sources": {}, "destinations": {
            k: v for k, v in config.destinations.items() if k == destination}})
        job = ChunkJob(spool_path=str(runtime.spool_path), data_dir=str(runtime.data_dir), config=needed,
                       destination=destination, inbox_ids=inbox_ids)
        try:
            blob = pickle.dumps(job)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            log.warning("destination config cannot go to a worker process; delivering in the hub's",
                        extra={"event": "delivery_pool_skipped", "destination": destination, "error": str(exc)})
            from flows.delivery import deliver_and_record
            from flows.http_clients import delivery_session

            return await deliver_and_record(runtime, destination, inbox_ids, delivery_session())
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool(), _run_job, blob)
        except BrokenProcessPool:
            with self._lock:
                broken, self._executor = self._executor, None
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
            log.error("a delivery worker process died; its chunk goes back to the queue",
                      extra={"event": "delivery_worker_lost", "destination": destination, "items": len(inbox_ids)})
            raise DeliveryWorkerLost(f"a delivery worker died while delivering {len(inbox_ids)} to {destination}") \
                from None

    def pids(self) -> list[int]:
        """The worker processes alive now (for `hookhub status`-style checks and tests)."""
        with self._lock:
            processes = getattr(self._executor, "_processes", None) or {}
            return [pid for pid, proc in processes.items() if proc.is_alive()]

    def close(self) -> None:
        """Let the chunks under way finish (their outcomes get recorded), then stop the workers."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


# -- in the worker process ------------------------------------------------------------------

_loop: asyncio.AbstractEventLoop | None = None


def _start_worker(log_level: str) -> None:
    global _loop
    # Ctrl-C, and a service manager's SIGTERM, reach the whole process group; the dispatcher
    # finishes the chunks under way and then shuts the pool down, so workers must not die first
    # (they still die with the hub, below).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    from hub.logs import setup_logging

    setup_logging(log_level)
    try:
        import uvloop

        _loop = uvloop.new_event_loop()
    except ImportError:
        _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)
    # Runs as the worker exits (multiprocessing skips atexit): close connections cleanly.
    mp_util.Finalize(None, _close_loop, exitpriority=10)


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the hub process goes, however it goes."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the pool's own pipes end the worker later
        pass


def _ready() -> bool:
    return True


def _run_job(blob: bytes) -> dict[str, int]:
    assert _loop is not None, "worker not initialized"
    return _loop.run_until_complete(_deliver(pickle.loads(blob)))


async def _deliver(job: ChunkJob) -> dict[str, int]:
    from flows.delivery import deliver_and_record
    from flows.http_clients import delivery_session

    config = job.config
    runtime = Runtime(config=lambda: config, spool_path=Path(job.spool_path), data_dir=Path(job.data_dir))
    return await deliver_and_record(runtime, job.destination, job.inbox_ids, delivery_session())


def _close_loop() -> None:
    if _loop is None or _loop.is_closed():
        return
    from flows.http_clients import close_shared_client

    _loop.run_until_complete(close_shared_client())
    _loop.close()
