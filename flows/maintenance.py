"""The scheduled upkeep flows: connectors that need periodic work per source (renewing the
Google Forms watch, which expires after 7 days) get it here, one task per source; and the
`retention:` periods are enforced here (hub/spool/retention.py), every `retention.every`.

The dispatcher runs them when a source's `maintenance_interval` (or `retention.every`) has
passed since its last run, recorded in the spool so a restart does not redo it early nor forget it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.http_clients import api_sender
from flows.prefect_clients import unpersisted_results
from flows.runtime import clock_for, runtime_for, store_of
from hub.config.models import HubConfig
from hub.routing.process import connector_for
from hub.spool import retention
from hub.spool.meta import set_meta
from hub.store import Connection

log = logging.getLogger("hookhub.maintenance")


def due_sources(config: HubConfig, conn: Connection, now: float) -> list[str]:
    """Sources whose connector asks for upkeep and whose interval has passed."""
    due: list[str] = []
    for source_id, source in config.sources.items():
        connector = connector_for(config, source_id, source.provider)
        if connector.maintenance_interval is None:
            continue
        row = conn.execute("SELECT value FROM meta WHERE key=?", (f"maintained:{source_id}",)).fetchone()
        if row is None:
            due.append(source_id)
            continue
        at, _, outcome = row[0].partition(":")
        # A failed upkeep is tried again within the hour, not at every check.
        wait = (
            connector.maintenance_interval
            if outcome != "failed"
            else min(connector.maintenance_interval, 3600)
        )
        if now - float(at) >= wait:
            due.append(source_id)
    return due


def _remember(store: str, source_id: str, outcome: str, now: float) -> None:
    conn = store_of(store).connect()
    try:
        set_meta(conn, f"maintained:{source_id}", f"{now}:{outcome}")
    finally:
        conn.close()


@task(
    name="maintain source", task_run_name="maintain {source_id}", cache_policy=NO_CACHE, persist_result=False
)
async def maintain_source(store: str, config_path: str, source_id: str) -> str:
    runtime = runtime_for(store, config_path)
    config = runtime.config()
    source = config.sources[source_id]
    connector = connector_for(config, source_id, source.provider)
    done = await connector.maintain(source_id, source, api_sender())
    _remember(store, source_id, "ok", runtime.clock())
    log.info("source maintained", extra={"event": "maintained", "source": source_id, "result": done})
    return done


@flow(
    name="hookhub-maintenance",
    persist_result=False,
    validate_parameters=False,
    result_storage=unpersisted_results(),
)
async def maintain_sources(store: str, config_path: str, source_ids: list[str]) -> dict[str, str]:
    """Run each source's upkeep; one failing source does not stop the others (it is retried next time)."""
    results: dict[str, str] = {}
    for source_id in source_ids:
        try:
            results[source_id] = await maintain_source(store, config_path, source_id)
        except Exception as exc:  # noqa: BLE001 - reported; the next round tries again
            results[source_id] = f"failed: {type(exc).__name__}: {exc}"
            _remember(store, source_id, "failed", clock_for(store)())
            log.warning(
                "source upkeep failed",
                extra={"event": "maintenance_failed", "source": source_id, "error": str(exc)},
            )
    return results


async def upkeep_retention(
    store: str, config_path: str, config: HubConfig, conn: Connection, now: float
) -> None:
    """Run the retention flow if `retention:` is set and its interval has passed."""
    if config.retention is not None and retention.due(conn, config.retention, now):
        await enforce_retention(store=store, config_path=config_path)


@flow(
    name="hookhub-retention",
    persist_result=False,
    validate_parameters=False,
    result_storage=unpersisted_results(),
)
async def enforce_retention(store: str, config_path: str) -> dict[str, int]:
    """Purge what the `retention:` periods say is too old; returns rows purged per kind.

    Its parameters are the store's key and a path, its result counts: nothing personal (nor the
    store's password) reaches Prefect's database.
    The batches run in a worker thread, on a connection of their own, beside the deliveries.
    """
    runtime = runtime_for(store, config_path)
    config, now = runtime.config(), runtime.clock()

    def run() -> retention.RetentionRun:
        conn = runtime.store.connect()
        try:
            return retention.enforce(conn, config, now)
        finally:
            conn.close()

    purged = (await asyncio.to_thread(run)).purged
    if config.retention is not None and config.retention.flow_runs is not None:
        purged["flow_runs"] = await delete_old_flow_runs(now - config.retention.flow_runs)
        conn = runtime.store.connect()
        try:
            retention.add_count(conn, "flow_runs", purged["flow_runs"])
        finally:
            conn.close()
    return purged


HOOKHUB_FLOWS = ("hookhub-deliver", "hookhub-maintenance", "hookhub-retention", "hookhub-reconcile")


async def delete_old_flow_runs(before: float, batch_size: int = 200) -> int:
    """Delete hookhub's flow runs that ended before `before` through Prefect's API (their task
    runs go with them); returns how many. Prefect's own flow-run vacuum does not run in the
    ephemeral server the hub starts (only its event vacuum does), so without this its database
    grows by a run per batch for ever."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterEndTime
    from prefect.exceptions import ObjectNotFound
    from prefect.types import DateTime

    ended = DateTime.fromtimestamp(before, UTC)
    runs_filter = FlowRunFilter(end_time=FlowRunFilterEndTime(before_=ended))
    flows = FlowFilter(name=FlowFilterName(any_=list(HOOKHUB_FLOWS)))
    deleted = 0
    async with get_client() as client:
        while runs := await client.read_flow_runs(
            flow_filter=flows, flow_run_filter=runs_filter, limit=batch_size
        ):
            for run in runs:
                with contextlib.suppress(ObjectNotFound):  # deleted meanwhile (another hub's upkeep)
                    await client.delete_flow_run(run.id)
            deleted += len(runs)
            log.info("old flow runs deleted", extra={"event": "retention_flow_runs", "rows": deleted})
    return deleted
