"""The dispatcher: claims spooled work in batches and runs one Prefect flow per batch.

It runs in its own thread with its own event loop, so Prefect's engine (and the ~7 s
start of its ephemeral server) never stalls the receiver: webhooks are accepted and
spooled from the first second, and the dispatcher catches up once Prefect is ready.

A batch is whatever is pending when the first item has waited `batch_wait` seconds, up to
`batch_size`; up to `max_flows` flow runs are in flight at once. Claims are recorded in
the spool, and a flow run that fails gives its claims back, so nothing is held by a run
that is gone; at start, claims of a killed process are put back too.

A failed run's claims come back as suspects, not in the queue's order: they are tried again
after a pause in halves, turn about with fresh batches, down to single rows, and a row whose
runs fail alone `QUARANTINE_AFTER` times is a dead letter. One row that fails every run it is
in (for a reason no stage could pin on it) so costs a few runs and holds back nothing. While
Prefect's API does not answer, a failure is nobody's: the claims go back unchanged and the
dispatcher pauses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flows.delivery_pool import DeliveryPool
from flows.prefect_clients import SharedPrefectClients
from flows.stages import Stages
from hub.spool import ledger, suspects

if TYPE_CHECKING:
    from flows.runtime import Runtime
    from hub.server import Hub

log = logging.getLogger("hookhub.dispatch")

POLL_SECONDS = 0.05
FLOW_FAILURE_BACKOFF = 5.0
"""Seconds before a failed run's claims are tried again (and the pause while Prefect is away)."""
QUARANTINE_AFTER = 3
"""Failed flow runs of a row alone that make it a dead letter."""
HEALTH_CHECK_SECONDS = 10.0
PREFECT_CHECK_SECONDS = 10.0
"""How often the dispatcher asks Prefect's API whether it is healthy, for `hub.health`."""
PREFECT_CHECK_TIMEOUT = 3.0
UPKEEP_CHECK_SECONDS = 60.0
CANCEL_SECONDS = 10.0
"""How long a cancelled flow run may take to wind down (Prefect records the crash if it can)."""


@dataclass
class _Session:
    """What one run of the dispatcher's loop holds, from `_set_up` to `_shut_down`."""

    conn: sqlite3.Connection
    runtime: Runtime
    pool: DeliveryPool | None
    prefect: SharedPrefectClients
    in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    """Flow runs started and not yet ended."""
    pool_started: asyncio.Task[None] | None = None
    upkeep: asyncio.Task[None] | None = None
    prefect_watch: asyncio.Task[None] | None = None
    next_upkeep: float = 0.0
    """Monotonic time of the next check for due upkeep."""


