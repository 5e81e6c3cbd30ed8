"""The `delivery` part of /readyz: can the hub deliver, and what waits.

It never changes /readyz's status code: a receiver stays in its load balancer while a CRM or
Prefect is down, as it can still accept (and spool) webhooks.
"""

from __future__ import annotations

from hub.health import DeliveryHealth
from hub.metrics.snapshot import Snapshot

DISPATCHER_STALE_SECONDS = 30.0
"""A dispatcher whose loop has not beaten for this long is taken for stuck or dead."""


def delivery_status(
    snapshot: Snapshot | None, health: DeliveryHealth | None, now: float
) -> dict[str, object]:
    """JSON for /readyz (loopback or status token only: reasons name destinations and targets)."""
    out: dict[str, object] = {}
    if health is None or not health.dispatching:  # --no-dispatch: another process delivers
        out["dispatching"] = False
    else:
        out["dispatching"] = health.dispatching
        out["dispatcher_alive"] = health.dispatcher_alive(now, DISPATCHER_STALE_SECONDS)
        out["dispatcher_beat_at"] = health.dispatcher_beat_at
        out["prefect_reachable"] = health.prefect_reachable
        out["prefect_checked_at"] = health.prefect_checked_at
        if health.prefect_error:
            out["prefect_error"] = health.prefect_error
    if snapshot is not None:
        out["oldest_pending_age_seconds"] = round(snapshot.oldest_pending_age(), 3)
        out["pending"] = snapshot.submissions.get("pending", 0) + snapshot.submissions.get("claimed", 0)
        out["disabled_destinations"] = {
            name: {"since": disabled.since, "reason": disabled.reason}
            for name, disabled in sorted(snapshot.disabled.items())
        }
    return out
