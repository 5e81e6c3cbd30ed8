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
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, TypeVar

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.destinations import get_destination
from flows.destinations.base import DeliveryContext, DeliveryItem, DestinationSettings, Outcome
from flows.http_clients import delivery_session, shared_client
from flows.pacing import PACER
from flows.retry import decide
from flows.prefect_clients import unpersisted_results
from flows.runtime import Runtime, runtime_for
from hub.config.models import HubConfig
from hub.routing.plan import route_target
from hub.routing.process import connector_for, normalize_rows, plan_submissions
from hub.spool import ledger
from hub.spool.ids import new_id
from hub.spool.ledger import Decision, DeliveryRow, InboxRow
from hub.spool.schema import connect
from hub.submission import Submission

log = logging.getLogger("hookhub.pipeline")
T = TypeVar("T")


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _join(ids: list[str]) -> str:
    # Ids travel between tasks as one string: Prefect walks list parameters and results item by
    # item (visit_collection), which cost more CPU than the delivery of a chunk itself.
    return ",".join(ids)


def _split(joined: str) -> list[str]:
    return joined.split(",") if joined else []


FETCH_RETRIES = 8
"""A notification whose details cannot be fetched is tried again this many times (backing off
from 30 s to an hour) before it becomes a dead letter."""


async def fetch_details(config: HubConfig, conn: sqlite3.Connection, rows: dict[str, InboxRow],
                        submissions: dict[str, Submission], failed: dict[str, str]) -> None:
    """Complete thin notifications through their provider's API (connectors with `fetches`)."""
    for inbox_id, submission in list(submissions.items()):
        row = rows[inbox_id]
        connector = connector_for(config, row.source, row.provider)
        source = config.sources.get(row.source)
        if not connector.fetches or row.kind == "fetched":
            continue
        del submissions[inbox_id]
        if source is None:
            failed[inbox_id] = f"source {row.source!r} is no longer configured: cannot fetch its details"
            continue
        try:
            found = await connector.expand(submission, source, shared_client())
        except Exception as exc:  # noqa: BLE001 - a provider API failure must not fail the batch
            reason = f"could not fetch details from {connector.title}: {exc}"
            attempts = await asyncio.to_thread(ledger.fetch_attempts, conn, inbox_id)
            if getattr(exc, "permanent", False):
                failed[inbox_id] = reason
            elif attempts + 1 >= FETCH_RETRIES:
                failed[inbox_id] = f"{reason} (gave up after {attempts + 1} attempts)"
            else:
                await asyncio.to_thread(ledger.fetch_later, conn, inbox_id, min(30.0 * 2**attempts, 3600.0), reason)
            log.warning("fetch failed", extra={"event": "fetch_failed", "id": inbox_id, "source": row.source,
                                               "attempt": attempts + 1, "error": type(exc).__name__})
            continue
        if len(found) == 1 and found[0].event_id == submission.event_id:
            submissions[inbox_id] = found[0].model_copy(update={"id": inbox_id, "source": row.source})
            continue
        children = []
        for child in found:
            child_id = new_id()
            key = f"{child.form_id}/{child.event_id}" if connector.event_ids_per_form and child.form_id else child.event_id
            children.append((child_id, key, child.model_copy(update={"id": child_id, "source": row.source})
                             .model_dump_json()))
        added = await asyncio.to_thread(ledger.add_expanded, conn, row, children, "flow")
        for child_id, data in added.items():
            submissions[child_id] = Submission.model_validate_json(data)


@task(name="normalize and route", task_run_name="normalize and route {count} submissions",
      cache_policy=NO_CACHE, persist_result=False)
async def normalize_and_route(spool_path: str, config_path: str, inbox_ids: str, count: int) -> dict[str, str]:
    """Returns, per destination, the (comma-joined) submissions to deliver there."""
    runtime = runtime_for(spool_path, config_path)
    config = runtime.config()
    conn = connect(runtime.spool_path)
    try:
        rows = await asyncio.to_thread(ledger.load_inbox, conn, _split(inbox_ids))
        submissions, failed = await asyncio.to_thread(normalize_rows, config, rows)
        await fetch_details(config, conn, {r.id: r for r in rows}, submissions, failed)
        routed = plan_submissions(config, submissions, failed)
        keys = await asyncio.to_thread(ledger.save_routing, conn, routed, failed)
    finally:
        conn.close()
    by_destination: dict[str, list[str]] = defaultdict(list)
    for inbox_id, destination in keys:
        by_destination[destination].append(inbox_id)
    return {destination: _join(ids) for destination, ids in by_destination.items()}


def _item(runtime: Runtime, row: DeliveryRow) -> DeliveryItem:
    target = route_target(runtime.config(), row.route, row.destination)
    return DeliveryItem(
        key=f"{row.inbox_id}.{row.destination}",
        submission=Submission.model_validate_json(row.submission or "{}"),
        route=row.route,
        template=target.template if target else None,
        mapping=target.map if target else None,
        remote_id=row.remote_id,
    )


def _not_sent(rows: list[DeliveryRow], reason: str) -> list[Decision]:
    return [Decision(inbox_id=r.inbox_id, destination=r.destination, status="dead", outcome="failed",
                     attempted=False, error=reason) for r in rows]


