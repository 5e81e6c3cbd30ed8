"""The Prefect flow that moves a batch of spooled webhooks to their destinations.

One flow run per batch (a flow run costs ~1 s of orchestration here, so one per webhook
would cap the hub at ~1 submission/s) and one task per chunk of submissions: a
"normalize and route" task per chunk, then a "deliver" task per destination per chunk,
which sends its items concurrently with httpx inside. Every outcome is written to the
ledger before the task ends, so a retried or crashed flow run redoes only what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from prefect import flow, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.context import TagsContext

from connectors import get_connector
from connectors.base import Connector, FetchFailed
from flows.delivery import deliver_and_record
from flows.http_clients import api_sender, delivery_sender
from flows.prefect_clients import unpersisted_results
from flows.run_report import (
    UNROUTED,
    batch_counts,
    batch_sources,
    batch_state,
    chunk_counts,
    report_chunk,
    report_routing,
    run_tags,
)
from flows.runtime import Runtime, runtime_for
from hub.config.models import HubConfig
from hub.routing.process import ConnectorLookup, connector_for, normalize_rows, plan_batch
from hub.spool import routing_store
from hub.spool.ids import new_id
from hub.spool.rows import InboxRow
from hub.store import Connection, StoreUnavailable
from hub.submission import Submission

log = logging.getLogger("hookhub.pipeline")
T = TypeVar("T")


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _join(ids: list[str]) -> str:
    # Ids travel between tasks as one string: Prefect walks list parameters and results item by
    # item (visit_collection), which cost more CPU than the delivery of a chunk itself.
    return ",".join(ids)


def _split(joined: str) -> list[str]:
    return joined.split(",") if joined else []


FETCH_RETRIES = 8
"""A notification whose details cannot be fetched is tried again this many times (backing off
from 30 s to an hour) before it becomes a dead letter."""


@dataclass
class Fetched:
    """What completing a batch's thin notifications produced; the inputs are left as they were."""

    submissions: dict[str, Submission] = field(default_factory=dict)
    """Every submission to route: those that needed no fetch, then the completed ones and the
    rows stored for what a notification stood for, in that order."""
    failed: dict[str, str] = field(default_factory=dict)
    """New dead letters: inbox id -> why."""
    later: list[str] = field(default_factory=list)
    """Rows given back to be fetched again after a backoff (`routing_store.fetch_later`)."""


@dataclass(frozen=True)
class _RowFetched:
    """One notification's outcome: its submissions, or why it is a dead letter, or `later`."""

    submissions: dict[str, Submission] = field(default_factory=dict)
    failed: str | None = None
    later: bool = False


async def fetch_details(
    config: HubConfig,
    conn: Connection,
    rows: dict[str, InboxRow],
    submissions: dict[str, Submission],
    connectors: ConnectorLookup = get_connector,
    clock: Callable[[], float] = time.time,
    owner: str | None = None,
) -> Fetched:
    """Complete thin notifications through their provider's API (connectors with `fetches`).

    Each row on its own: whatever fails for one (the API, the connector, storing what it
    fetched) makes that row wait for another try or a dead letter, never fails the batch.
    """
    kept: dict[str, Submission] = {}
    fetched = Fetched()
    for inbox_id, submission in submissions.items():
        row = rows[inbox_id]
        try:
            connector = connector_for(config, row.source, row.provider, connectors)
            if not connector.fetches or row.kind == "fetched":
                kept[inbox_id] = submission
                continue
            outcome = await _fetch_one(config, conn, row, connector, submission, clock, owner)
        except StoreUnavailable:
            raise  # the spool (locked, full), not this row: the run fails and is retried
        except Exception as exc:  # noqa: BLE001 - a connector bug is this row's dead letter
            outcome = _connector_bug(row, exc)
        fetched.submissions.update(outcome.submissions)
        if outcome.failed is not None:
            fetched.failed[inbox_id] = outcome.failed
        if outcome.later:
            fetched.later.append(inbox_id)
    fetched.submissions = {**kept, **fetched.submissions}
    return fetched


async def _fetch_one(
    config: HubConfig,
    conn: Connection,
    row: InboxRow,
    connector: Connector,
    submission: Submission,
    clock: Callable[[], float],
    owner: str | None,
) -> _RowFetched:
    source = config.sources.get(row.source)
    if source is None:
        return _RowFetched(failed=f"source {row.source!r} is no longer configured: cannot fetch its details")
    try:
        found = await connector.expand(submission, source, api_sender())
    except FetchFailed as exc:  # the provider's API said no or could not be reached: maybe later
        return await _fetch_failed(conn, row, connector, exc, clock(), owner)
    if len(found) == 1 and found[0].event_id == submission.event_id:
        return _RowFetched({row.id: found[0].model_copy(update={"id": row.id, "source": row.source})})
    return _RowFetched(await _store_expanded(conn, row, connector, found, clock()))


