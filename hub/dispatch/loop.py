"""The dispatcher's loop: claims spooled work in batches and starts one Prefect flow run per batch."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from flows.delivery_pool import DeliveryPool
from flows.prefect_clients import SharedPrefectClients, quiet_prefect, unquiet_prefect
from flows.stages import Stages
from hub.dispatch.keeper import LeaseKeeper, call_soon, new_owner
from hub.dispatch.prefect_watch import note_prefect, watch_prefect
from hub.dispatch.runs import FlowRuns
from hub.dispatch.wake import Poll, Wake, wake_for
from hub.roles import MaintenanceRole
from hub.spool import claiming, lease, suspects
from hub.spool.transactions import open_spool
from hub.store import Connection, StoreError
from hub.store.location import Store

if TYPE_CHECKING:
    from flows.runtime import Runtime
    from hub.server import Hub

log = logging.getLogger("hookhub.dispatch")

POLL_SECONDS = 0.05
FLOW_FAILURE_BACKOFF = 5.0
"""Seconds before a failed run's claims are tried again (and the pause while Prefect is away)."""
QUARANTINE_AFTER = 3
"""Failed flow runs of a row alone that make it a dead letter."""
UPKEEP_CHECK_SECONDS = 60.0
# A stop must be over within ~10 s of the signal (service managers escalate to SIGKILL after
# 10-90 s): runs under way get STOP_GRACE seconds to end, a cancelled one CANCEL_SECONDS to
# report its end to Prefect, the delivery workers POOL_STOP_SECONDS to record their chunks.
STOP_GRACE = 3.0
CANCEL_SECONDS = 2.0
POOL_STOP_SECONDS = 1.0


@dataclass
class _Session:
    """What one run of the dispatcher's loop holds, from `_set_up` to `_shut_down`."""

    conn: Connection
    runtime: Runtime
    pool: DeliveryPool | None
    prefect: SharedPrefectClients
    pool_started: asyncio.Task[None] | None = None
    upkeep: asyncio.Task[None] | None = None
    prefect_watch: asyncio.Task[None] | None = None
    next_upkeep: float = 0.0
    """Monotonic time of the next check for due upkeep."""
    wake: Wake = field(default_factory=Poll)
    keeper: LeaseKeeper | None = None


