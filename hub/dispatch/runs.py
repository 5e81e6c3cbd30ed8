"""Flow runs in flight: each one's claims, held until it ends or gives them back.

A run that fails gives its claims back as suspects to bisect (hub/spool/suspects.py), or
unchanged while Prefect's API does not answer (then the dispatcher pauses); a run cancelled by
a stop gives them back as they were. Everything here runs on the dispatcher's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flows.prefect_clients import LastingCondition
from hub.spool import claiming, suspects
from hub.store import Connection, StoreError

if TYPE_CHECKING:
    from hub.server import Hub

log = logging.getLogger("hookhub.dispatch")

HEALTH_CHECK_SECONDS = 10.0


@dataclass(frozen=True)
class Claims:
    """Submissions and (submission, destination) deliveries one flow run holds, and the owner
    they were claimed as: only that owner's claims are given back (after a lost lease the
    dispatcher has a new owner, and another worker may hold them)."""

    inbox_ids: list[str]
    deliveries: list[tuple[str, str]]
    owner: str


@dataclass
class FlowRuns:
    hub: Hub
    clock: Callable[[], float]
    run_flow: Callable[..., Awaitable[dict[str, int]]] | None
    """The flow a batch runs in; None: flows.pipeline.deliver_batch."""
    flow_failure_backoff: float
    quarantine_after: int
    prefect_ready: Callable[[], bool] = lambda: False
    in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    claims: dict[asyncio.Task[None], Claims] = field(default_factory=dict)
    """What each run in flight has claimed, until it ends or gives it back."""
    flows_run: int = 0
    paused_until: float = 0.0
    """Monotonic time before which no run starts (Prefect's API did not answer)."""
    prefect_away: LastingCondition = field(default_factory=LastingCondition)
    """Runs that failed with Prefect away, logged once, then at most once a minute."""

    def start(
        self,
        conn: Connection,
        inbox_ids: list[str],
        due: list[tuple[str, str]],
        chunk_size: int,
        of_suspects: bool,
        owner: str,
    ) -> None:
        """Run a flow for the claimed work; its claims are held, and counted in flight, until it ends."""
        job = asyncio.create_task(self._flow(conn, inbox_ids, due, chunk_size, of_suspects))
        self.claims[job] = Claims(inbox_ids, due, owner)
        job.add_done_callback(lambda done: self.claims.pop(done, None))
        self.in_flight.add(job)
        job.add_done_callback(self.in_flight.discard)

    def abandon(self) -> int:
        """Forget and cancel every run in flight without giving its claims back (the lease that
        made them this process's is gone; another worker may hold them now). Returns how many."""
        jobs = list(self.in_flight)
        self.claims.clear()
        for job in jobs:
            job.cancel()
        return len(jobs)

    async def finish(self, conn: Connection, grace: float, cancel_wait: float) -> int:
        """Let the runs in flight end within `grace` seconds; cancel the rest and give back their claims.

        A cancelled run ends `Crashed` in Prefect (its engine reports the cancellation while the
        API is up: the hub stops Prefect's server only after this). What it delivered is in the
        ledger; the rest is claimed again at the next start. Returns how many were cancelled.
        """
        if not self.in_flight:
            return 0
        _, unfinished = await asyncio.wait(set(self.in_flight), timeout=grace)
        for job in unfinished:
            job.cancel()
        if unfinished:
            await asyncio.wait(unfinished, timeout=cancel_wait)
        for job in unfinished:
            self.give_back(conn, job)
        return len(unfinished)

    async def _flow(
        self,
        conn: Connection,
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
                store=self.hub.store.key,
                config_path=str(self.hub.config.path),
                inbox_ids=inbox_ids,
                due=[list(k) for k in due],
                chunk_size=chunk_size,
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                self.give_back(conn, task)
            raise
        except Exception as exc:  # noqa: BLE001 - whatever failed the run, its claims must not stay held
            await self._flow_failed(conn, inbox_ids, due, f"{type(exc).__name__}: {exc}")
            return
        if of_suspects:
            try:
                suspects.flow_succeeded(conn, inbox_ids, due)
            except StoreError as error:  # they stay suspects: tried in small groups, no harm
                log.warning(
                    "could not clear suspects", extra={"event": "suspects_not_cleared", "error": str(error)}
                )
        self.flows_run += 1
        dead, retrying = totals.get("dead", 0), totals.get("retrying", 0)
        log.log(
            logging.ERROR if dead else logging.WARNING if retrying else logging.INFO,
            "batch done: %d delivered, %d retrying, %d dead",
            totals.get("delivered", 0),
            retrying,
            dead,
            extra={
                "event": "batch_done",
                "submissions": len(inbox_ids),
                "retries": len(due),
                "outcomes": totals,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    async def _flow_failed(
        self, conn: Connection, inbox_ids: list[str], due: list[tuple[str, str]], error: str
    ) -> None:
        """Give the claims back as suspects to bisect, or unchanged if Prefect is what failed."""
        task = asyncio.current_task()
        if task is None or task not in self.claims:  # given back already
            return
        facts: dict[str, Any] = {"error": error, "submissions": len(inbox_ids), "retries": len(due)}
        if not await self.prefect_answers():
            self.paused_until = time.monotonic() + self.flow_failure_backoff
            if self.prefect_away.due():  # the same cause each time: once, then once a minute
                log.error(
                    "flow run failed and Prefect's API does not answer; its batch goes back to the queue",
                    extra={"event": "flow_failed", **facts, "held_back": self.prefect_away.logged()},
                )
            self.give_back(conn, task)
            return
        owner = self.claims.pop(task).owner
        self.prefect_away.over()
        try:
            quarantined = suspects.flow_failed(
                conn,
                inbox_ids,
                due,
                error,
                self.clock(),
                self.flow_failure_backoff,
                self.quarantine_after,
                owner,
            )
        except StoreError as spool_error:
            log.warning(
                "could not give a failed batch's claims back; the next start recovers them",
                extra={"event": "release_failed", "error": str(spool_error)},
            )
            return
        log.error(
            "flow run failed; its batch is tried again in halves",
            extra={"event": "flow_failed", **facts, "quarantined": quarantined},
        )

    async def prefect_answers(self) -> bool:
        if not self.prefect_ready():
            return False
        from prefect.client.orchestration import get_client

        try:  # the shared client (opened in the dispatcher's loop, inherited through the context)
            error = await asyncio.wait_for(get_client().api_healthcheck(), HEALTH_CHECK_SECONDS)
        except TimeoutError:
            return False
        return error is None

    def give_back(self, conn: Connection, job: asyncio.Task[None]) -> None:
        """Release what `job` claimed, once; a spool error leaves it to the next start's recovery."""
        claims = self.claims.pop(job, None)
        if claims is None:
            return
        try:
            claiming.release(conn, self.clock(), claims.inbox_ids, claims.deliveries, claims.owner)
        except StoreError as error:
            log.warning(
                "could not give a batch's claims back; the next start recovers them",
                extra={"event": "release_failed", "error": str(error)},
            )