@dataclass
class Dispatcher:
    hub: Hub
    stop_timeout: float = 20.0
    stages: Stages = field(default_factory=Stages)
    """The per-row parts flow runs call (tests hand in failing ones)."""
    run_flow: Callable[..., Awaitable[dict[str, int]]] | None = None
    """The flow a batch runs in; None: flows.pipeline.deliver_batch."""
    flow_failure_backoff: float = FLOW_FAILURE_BACKOFF
    quarantine_after: int = QUARANTINE_AFTER
    owner: str = field(default_factory=lambda: f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
    clock: Callable[[], float] = time.time
    """Wall clock (unix seconds) for the ledger's rules; not the hub's, which is the receiver's
    (tests set that one to a fixture's time so signatures verify)."""
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    flows_run: int = field(default=0, init=False)
    pool: DeliveryPool | None = field(default=None, init=False)
    in_flight: int = field(default=0, init=False)
    _claims: dict[asyncio.Task[None], tuple[list[str], list[tuple[str, str]]]] = field(
        default_factory=dict, init=False
    )
    """What each flow run in flight has claimed, until it ends or gives it back."""
    _prefect: SharedPrefectClients | None = field(default=None, init=False)
    _paused_until: float = field(default=0.0, init=False)
    """Monotonic time before which no run starts (Prefect's API did not answer)."""
    _suspects_next: bool = field(default=True, init=False)

    def start(self) -> None:
        self.hub.health.dispatching = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hookhub-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # Wait for batches under way; with none, do not wait for Prefect's server to finish
            # starting (that blocks the thread for seconds): an unfinished claim is recovered
            # at the next start anyway.
            self._thread.join(timeout=self.stop_timeout + CANCEL_SECONDS + 5 if self.in_flight else 2.0)
            self._thread = None

    def _run(self) -> None:
        try:
            # uvloop where installed (uvicorn[standard] brings it): the delivery loop is CPU-bound.
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self._main())
        except Exception:
            log.exception("dispatcher stopped on an error", extra={"event": "dispatcher_error"})

    async def _main(self) -> None:
        session = self._set_up()
        try:
            while not self._stop.is_set():
                await self._turn(session)
        finally:
            await self._shut_down(session)

    def _set_up(self) -> _Session:
        """Open the spool, put back a killed process's claims, bind the runtime the flow runs use."""
        from flows.runtime import Runtime, bind

        conn = ledger.open_spool(self.hub.spool_path)
        inbox, deliveries = ledger.recover(conn, self.clock())
        if inbox or deliveries:
            log.info(
                "resuming work of a previous run",
                extra={"event": "recovered", "submissions": inbox, "deliveries": deliveries},
            )
        processes = self.hub.config.current.dispatch.delivery_processes
        pool = DeliveryPool(processes, _log_level()) if processes else None
        self.pool = pool
        runtime = Runtime(
            config=lambda: self.hub.config.current,
            spool_path=self.hub.spool_path,
            data_dir=self.hub.data_dir,
            delivery_pool=pool,
            stages=self.stages,
        )
        bind(runtime)
        prefect = self._prefect = SharedPrefectClients()
        return _Session(conn=conn, runtime=runtime, pool=pool, prefect=prefect)

    async def _turn(self, session: _Session) -> None:
        """One turn of the loop: keep the services up, then claim a batch and start its flow run."""
        self.hub.health.dispatcher_beat_at = self.clock()
        # Awaited here, not in a task of its own: the runs started below inherit the clients.
        if not await session.prefect.ensure():
            self._note_prefect(session.prefect.error or "not connected yet")
        self._start_services(session)
        settings = self.hub.config.current.dispatch
        claimed = await self._claim_when_ready(
            session, settings.max_flows, settings.batch_size, settings.batch_wait
        )
        if claimed is None:
            return
        inbox_ids, due, of_suspects = claimed
        if inbox_ids or due:
            self._start_flow(session, inbox_ids, due, settings.chunk_size, of_suspects)

    def _start_services(self, session: _Session) -> None:
        """Start the delivery workers once, and the upkeep whenever it is due and not running."""
        if session.pool is not None and session.pool_started is None:
            session.pool_started = asyncio.create_task(self._start_pool(session.pool))
        if session.prefect.ready and session.prefect_watch is None:
            # Created once the shared clients are open, so the checks reuse them (context).
            session.prefect_watch = asyncio.create_task(self._watch_prefect())
        upkeep = session.upkeep
        if time.monotonic() >= session.next_upkeep and (upkeep is None or upkeep.done()):
            session.next_upkeep = time.monotonic() + UPKEEP_CHECK_SECONDS
            # Beside the deliveries, not before them: a slow provider API must not stall them.
            session.upkeep = asyncio.create_task(self._upkeep(session.conn))

    async def _claim_when_ready(
        self, session: _Session, max_flows: int, batch_size: int, batch_wait: float
    ) -> tuple[list[str], list[tuple[str, str]], bool] | None:
        """Claim work if a run may start and there is some; None after waiting a little if not."""
        try:
            if (
                len(session.in_flight) >= max_flows
                or time.monotonic() < self._paused_until
                or not ledger.has_work(session.conn, self.clock())
            ):
                await asyncio.sleep(POLL_SECONDS)
                return None
            return await self._claim(session.conn, batch_size, batch_wait)
        except sqlite3.Error as exc:
            # A locked or full disk is usually passing; the spool keeps the work meanwhile.
            log.error(
                "spool unavailable to the dispatcher; retrying",
                extra={"event": "dispatch_spool_error", "error": str(exc)},
            )
            await asyncio.sleep(FLOW_FAILURE_BACKOFF)
            return None

    def _start_flow(
        self,
        session: _Session,
        inbox_ids: list[str],
        due: list[tuple[str, str]],
        chunk_size: int,
        of_suspects: bool,
    ) -> None:
        """Run a flow for the claimed work; its claims are held, and counted in flight, until it ends."""
        in_flight = session.in_flight
        job = asyncio.create_task(self._flow(session.conn, inbox_ids, due, chunk_size, of_suspects))
        self._claims[job] = (inbox_ids, due)
        job.add_done_callback(lambda done: self._claims.pop(done, None))
        in_flight.add(job)
        job.add_done_callback(in_flight.discard)
        self.in_flight = len(in_flight)
        job.add_done_callback(lambda _: setattr(self, "in_flight", len(in_flight)))

    async def _shut_down(self, session: _Session) -> None:
        """Stop the upkeep, let the runs in flight end, then close everything `_set_up` opened."""
        from flows.runtime import unbind

        for task in (session.upkeep, session.prefect_watch):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if session.in_flight:
            await self._finish_in_flight(session)
        unbind(session.runtime)
        session.conn.close()
        await session.prefect.aclose()
        if session.pool_started is not None:
            session.pool_started.cancel()
        if session.pool is not None:
            await session.pool.aclose()
        from flows.http_clients import close_shared_client

        await close_shared_client()

    async def _finish_in_flight(self, session: _Session) -> None:
        """Let running batches finish; cancel the rest and give their claims back.

        One that cannot finish (a signal to the process group stops Prefect's ephemeral server at
        once, so its run can no longer report) is cancelled, and its claims are given back here while
        the spool is still open: Prefect's crash handling may outlast CANCEL_SECONDS. What it
        delivered is in the ledger.
        """
        _, unfinished = await asyncio.wait(session.in_flight, timeout=self.stop_timeout)
        for job in unfinished:
            job.cancel()
        if unfinished:
            await asyncio.wait(unfinished, timeout=CANCEL_SECONDS)
        for job in unfinished:
            self._give_back(session.conn, job)

    async def _start_pool(self, pool: DeliveryPool) -> None:
        """Spawn the workers ahead of the first chunk if any destination will use them.

        Otherwise they start on first use.
        """
        if not any(pool.takes(d.type) for d in self.hub.config.current.destinations.values()):
            return
        try:
            await pool.start()
        except Exception as exc:  # noqa: BLE001 - deliveries then fail and retry, and say why
            log.error(
                "delivery worker processes did not start",
                extra={"event": "delivery_pool_failed", "error": f"{type(exc).__name__}: {exc}"},
            )

    async def _upkeep(self, conn: sqlite3.Connection) -> None:
        """Start the maintenance flow for sources whose upkeep is due (watch renewals)."""
        from flows.maintenance import due_sources, maintain_sources

        try:
            due = due_sources(self.hub.config.current, conn, self.clock())
            if not due:
                return
            await maintain_sources(
                spool_path=str(self.hub.spool_path), config_path=str(self.hub.config.path), source_ids=due
            )
        except Exception as exc:  # noqa: BLE001 - upkeep must never stop deliveries
            log.error("maintenance flow failed", extra={"event": "maintenance_failed", "error": str(exc)})

    async def _claim(
        self,
        conn: sqlite3.Connection,
        batch_size: int,
        batch_wait: float,
    ) -> tuple[list[str], list[tuple[str, str]], bool]:
        """A group of suspects and a fresh batch, turn about (either when the other has none).

        Returns (submissions, due deliveries, whether they are suspects).
        """
        for of_suspects in (self._suspects_next, not self._suspects_next):
            if of_suspects:
                inbox_ids, due = suspects.claim_suspects(conn, self.clock(), self.owner)
            else:
                await self._fill(conn, batch_size, batch_wait)
                inbox_ids = ledger.claim_inbox(conn, self.clock(), batch_size, self.owner)
                due = ledger.claim_due(conn, self.clock(), batch_size)
            if inbox_ids or due:
                self._suspects_next = not of_suspects
                return inbox_ids, due, of_suspects
        return [], [], False

    async def _fill(self, conn: sqlite3.Connection, batch_size: int, batch_wait: float) -> None:
        """Give a batch up to `batch_wait` seconds to fill, so one flow run carries many submissions."""
        deadline = time.monotonic() + batch_wait
        while time.monotonic() < deadline and not self._stop.is_set():
            if ledger.pending_count(conn, self.clock()) >= batch_size:
                return
            await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    async def _flow(
        self,
        conn: sqlite3.Connection,
        inbox_ids: list[str],
        due: list[tuple[str, str]],
        chunk_size: int,
        of_suspects: bool = False,
    ) -> None:
        run_flow = self.run_flow
        if run_flow is None:
            from flows.pipeline import deliver_batch

            run_flow = deliver_batch
        started = time.perf_counter()
        try:
            totals = await run_flow(
                spool_path=str(self.hub.spool_path),
                config_path=str(self.hub.config.path),
                inbox_ids=inbox_ids,
                due=[list(k) for k in due],
                chunk_size=chunk_size,
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                self._give_back(conn, task)
            raise
        except Exception as exc:  # noqa: BLE001 - whatever failed the run, its claims must not stay held
            await self._flow_failed(conn, inbox_ids, due, f"{type(exc).__name__}: {exc}")
            return
        if of_suspects:
            try:
                suspects.flow_succeeded(conn, inbox_ids, due)
            except sqlite3.Error as error:  # they stay suspects: tried in small groups, no harm
                log.warning(
                    "could not clear suspects", extra={"event": "suspects_not_cleared", "error": str(error)}
                )
        self.flows_run += 1
        log.info(
            "batch delivered",
            extra={
                "event": "batch_done",
                "submissions": len(inbox_ids),
                "retries": len(due),
                "outcomes": totals,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    async def _flow_failed(
        self, conn: sqlite3.Connection, inbox_ids: list[str], due: list[tuple[str, str]], error: str
    ) -> None:
        """Give the claims back as suspects to bisect, or unchanged if Prefect is what failed."""
        task = asyncio.current_task()
        if task is None or task not in self._claims:  # given back already
            return
        facts: dict[str, Any] = {"error": error, "submissions": len(inbox_ids), "retries": len(due)}
        if not await self._prefect_answers():
            self._paused_until = time.monotonic() + self.flow_failure_backoff
            log.error(
                "flow run failed and Prefect's API does not answer; its batch goes back to the queue",
                extra={"event": "flow_failed", **facts},
            )
            self._give_back(conn, task)
            return
        del self._claims[task]
        try:
            quarantined = suspects.flow_failed(
                conn, inbox_ids, due, error, self.clock(), self.flow_failure_backoff, self.quarantine_after
            )
        except sqlite3.Error as spool_error:
            log.warning(
                "could not give a failed batch's claims back; the next start recovers them",
                extra={"event": "release_failed", "error": str(spool_error)},
            )
            return
        log.error(
            "flow run failed; its batch is tried again in halves",
            extra={"event": "flow_failed", **facts, "quarantined": quarantined},
        )

    async def _watch_prefect(self) -> None:
        """Record whether Prefect's API answers, every PREFECT_CHECK_SECONDS, beside the deliveries."""
        from prefect.client.orchestration import get_client

        while True:
            try:
                failure = await asyncio.wait_for(get_client().api_healthcheck(), PREFECT_CHECK_TIMEOUT)
                error = None if failure is None else f"{type(failure).__name__}: {failure}"
            except TimeoutError:
                error = f"no answer within {PREFECT_CHECK_TIMEOUT:g} s"
            self._note_prefect(error)
            await asyncio.sleep(PREFECT_CHECK_SECONDS)

    def _note_prefect(self, error: str | None) -> None:
        health = self.hub.health
        health.prefect_reachable = error is None
        health.prefect_error = error
        health.prefect_checked_at = self.clock()

    async def _prefect_answers(self) -> bool:
        if self._prefect is None or not self._prefect.ready:
            return False
        from prefect.client.orchestration import get_client

        try:  # the shared client (opened in _main, inherited through the context)
            error = await asyncio.wait_for(get_client().api_healthcheck(), HEALTH_CHECK_SECONDS)
        except TimeoutError:
            return False
        return error is None

    def _give_back(self, conn: sqlite3.Connection, job: asyncio.Task[None]) -> None:
        """Release what `job` claimed, once; a spool error leaves it to the next start's recovery."""
        claims = self._claims.pop(job, None)
        if claims is None:
            return
        try:
            ledger.release(conn, self.clock(), *claims)
        except sqlite3.Error as error:
            log.warning(
                "could not give a batch's claims back; the next start recovers them",
                extra={"event": "release_failed", "error": str(error)},
            )


def _log_level() -> str:
    return logging.getLevelName(logging.getLogger("hookhub").getEffectiveLevel()).lower()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def attach_dispatcher(hub: Hub) -> Dispatcher:
    dispatcher = Dispatcher(hub)
    hub.services.append(dispatcher)
    return dispatcher