async def deliver_rows(runtime: Runtime, destination_id: str, rows: list[DeliveryRow],
                       disabled: dict[str, str]) -> list[Decision]:
    """Send `rows` to one destination and decide, for each, delivered / retry when / dead why."""
    config = runtime.config()
    destination_config = config.destinations.get(destination_id)
    if destination_config is None:
        return _not_sent(rows, f"destination {destination_id!r} is no longer in connectors.yaml")
    if destination_id in disabled:
        return _not_sent(rows, f"destination disabled: {disabled[destination_id]} (hookhub replay re-enables it)")
    settings = destination_config.settings
    assert isinstance(settings, DestinationSettings)
    impl = get_destination(destination_config.type)
    items: dict[str, DeliveryItem] = {}
    decisions: list[Decision] = []
    by_key: dict[str, DeliveryRow] = {}
    for row in rows:
        try:
            item = _item(runtime, row)
        except ValueError as exc:
            decisions.extend(_not_sent([row], f"stored submission is unreadable: {exc}"))
            continue
        items[item.key] = item
        by_key[item.key] = row
    if not items:
        return decisions
    context = DeliveryContext(http=delivery_session(), pacer=PACER, destination_id=destination_id,
                              record_link=runtime.record_link, extra={"data_dir": str(runtime.data_dir)})
    try:
        outcomes = await impl.deliver(list(items.values()), settings, context)
    except Exception as exc:  # a destination bug is a retryable failure, not a crash
        log.exception("destination crashed", extra={"event": "destination_error", "destination": destination_id})
        outcomes = [Outcome(key=k, status="retry", reason=f"destination error: {type(exc).__name__}: {exc}")
                    for k in items]
    answered = {o.key: o for o in outcomes if o.key in items}
    now = time.time()
    for key, row in by_key.items():
        outcome = answered.get(key) or Outcome(key=key, status="retry", reason="destination returned no outcome")
        decisions.append(decide(row, outcome, settings.retry, now))
    gone = next((o for o in answered.values() if o.disable), None)
    if gone is not None:
        disabled[destination_id] = f"{destination_id} answered {gone.status_code or ''} {gone.reason or 'gone'}".strip()
    return decisions


@task(name="deliver", task_run_name="deliver {count} to {destination}", cache_policy=NO_CACHE,
      persist_result=False)
async def deliver_chunk(spool_path: str, config_path: str, destination: str, inbox_ids: str,
                        count: int) -> dict[str, int]:
    runtime = runtime_for(spool_path, config_path)
    conn = connect(runtime.spool_path)
    started = time.perf_counter()
    keys = [(inbox_id, destination) for inbox_id in _split(inbox_ids)]
    try:
        rows = await asyncio.to_thread(ledger.load_deliveries, conn, keys)
        disabled = await asyncio.to_thread(ledger.disabled_destinations, conn)
        before = dict(disabled)
        loaded = time.perf_counter()
        decisions = await deliver_rows(runtime, destination, rows, disabled)
        sent = time.perf_counter()
        if destination in disabled and destination not in before:
            await asyncio.to_thread(ledger.disable_destination, conn, destination, disabled[destination])
        await asyncio.to_thread(ledger.record, conn, decisions)
    finally:
        conn.close()
    log.debug("chunk delivered", extra={"event": "chunk_done", "destination": destination, "items": len(keys),
                                        "load_s": round(loaded - started, 3), "send_s": round(sent - loaded, 3),
                                        "record_s": round(time.perf_counter() - sent, 3)})
    counts: dict[str, int] = defaultdict(int)
    for d in decisions:
        counts[d.status] += 1
    return dict(counts)


def _run_name() -> str:
    from prefect.runtime import flow_run

    params: dict[str, Any] = flow_run.parameters or {}
    new, due = len(params.get("inbox_ids") or []), len(params.get("due") or [])
    return f"{new} new, {due} retrying"


@flow(name="hookhub-deliver", flow_run_name=_run_name, persist_result=False, log_prints=False,
      validate_parameters=False, result_storage=unpersisted_results())
async def deliver_batch(spool_path: str, config_path: str, inbox_ids: list[str], due: list[list[str]],
                        chunk_size: int = 100) -> dict[str, int]:
    """Normalize and route the new submissions, then deliver them and the due retries."""
    by_destination: dict[str, list[str]] = defaultdict(list)
    for inbox_id, destination in due:
        by_destination[destination].append(inbox_id)
    routed = await asyncio.gather(*[
        normalize_and_route(spool_path, config_path, _join(chunk), len(chunk))
        for chunk in _chunks(inbox_ids, max(chunk_size, 250))
    ])
    for chunk_routes in routed:
        for destination, joined in chunk_routes.items():
            by_destination[destination].extend(_split(joined))
    results = await asyncio.gather(*[
        deliver_chunk(spool_path, config_path, destination, _join(chunk), len(chunk))
        for destination, ids in sorted(by_destination.items())
        for chunk in _chunks(ids, chunk_size)
    ])
    totals: dict[str, int] = defaultdict(int)
    for counts in results:
        for status, n in counts.items():
            totals[status] += n
    return dict(totals)
