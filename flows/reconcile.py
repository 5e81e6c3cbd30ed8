"""The scheduled reconciliation (hub/reconcile/): one flow run per round, one task per due source.

The dispatcher that holds the cluster's maintenance role (hub/roles.py) starts it beside the
other upkeep, so a cluster lists each form once per `every` however many workers it has. A
source is due when `every` has passed since its last run, as recorded in `reconcile_state`
(a restart neither repeats a run early nor forgets one); a run that failed is tried again after
at most RETRY_FAILED seconds, one the provider refused (a revoked token) only after `every`.

The flow's parameters are the store's key, a path and source ids; its results are counts: no
response, no answer, no credential reaches Prefect's database. A source whose API could not be
read fails its task run, and the flow run ends Failed (the others are still reconciled).
"""

from __future__ import annotations

import logging

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from flows.http_clients import api_sender
from flows.prefect_clients import unpersisted_results
from flows.runtime import runtime_for
from hub.config.models import HubConfig
from hub.reconcile import state
from hub.reconcile.run import reconcile_source
from hub.store import Connection

log = logging.getLogger("hookhub.reconcile")

RETRY_FAILED = 900.0


class ReconcileRunFailed(Exception):
    """The provider's API could not be read for this source (the message says why)."""


def due_reconciles(config: HubConfig, conn: Connection, now: float) -> list[str]:
    """Sources with `reconcile:` whose interval has passed since their last run."""
    states = state.read_all(conn)
    due: list[str] = []
    for source_id, source in config.sources.items():
        settings = source.reconcile_settings if source.reconcile is not None else None
        if settings is None:
            continue
        last = states.get(source_id)
        if last is None or last.last_run_at is None:
            due.append(source_id)
            continue
        wait = min(settings.every, RETRY_FAILED) if last.last_outcome == "failed" else settings.every
        if now - last.last_run_at >= wait:
            due.append(source_id)
    return due


@task(
    name="reconcile source",
    task_run_name="reconcile {source_id}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
async def reconcile_one(store: str, config_path: str, source_id: str) -> dict[str, int | str]:
    runtime = runtime_for(store, config_path)
    conn = runtime.store.connect()
    try:
        report = await reconcile_source(conn, runtime.config(), source_id, api_sender(), runtime.clock())
    finally:
        conn.close()
    if not report.ok:
        raise ReconcileRunFailed(f"{source_id}: {report.error}")
    counts: dict[str, int | str] = {
        "listed": report.listed,
        "missing": len(report.missing),
        "stored": len(report.stored),
    }
    if report.webhook is not None:
        counts["webhook"] = report.webhook.state
    return counts


@flow(
    name="hookhub-reconcile",
    persist_result=False,
    validate_parameters=False,
    result_storage=unpersisted_results(),
)
async def reconcile_sources(store: str, config_path: str, source_ids: list[str]) -> State[dict[str, object]]:
    """Reconcile each due source; one whose API fails does not stop the others."""
    results: dict[str, object] = {}
    failed: list[str] = []
    for source_id in source_ids:
        try:
            results[source_id] = await reconcile_one(store, config_path, source_id)
        except Exception as exc:  # noqa: BLE001 - recorded in reconcile_state; the next round tries again
            results[source_id] = f"failed: {exc}"
            failed.append(source_id)
    if failed:
        return Failed(
            message=f"could not reconcile {', '.join(failed)} (see reconcile_state and the log)", data=results
        )
    return Completed(data=results)


async def upkeep_reconcile(
    store: str, config_path: str, config: HubConfig, conn: Connection, now: float
) -> None:
    """Run the reconcile flow for the sources that are due, if any."""
    due = due_reconciles(config, conn, now)
    if due:
        await reconcile_sources(store=store, config_path=config_path, source_ids=due, return_state=True)