@dataclass
class Dispatcher:
    hub: Hub
    stop_timeout: float = STOP_GRACE
    """Seconds runs under way get to end at a stop before they are cancelled."""
    stages: Stages = field(default_factory=Stages)
    """The per-row parts flow runs call (tests hand in failing ones)."""
    run_flow: Callable[..., Awaitable[dict[str, int]]] | None = None
    """The flow a batch runs in; None: flows.pipeline.deliver_batch."""
    flow_failure_backoff: float = FLOW_FAILURE_BACKOFF
    quarantine_after: int = QUARANTINE_AFTER
    owner: str = field(default_factory=lambda: new_owner())
    """Tags this dispatcher's claims, lease and flow runs (`worker:<owner>`); a new one after a
    lost lease, so writes of the runs it abandoned are refused as another owner's."""
    lease_seconds: float = lease.LEASE_SECONDS
    """How long the lease lasts unrenewed: a frozen or killed worker's claims wait this long at
    most; renewed (and other owners' dead claims reaped) every third of it."""
    waker: Callable[[Store, asyncio.AbstractEventLoop], Wake] = wake_for
    """How an idle dispatcher learns of new work (LISTEN on PostgreSQL); a bench compares polling."""
    clock: Callable[[], float] = time.time
    """Wall clock (unix seconds) for the ledger's rules and leases; not the hub's, which is the
    receiver's (tests set that one to a fixture's time so signatures verify)."""
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    pool: DeliveryPool | None = field(default=None, init=False)
    runs: FlowRuns = field(init=False)
    _suspects_next: bool = field(default=True, init=False)
    _session: _Session | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.runs = FlowRuns(
            self.hub, self.clock, self.run_flow, self.flow_failure_backoff, self.quarantine_after
        )

    @property
    def flows_run(self) -> int:
        return self.runs.flows_run

    @property
    def in_flight(self) -> int:
        return len(self.runs.in_flight)

    def start(self) -> None:
        self.hub.health.dispatching = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hookhub-dispatcher", daemon=True)
        self._thread.start()

    @property
    def maintenance(self) -> MaintenanceRole:
        return self.hub.maintenance

    def stop(self) -> None:
        self._stop.set()
        session = self._session
        if session is not None:
            session.wake.poke()
        if self._thread is not None:
            # Wait for batches under way; with none, do not wait for Prefect's server to finish
            # starting (that blocks the thread for seconds): an unfinished claim is recovered
            # at the next start anyway.
            busy = self.in_flight or self.pool is not None
            self._thread.join(
                timeout=self.stop_timeout + CANCEL_SECONDS + POOL_STOP_SECONDS + 1 if busy else 2.0
            )
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
        """Take a lease, put back the claims of owners that are gone, bind the runtime runs use."""
        from flows.runtime import Runtime, bind

        unquiet_prefect()  # a dispatcher stopped before in this process (tests) silenced it
        conn = open_spool(self.hub.store)
        lease.hold(conn, lease.this_process(self.owner, self.hub.port), self.clock(), self.lease_seconds)
        inbox, deliveries = lease.recover(conn, self.clock())
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
            store=self.hub.store,
            data_dir=self.hub.data_dir,
            delivery_pool=pool,
            stages=self.stages,
            clock=self.clock,
            owner=self.owner,
        )
        bind(runtime)
        prefect = SharedPrefectClients()
        self.runs.prefect_ready = lambda: prefect.ready
        loop = asyncio.get_running_loop()
        session = _Session(
            conn=conn, runtime=runtime, pool=pool, prefect=prefect, wake=self.waker(self.hub.store, loop)
        )
        self.maintenance.keep(conn, self.owner, self.clock(), self.lease_seconds)
        session.keeper = LeaseKeeper(
            self.hub.store,
            self.owner,
            self.hub.port,
            self.clock,
            self.lease_seconds,
            self.maintenance,
            new_owner,
            lambda lost, new: call_soon(loop, self._lease_lost, session, lost, new),
        )
        session.keeper.start()
        self._session = session
        return session

    async def _turn(self, session: _Session) -> None:
        """One turn of the loop: keep the services up, then claim a batch and start its flow run."""
        self.hub.health.dispatcher_beat_at = self.clock()
        # Awaited here, not in a task of its own: the runs started below inherit the clients.
        if not await session.prefect.ensure():
            note_prefect(self.hub.health, self.clock, session.prefect.error or "not connected yet")
        # Nothing is claimed while Prefect is away: a flow run could only fail, log and put its
        # batch back, and `status` would show a claim that nothing works on.
        usable = session.prefect.ready and self.hub.health.prefect_reachable is not False
        self._start_services(session, usable)
        if not usable:
            await asyncio.sleep(POLL_SECONDS)
            return
        settings = self.hub.config.current.dispatch
        claimed = await self._claim_when_ready(
            session, settings.max_flows, settings.batch_size, settings.batch_wait
        )
        if claimed is None:
            return
        inbox_ids, due, of_suspects = claimed
        if inbox_ids or due:
            self.runs.start(session.conn, inbox_ids, due, settings.chunk_size, of_suspects, self.owner)

    def _lease_lost(self, session: _Session, lost: str, new: str) -> None:
        """On the loop, after the keeper found the lease dropped and took one under `new`: forget
        the runs under way (their late writes are refused by the ledger) and claim as `new`."""
        from flows.runtime import bind

        abandoned = self.runs.abandon()
        self.owner = new
        log.warning(
            "lease lost; the runs under way are abandoned and this worker goes on as a new owner",
            extra={"event": "lease_lost", "owner": lost, "new_owner": new, "runs": abandoned},
        )
        session.runtime = replace(session.runtime, owner=new)
        bind(session.runtime)

    def _start_services(self, session: _Session, prefect_usable: bool) -> None:
        """Start the delivery workers once, and the upkeep (flow runs) whenever it is due, not
        running and Prefect answers."""
        if session.pool is not None and session.pool_started is None:
            session.pool_started = asyncio.create_task(self._start_pool(session.pool))
        if session.prefect.ready and session.prefect_watch is None:
            # Created once the shared clients are open, so the checks reuse them (context).
            session.prefect_watch = asyncio.create_task(watch_prefect(self.hub.health, self.clock))
        upkeep = session.upkeep
        if (
            prefect_usable
            and self.maintenance.held
            and time.monotonic() >= session.next_upkeep
            and (upkeep is None or upkeep.done())
        ):
            session.next_upkeep = time.monotonic() + UPKEEP_CHECK_SECONDS
            # Beside the deliveries, not before them: a slow provider API must not stall them.
            session.upkeep = asyncio.create_task(self._upkeep(session.conn))

    async def _claim_when_ready(
        self, session: _Session, max_flows: int, batch_size: int, batch_wait: float
    ) -> tuple[list[str], list[tuple[str, str]], bool] | None:
        """Claim work if a run may start and there is some; None after waiting a little if not."""
        try:
            keeper = session.keeper
            if (
                len(self.runs.in_flight) >= max_flows
                or time.monotonic() < self.runs.paused_until
                or (keeper is not None and keeper.owner != self.owner)  # a lost lease, not yet handled
            ):
                await asyncio.sleep(POLL_SECONDS)
                return None
            if not claiming.has_work(session.conn, self.clock()):
                await session.wake.wait()
                return None
            return await self._claim(session.conn, batch_size, batch_wait)
        except StoreError as exc:
            # A locked or full disk is usually passing; the spool keeps the work meanwhile.
            log.error(
                "spool unavailable to the dispatcher; retrying",
                extra={"event": "dispatch_spool_error", "error": str(exc)},
            )
            await asyncio.sleep(FLOW_FAILURE_BACKOFF)
            return None

    async def _shut_down(self, session: _Session) -> None:
        """Stop the upkeep, end the runs in flight, then close everything `_set_up` opened."""
        from flows.http_clients import close_shared_client
        from flows.runtime import unbind

        # What Prefect logs from here on is the stop itself (runs cancelled, their crash
        # reports, its event and log workers flushing to a server about to go); hookhub's
        # own loggers keep their levels.
        quiet_prefect()
        for task in (session.upkeep, session.prefect_watch):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        cancelled = await self.runs.finish(session.conn, self.stop_timeout, CANCEL_SECONDS)
        if cancelled:
            log.info(
                "stopped with batches under way; they are finished at the next start",
                extra={"event": "runs_cancelled", "runs": cancelled},
            )
        unbind(session.runtime)
        session.wake.close()
        await session.prefect.aclose()
        if session.pool_started is not None:
            session.pool_started.cancel()
        if session.pool is not None:
            await session.pool.aclose(POOL_STOP_SECONDS)
        if session.keeper is not None:
            session.keeper.stop()
        self.maintenance.release(session.conn)
        try:
            lease.give_up(session.conn, self.owner)
        except StoreError as error:  # it expires by itself
            log.warning("lease not given up", extra={"event": "lease_not_given_up", "error": str(error)})
        session.conn.close()
        self._session = None
        await close_shared_client()

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

    async def _upkeep(self, conn: Connection) -> None:
        """Start the maintenance flow for sources whose upkeep is due (watch renewals), then the
        retention flow when `retention:` is due (flows/maintenance.py), then the reconcile flow
        for sources whose `reconcile.every` has passed (flows/reconcile.py)."""
        from flows.maintenance import due_sources, maintain_sources, upkeep_retention
        from flows.reconcile import upkeep_reconcile

        try:
            store, config_path = self.hub.store.key, str(self.hub.config.path)
            due = due_sources(self.hub.config.current, conn, self.clock())
            if due:
                await maintain_sources(store=store, config_path=config_path, source_ids=due)
            await upkeep_retention(store, config_path, self.hub.config.current, conn, self.clock())
            await upkeep_reconcile(store, config_path, self.hub.config.current, conn, self.clock())
        except Exception as exc:  # noqa: BLE001 - upkeep must never stop deliveries
            log.error("maintenance flow failed", extra={"event": "maintenance_failed", "error": str(exc)})

    async def _claim(
        self,
        conn: Connection,
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
                inbox_ids = claiming.claim_inbox(conn, self.clock(), batch_size, self.owner)
                due = claiming.claim_due(conn, self.clock(), batch_size, self.owner)
            if inbox_ids or due:
                self._suspects_next = not of_suspects
                return inbox_ids, due, of_suspects
        return [], [], False

    async def _fill(self, conn: Connection, batch_size: int, batch_wait: float) -> None:
        """Give a batch up to `batch_wait` seconds to fill, so one flow run carries many submissions."""
        deadline = time.monotonic() + batch_wait
        while time.monotonic() < deadline and not self._stop.is_set():
            if claiming.pending_count(conn, self.clock()) >= batch_size:
                return
            await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def _log_level() -> str:
    return logging.getLevelName(logging.getLogger("hookhub").getEffectiveLevel()).lower()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def attach_dispatcher(hub: Hub, lease_seconds: float = lease.LEASE_SECONDS) -> Dispatcher:
    dispatcher = Dispatcher(hub, lease_seconds=lease_seconds)
    hub.services.append(dispatcher)
    return dispatcher
