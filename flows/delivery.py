"""Delivering one chunk to one destination and recording the outcomes (no Prefect here).

The "deliver" task runs this in the dispatcher's process, or hands it to a delivery worker
process (flows/delivery_pool.py), which imports this module but never Prefect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

from flows.budgets import pacer_for
from flows.destinations.base import DeliveryContext, DeliveryItem, Destination, DestinationSettings, Outcome
from flows.reasons import protocol_of, reason_class
from flows.retry import decide, not_attempted
from flows.runtime import Runtime
from hub.routing.plan import route_target
from hub.sender import Sender
from hub.spool import delivery_outcomes
from hub.spool.rows import Decision, DeliveryRow

log = logging.getLogger("hookhub.pipeline")


def _item(runtime: Runtime, row: DeliveryRow) -> DeliveryItem:
    target = route_target(runtime.config(), row.route, row.destination)
    if not row.submission:
        raise ValueError("no Submission JSON was stored for it")
    return DeliveryItem(
        key=row.delivery_key,
        submission_json=row.submission,
        route=row.route,
        template=target.template if target else None,
        mapping=target.map if target else None,
        remote_id=row.remote_id,
    )


def _not_sent(rows: list[DeliveryRow], reason: str) -> list[Decision]:
    return [not_attempted(r, "dead", "failed", reason) for r in rows]


async def deliver_rows(
    runtime: Runtime, destination_id: str, rows: list[DeliveryRow], disabled: dict[str, str], http: Sender
) -> list[Decision]:
    """Send `rows` to one destination and decide, for each, delivered / retry when / dead why."""
    config = runtime.config()
    destination_config = config.destinations.get(destination_id)
    if destination_config is None:
        return _not_sent(rows, f"destination {destination_id!r} is no longer in connectors.yaml")
    if destination_id in disabled:
        return _not_sent(
            rows, f"destination disabled: {disabled[destination_id]}; `hookhub replay` enables it again"
        )
    settings = destination_config.settings
    impl = runtime.stages.destination(destination_config.type)
    # The one check of the config's type for every destination: `impl` is looked up by a type
    # name, so its config type is not known statically; the settings were validated by that same
    # type's `Config` (hub/config/semantic.py), which is what each `deliver` may rely on.
    assert isinstance(settings, impl.Config)
    items: dict[str, DeliveryItem] = {}
    decisions: list[Decision] = []
    by_key: dict[str, DeliveryRow] = {}
    for row in rows:
        try:
            item = _item(runtime, row)
            if impl.reads_submission:
                item.submission  # noqa: B018 - parsed here, so one unreadable row is its own dead letter
        except ValueError as exc:
            decisions.extend(_not_sent([row], f"stored submission is unreadable: {exc}"))
            continue
        except Exception as exc:  # noqa: BLE001 - whatever fails building one item fails that item only
            decisions.extend(_not_sent([row], f"cannot prepare the delivery: {type(exc).__name__}: {exc}"))
            continue
        items[item.key] = item
        by_key[item.key] = row
    if not items:
        return decisions
    context = DeliveryContext(
        http=http,
        pacer=pacer_for(runtime.store),
        destination_id=destination_id,
        record_link=runtime.record_link,
        extra={"data_dir": str(runtime.data_dir)},
    )
    outcomes = await deliver_chunk(impl, list(items.values()), settings, context)
    answered = {o.key: o for o in outcomes if o.key in items}
    now = runtime.clock()
    for key, row in by_key.items():
        outcome = answered.get(key) or Outcome(
            key=key, status="retry", reason="destination returned no outcome"
        )
        try:
            decisions.append(decide(row, outcome, settings.retry, now))
        except Exception as exc:  # noqa: BLE001 - one row's bad outcome is its own dead letter
            decisions.extend(_not_sent([row], f"cannot judge the outcome: {type(exc).__name__}: {exc}"))
    gone = next((o for o in answered.values() if o.disable), None)
    if gone is not None:
        # The destination's own words only: it is stored and shown beside the destination's name.
        disabled[destination_id] = gone.reason or f"answered HTTP {gone.status_code or 410}: stop sending"
    return decisions


async def deliver_chunk(
    impl: Destination[Any], items: list[DeliveryItem], settings: DestinationSettings, context: DeliveryContext
) -> list[Outcome]:
    """Deliver `items` with `impl` (isolating an item that makes it raise) and log each outcome once."""
    outcomes = await _deliver_isolating(impl, items, settings, context)
    for outcome in outcomes:
        log_outcome(impl.type, context, outcome)
    return outcomes


def log_outcome(type_name: str, context: DeliveryContext, outcome: Outcome) -> None:
    """The one log line of a delivery outcome, on the destination type's logger.

    A success at DEBUG (one line each would cost more CPU than the delivery at hundreds per
    second), a retry at WARNING, a failure (a dead letter) at ERROR. A deferral (not sent: the
    target's pause, or its turn is later) is no attempt and at DEBUG too: a backlog for Slack
    hands back thousands an hour, and the pause that caused it was logged once already.
    The reason may quote the target's answer or rendered text (personal data), so it stays in
    the ledger and the line has its class (flows/reasons.py); the destination adds its own
    facts with `context.note`.
    """
    facts = dict(context.facts.get(outcome.key, {}))
    warn = bool(facts.pop("warn", False))
    level = logging.DEBUG if outcome.deferred else _LEVELS.get(outcome.status, logging.WARNING)
    if warn:
        level = max(level, logging.WARNING)
    logger = logging.getLogger(f"hookhub.destinations.{type_name}")
    if not logger.isEnabledFor(level):
        return
    reason = None
    if outcome.status != "delivered":
        reason = reason_class(outcome.status_code, outcome.reason, protocol_of(type_name))
    logger.log(
        level,
        "%s delivery %s",
        type_name,
        outcome.status,
        extra={
            "event": "delivery",
            "destination": context.destination_id,
            "delivery_key": outcome.key,
            "outcome": outcome.status,
            "reason": reason,
            "status_code": outcome.status_code,
            "retry_after": outcome.retry_after,
            "deferred": outcome.deferred,
            "disable": outcome.disable,
            **facts,
        },
    )


_LEVELS = {"delivered": logging.DEBUG, "retry": logging.WARNING, "failed": logging.ERROR}


async def _deliver_isolating(
    impl: Destination[Any], items: list[DeliveryItem], settings: DestinationSettings, context: DeliveryContext
) -> list[Outcome]:
    """`impl.deliver`, with an exception that escapes it narrowed down to the items that cause it.

    A chunk that raises is delivered again in halves, down to single items. Items that raise on
    their own while others of the chunk went through are dead letters with the error (their
    data, not the destination, is the problem); if every item raises, the destination is, and
    all are retried as before. Items of a half that raised may have been sent already: a retry
    would send them again too, and receivers dedupe on the delivery's stable key.
    """
    raised: dict[str, Exception] = {}
    outcomes = await _deliver_halving(impl, items, settings, context, raised)
    if not raised:
        return outcomes
    log.error(
        "destination raised",
        exc_info=next(iter(raised.values())),
        extra={
            "event": "destination_error",
            "destination": context.destination_id,
            "items": len(items),
            "raised": len(raised),
        },
    )
    alone = len(raised) < len(items)
    for key, exc in raised.items():
        error = f"{type(exc).__name__}: {exc}"
        if alone:
            reason = f"destination error for this submission: {error}"
            outcomes.append(Outcome(key=key, status="failed", reason=reason))
        else:
            outcomes.append(Outcome(key=key, status="retry", reason=f"destination error: {error}"))
    return outcomes


async def _deliver_halving(
    impl: Destination[Any],
    items: list[DeliveryItem],
    settings: DestinationSettings,
    context: DeliveryContext,
    raised: dict[str, Exception],
) -> list[Outcome]:
    try:
        return list(await impl.deliver(items, settings, context))
    except Exception as exc:  # noqa: BLE001 - narrowed down below, never a crash of the chunk
        if len(items) == 1:
            raised[items[0].key] = exc
            return []
    middle = len(items) // 2
    first = await _deliver_halving(impl, items[:middle], settings, context, raised)
    return first + await _deliver_halving(impl, items[middle:], settings, context, raised)


async def deliver_and_record(
    runtime: Runtime, destination: str, inbox_ids: list[str], http: Sender
) -> dict[str, int]:
    """Deliver the claimed (inbox id, `destination`) rows and record every outcome; counts by status."""
    conn = runtime.store.connect()
    started = time.perf_counter()
    keys = [(inbox_id, destination) for inbox_id in inbox_ids]
    try:
        rows = await asyncio.to_thread(delivery_outcomes.load_deliveries, conn, keys)
        disabled = await asyncio.to_thread(delivery_outcomes.disabled_destinations, conn)
        before = dict(disabled)
        loaded = time.perf_counter()
        decisions = await deliver_rows(runtime, destination, rows, disabled, http)
        sent = time.perf_counter()
        if destination in disabled and destination not in before:
            await asyncio.to_thread(
                delivery_outcomes.disable_destination,
                conn,
                runtime.clock(),
                destination,
                disabled[destination],
            )
        # Fenced on the claimant: if this owner's lease ran out meanwhile, its outcomes are refused.
        decisions = await asyncio.to_thread(
            delivery_outcomes.record, conn, runtime.clock(), decisions, runtime.owner
        )
    finally:
        conn.close()
    log.debug(
        "chunk delivered",
        extra={
            "event": "chunk_done",
            "destination": destination,
            "items": len(keys),
            "load_s": round(loaded - started, 3),
            "send_s": round(sent - loaded, 3),
            "record_s": round(time.perf_counter() - sent, 3),
        },
    )
    counts: dict[str, int] = defaultdict(int)
    for d in decisions:
        counts[d.status] += 1
    return dict(counts)
