"""Whether Prefect's API answers, recorded in the hub's health for `status`, /readyz and alerts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from flows.prefect_clients import LastingCondition
from hub.health import DeliveryHealth

log = logging.getLogger("hookhub.dispatch")

PREFECT_CHECK_SECONDS = 10.0
"""How often the dispatcher asks Prefect's API whether it is healthy, for `hub.health`."""
PREFECT_CHECK_TIMEOUT = 3.0


async def watch_prefect(health: DeliveryHealth, clock: Callable[[], float]) -> None:
    """Record whether Prefect's API answers, every PREFECT_CHECK_SECONDS, beside the deliveries."""
    from prefect.client.orchestration import get_client

    away = LastingCondition()
    while True:
        try:
            failure = await asyncio.wait_for(get_client().api_healthcheck(), PREFECT_CHECK_TIMEOUT)
            error = None if failure is None else f"{type(failure).__name__}: {failure}"
        except TimeoutError:
            error = f"no answer within {PREFECT_CHECK_TIMEOUT:g} s"
        note_prefect(health, clock, error)
        if error is not None and away.due():
            log.warning(
                "prefect's API does not answer; nothing is claimed until it does",
                extra={"event": "prefect_unreachable", "error": error, "held_back": away.logged()},
            )
        elif error is None and away.over():
            log.info("prefect's API answers again", extra={"event": "prefect_reachable"})
        await asyncio.sleep(PREFECT_CHECK_SECONDS)


def note_prefect(health: DeliveryHealth, clock: Callable[[], float], error: str | None) -> None:
    health.prefect_reachable = error is None
    health.prefect_error = error
    health.prefect_checked_at = clock()