async def _fetch_failed(
    conn: Connection, row: InboxRow, connector: Connector, exc: FetchFailed, now: float, owner: str | None
) -> _RowFetched:
    """A dead letter if trying again cannot help or the tries are used up; else fetch later."""
    reason = f"could not fetch details from {connector.title}: {exc}"
    attempts = await asyncio.to_thread(routing_store.fetch_attempts, conn, row.id)
    if exc.permanent:
        outcome = _RowFetched(failed=reason)
    elif attempts + 1 >= FETCH_RETRIES:
        outcome = _RowFetched(failed=f"{reason} (gave up after {attempts + 1} attempts)")
    else:
        delay = min(30.0 * 2**attempts, 3600.0)
        await asyncio.to_thread(routing_store.fetch_later, conn, now, row.id, delay, reason, owner)
        outcome = _RowFetched(later=True)
    log.warning(
        "fetch failed",
        extra={
            "event": "fetch_failed",
            "id": row.id,
            "source": row.source,
            "attempt": attempts + 1,
            "error": type(exc).__name__,
        },
    )
    return outcome


async def _store_expanded(
    conn: Connection, row: InboxRow, connector: Connector, found: list[Submission], now: float
) -> dict[str, Submission]:
    """Store what a notification stood for as rows of their own; returns the new ones."""
    children = []
    for child in found:
        child_id = new_id()
        key = (
            f"{child.form_id}/{child.event_id}"
            if connector.event_ids_per_form and child.form_id
            else child.event_id
        )
        _, data = child.model_copy(update={"id": child_id, "source": row.source}).to_json()
        children.append((child_id, key, data))
    added = await asyncio.to_thread(routing_store.add_expanded, conn, now, row, children, "flow")
    return {child_id: Submission.model_validate_json(data) for child_id, data in added.items()}


def _connector_bug(row: InboxRow, exc: Exception) -> _RowFetched:
    log.warning(
        "fetch failed",
        extra={"event": "fetch_failed", "id": row.id, "source": row.source, "error": type(exc).__name__},
    )
    return _RowFetched(failed=f"could not complete it from the provider's API: {type(exc).__name__}: {exc}")


@task(
    name="normalize and route",
    task_run_name="normalize and route {count} submissions",
    cache_policy=NO_CACHE,
    persist_result=False,
)
async def normalize_and_route(
    store: str, config_path: str, inbox_ids: str, count: int
) -> State[Any] | dict[str, Any]:
    """Per destination, the (comma-joined) submissions to deliver there, and the count of dead
    letters ({"routes", "dead"}); in a Failed state if there are any (flows/run_report.py)."""
    runtime = runtime_for(store, config_path)
    config, stages = runtime.config(), runtime.stages
    conn = runtime.store.connect()
    try:
        rows = await asyncio.to_thread(routing_store.load_inbox, conn, _split(inbox_ids))
        submissions, failed = await asyncio.to_thread(normalize_rows, config, rows, stages.connector)
        fetched = await fetch_details(
            config, conn, {r.id: r for r in rows}, submissions, stages.connector, runtime.clock, runtime.owner
        )
        failed = {**failed, **fetched.failed}
        planned = plan_batch(config, fetched.submissions, failed, stages.condition)
        keys = await asyncio.to_thread(
            routing_store.save_routing,
            conn,
            runtime.clock(),
            planned.routed,
            failed,
            dict(planned.skipped),
            runtime.owner,  # a claim that passed to another worker is left to it
        )
    finally:
        conn.close()
    by_destination: dict[str, list[str]] = defaultdict(list)
    for inbox_id, destination in keys:
        by_destination[destination].append(inbox_id)
    routes = {destination: _join(ids) for destination, ids in by_destination.items()}
    return report_routing(failed, routes, count)


