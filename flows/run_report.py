"""What Prefect shows of a batch: run states with messages, one run-log record per task, tags.

A "deliver" task whose items died ends Failed ("2 of 40 deliveries to crm dead") with its
counts as the state's data (a "normalize and route" task whose submissions died, with its
routes), so the UI and Prefect automations see it; the flow run of such a
batch ends Failed the same way once every chunk is done. Such a run is not a failure of the
run itself: `batch_counts` reads the counts back from it, so the dispatcher records the batch
as done and does not treat its claims as suspects (hub/dispatch.py).

Each task writes one summary record to its run's logs (counts, submission ids, reason
classes; never reasons themselves, see flows/reasons.py), through a logger of its own: Prefect's
run loggers stay at WARNING, where its per-state INFO lines would be several records per task.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from prefect.client.schemas.objects import State
from prefect.logging.handlers import APILogHandler
from prefect.states import Completed, Failed

from flows.reasons import protocol_of, reason_class
from hub.config.models import HubConfig
from hub.store.location import Store

MAX_IDS = 20
"""Submission ids a summary lists per status; more are counted, not listed."""

run_log = logging.getLogger("hookhub.runs")
run_log.addHandler(APILogHandler())
run_log.setLevel(logging.INFO)
run_log.propagate = False  # the hub's own log has a line per dead letter and per batch already


class _Summary:
    """Counts plus, per status that is not `delivered`, reason class -> submission ids."""

    def __init__(self, destination: str, counts: dict[str, int]) -> None:
        self.destination = destination
        self.counts = counts
        self.reasons: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))

    def line(self) -> str:
        told = ", ".join(f"{n} {status}" for status, n in sorted(self.counts.items()))
        parts = [f"{self.destination}: {told or 'nothing to deliver'}"]
        for status in ("dead", "retrying"):
            for label, ids in sorted(self.reasons.get(status, {}).items()):
                parts.append(f"{status} {len(ids)} ({label}): {_listed(ids)}")
        return "; ".join(parts)

    def level(self) -> int:
        if self.counts.get("dead"):
            return logging.ERROR
        return logging.WARNING if self.counts.get("retrying") else logging.INFO


def _unsettled(store: Store, destination: str, inbox_ids: list[str]) -> list[tuple[str, str, Any, Any]]:
    conn = store.connect()
    try:
        marks = ",".join("?" * len(inbox_ids))
        return conn.execute(
            "SELECT inbox_id, status, last_status_code, last_error FROM deliveries"
            f" WHERE destination=? AND status IN ('dead','retrying') AND inbox_id IN ({marks})",
            [destination, *inbox_ids],
        ).fetchall()
    finally:
        conn.close()


async def report_chunk(
    config: HubConfig, store: Store, destination: str, inbox_ids: list[str], counts: dict[str, int]
) -> State[Any] | dict[str, int]:
    """Log the chunk's summary to its task run; Failed with the counts if any died, else the counts."""
    summary = _Summary(destination, counts)
    if counts.get("dead") or counts.get("retrying"):
        rows = await asyncio.to_thread(_unsettled, store, destination, inbox_ids)
        known = config.destinations.get(destination)
        protocol = protocol_of(known.type) if known is not None else "HTTP"
        for inbox_id, status, code, error in rows:
            summary.reasons[status][reason_class(code, error, protocol)].append(inbox_id)
    run_log.log(summary.level(), summary.line())
    dead = counts.get("dead", 0)
    if dead:
        return Failed(
            message=f"{dead} of {sum(counts.values())} deliveries to {destination} dead", data=counts
        )
    return counts


def report_routing(failed: dict[str, str], routes: dict[str, str], count: int) -> State[Any] | dict[str, Any]:
    """Log the routing task's summary; Failed if submissions became dead letters.

    The result is {"routes": destination -> comma-joined ids, "dead": count} either way: the flow
    delivers what was routed.
    """
    result = {"routes": routes, "dead": len(failed)}
    if not failed:
        run_log.info(f"{count} submissions routed")
        return result
    by_class: dict[str, list[str]] = defaultdict(list)
    for inbox_id, reason in failed.items():
        by_class[reason_class(None, reason)].append(inbox_id)
    dead = "; ".join(f"dead {len(ids)} ({label}): {_listed(ids)}" for label, ids in sorted(by_class.items()))
    run_log.error(f"{count - len(failed)} of {count} submissions routed; {dead}")
    return Failed(message=f"{len(failed)} of {count} submissions dead before delivery", data=result)


def _listed(ids: list[str]) -> str:
    return ", ".join(ids[:MAX_IDS]) + (f" and {len(ids) - MAX_IDS} more" if len(ids) > MAX_IDS else "")


def batch_state(totals: dict[str, int]) -> State[Any]:
    """The flow run's final state: Failed when some deliveries died, with the totals either way."""
    told = ", ".join(f"{n} {status}" for status, n in sorted(totals.items())) or "nothing to deliver"
    deliveries = sum(n for status, n in totals.items() if status != UNROUTED)
    dead, unrouted = totals.get("dead", 0), totals.get(UNROUTED, 0)
    if dead:
        return Failed(message=f"{dead} of {deliveries} deliveries dead ({told})", data=totals)
    if unrouted:
        return Failed(message=f"{unrouted} submissions dead before delivery ({told})", data=totals)
    return Completed(message=told, data=totals)


UNROUTED = "dead before delivery"
"""The flow's count of submissions that became dead letters while normalized, fetched or routed."""


async def chunk_counts(state: State[Any]) -> dict[str, Any]:
    """A task's result (counts, routes), also from the Failed state of `report_chunk` or
    `report_routing`; raises what failed it otherwise."""
    result = await state.aresult(raise_on_failure=False) if state.is_failed() else await state.aresult()
    if isinstance(result, dict):
        return result
    if isinstance(result, BaseException):
        raise result
    raise TypeError(f"a task ended {state.type.value} without its result: {state.message}")


batch_counts = chunk_counts
"""A flow run's counts, from `batch_state`'s state; raises what failed the run otherwise."""


def run_tags(config: HubConfig, sources: Iterable[str], destinations: Iterable[str]) -> list[str]:
    """`source:<id>` and `destination:<id>` tags, of configured ids only (a bounded set to filter by).

    The destinations are those the routes from `sources` name, plus `destinations` (due retries).
    """
    source_ids = {s for s in sources if s in config.sources}
    targets = set(destinations)
    for route in config.routes:
        if any(route.matches_source(source) for source in source_ids):
            targets.update(route.destination_ids())
    known = {d for d in targets if d in config.destinations}
    return sorted(f"source:{s}" for s in source_ids) + sorted(f"destination:{d}" for d in known)


def batch_sources(store: Store, inbox_ids: Iterable[str]) -> set[str]:
    """The sources of a batch's submissions (one small query, for the run's tags)."""
    ids = list(inbox_ids)
    if not ids:
        return set()
    conn = store.connect()
    try:
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = conn.execute(f"SELECT DISTINCT source FROM inbox WHERE id IN ({marks})", part)
            found.update(source for (source,) in rows)
        return found
    finally:
        conn.close()