@task(
    name="deliver",
    task_run_name="deliver {count} to {destination}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
async def deliver_chunk(
    store: str, config_path: str, destination: str, inbox_ids: str, count: int
) -> State[Any] | dict[str, int]:
    """Counts by status; a Failed state with them if some died, after a summary in the run's logs."""
    runtime = runtime_for(store, config_path)
    ids = _split(inbox_ids)
    counts = await _deliver(runtime, destination, ids)
    return await report_chunk(runtime.config(), runtime.store, destination, ids, counts)


async def _deliver(runtime: Runtime, destination: str, ids: list[str]) -> dict[str, int]:
    pool = runtime.delivery_pool
    destination_config = runtime.config().destinations.get(destination)
    if pool is not None and destination_config is not None and pool.takes(destination_config.type):
        return await pool.deliver(runtime, destination, ids)
    return await deliver_and_record(runtime, destination, ids, delivery_sender())


WORKER_TAG = "worker:"
"""Tags a run with the dispatcher (owner id) that claimed its batch, so the UI shows who ran what."""


def _run_name() -> str:
    from prefect.runtime import flow_run

    params: dict[str, Any] = flow_run.parameters or {}
    new, due = len(params.get("inbox_ids") or []), len(params.get("due") or [])
    workers = [tag.removeprefix(WORKER_TAG) for tag in flow_run.tags or [] if tag.startswith(WORKER_TAG)]
    return f"{new} new, {due} retrying" + (f" on {workers[0]}" if workers else "")


@flow(
    name="hookhub-deliver",
    flow_run_name=_run_name,
    persist_result=False,
    log_prints=False,
    validate_parameters=False,
    result_storage=unpersisted_results(),
)
async def deliver_batch_flow(
    store: str, config_path: str, inbox_ids: list[str], due: list[list[str]], chunk_size: int = 100
) -> State[Any]:
    """Normalize and route the new submissions, then deliver them and the due retries.

    Ends Failed when deliveries died (flows/run_report.py), with the counts by status either way.
    """
    by_destination: dict[str, list[str]] = defaultdict(list)
    for inbox_id, destination in due:
        by_destination[destination].append(inbox_id)
    # The run's tags are the batch's; its task runs get none (see _deliver_state).
    with TagsContext(current_tags=set()):
        routed = await asyncio.gather(
            *[
                _state_of(
                    normalize_and_route(store, config_path, _join(chunk), len(chunk), return_state=True)
                )
                for chunk in _chunks(inbox_ids, max(chunk_size, 250))
            ]
        )
        unrouted = 0
        for state in routed:
            routing = await chunk_counts(state)
            unrouted += routing["dead"]
            for destination, joined in routing["routes"].items():
                by_destination[destination].extend(_split(joined))
        # Every chunk runs to its end, even when another one fails: their outcomes are recorded.
        states = await asyncio.gather(
            *[
                _deliver_state(store, config_path, destination, chunk)
                for destination, ids in sorted(by_destination.items())
                for chunk in _chunks(ids, chunk_size)
            ]
        )
    totals: dict[str, int] = defaultdict(int)
    if unrouted:
        totals[UNROUTED] = unrouted
    for state in states:
        for status, n in (await chunk_counts(state)).items():
            totals[status] += n
    return batch_state(dict(totals))


def _deliver_state(store: str, config_path: str, destination: str, chunk: list[str]) -> Awaitable[State[Any]]:
    """The deliver task's run (named after its destination), ending in a state instead of raising.

    Untagged: Prefect acquires a concurrency slot through its API for every tag of a task run
    as it starts, on a client of its own, which backs off 2 s and then 4 s when the server
    answers 503 (busy, several times a minute on its SQLite database). With a `destination:`
    tag on each deliver task that was the whole p95 of ack->delivered at 50/s (bench/e2e.py:
    3.1-5.9 s, stalls of ~2.5 s); the flow run carries the destinations' tags instead.
    """
    return _state_of(
        deliver_chunk(store, config_path, destination, _join(chunk), len(chunk), return_state=True)
    )


def _state_of(run: object) -> Awaitable[State[Any]]:
    # An async task called with return_state=True gives an awaitable of its state; Prefect's
    # annotations say the state itself.
    return cast("Awaitable[State[Any]]", run)


async def deliver_batch(
    store: str, config_path: str, inbox_ids: list[str], due: list[list[str]], chunk_size: int = 100
) -> dict[str, int]:
    """Run the batch's flow, tagged with its sources and destinations; the counts by status.

    A run that ended Failed because deliveries died still returns its counts: its batch is done.
    Raises what failed a run otherwise (the dispatcher then gives the claims back as suspects).
    """
    runtime = runtime_for(store, config_path)
    config = runtime.config()
    all_ids = [*inbox_ids, *(inbox_id for inbox_id, _ in due)]
    sources = await asyncio.to_thread(batch_sources, runtime.store, all_ids)
    worker = [f"{WORKER_TAG}{runtime.owner}"] if runtime.owner else []
    with tags(*run_tags(config, sources, (destination for _, destination in due)), *worker):
        state = await deliver_batch_flow(store, config_path, inbox_ids, due, chunk_size, return_state=True)
    return await batch_counts(state)
