"""From a destination's Outcome to the ledger's Decision: backoff, Retry-After, horizon.

Retries span minutes to days, far longer than any process or flow run lives, so they are
scheduled in the ledger (`next_attempt_at`) rather than by tenacity's retry loop; tenacity
still computes the wait, so the backoff curve is the well-known one.
"""

from __future__ import annotations

import random
from typing import TypedDict

import tenacity

from flows.destinations.base import Outcome, RetryPolicy
from hub.spool.rows import Decision, DeliveryRow, DeliveryStatus

DEFERRAL_JITTER = 1.0
"""At most this many seconds (and at most a tenth of the pause) are added to the end of a pause,
so the rows it held do not all fall due in the same instant."""


_RETRYING = tenacity.Retrying()
"""Only to fill RetryCallState's `retry_object`: the wait functions read `attempt_number` alone."""


class _Common(TypedDict):
    """The fields every Decision that `decide` returns copies from the row and the outcome."""

    inbox_id: str
    destination: str
    status_code: int | None
    retry_after: float | None
    remote_id: str | None


def backoff(policy: RetryPolicy, attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): exponential with jitter."""
    wait = tenacity.wait_exponential_jitter(
        initial=policy.initial, max=policy.max_delay, exp_base=policy.multiplier, jitter=policy.initial / 2
    )
    state = tenacity.RetryCallState(retry_object=_RETRYING, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return min(float(wait(state)), policy.max_delay)


def decide(row: DeliveryRow, outcome: Outcome, policy: RetryPolicy, now: float) -> Decision:
    attempt = row.attempts + 1
    common: _Common = {
        "inbox_id": row.inbox_id,
        "destination": row.destination,
        "status_code": outcome.status_code,
        "retry_after": outcome.retry_after,
        "remote_id": outcome.remote_id,
    }
    if outcome.status == "delivered":
        return Decision(status="delivered", outcome="delivered", **common)
    reason = outcome.reason or (f"HTTP {outcome.status_code}" if outcome.status_code else "unknown error")
    if outcome.status == "failed":
        return Decision(status="dead", outcome="failed", error=reason, **common)
    if outcome.deferred:
        return defer(row, outcome, policy, now, reason)
    wait = backoff(policy, attempt)
    if outcome.retry_after is not None:
        # Never earlier than the target asked, and never clamped: its limit is the limit.
        wait = max(wait, outcome.retry_after)
    first = row.first_attempt_at if row.first_attempt_at is not None else now
    if policy.max_attempts is not None and attempt >= policy.max_attempts:
        return Decision(
            status="dead", outcome="gave_up", error=f"gave up after {attempt} attempts: {reason}", **common
        )
    if now + wait > first + policy.horizon:
        hours = policy.horizon / 3600
        return Decision(
            status="dead",
            outcome="gave_up",
            error=f"gave up after {attempt} attempts over {hours:g} h: {reason}",
            **common,
        )
    return Decision(status="retrying", outcome="retry", next_attempt_at=now + wait, error=reason, **common)


def defer(row: DeliveryRow, outcome: Outcome, policy: RetryPolicy, now: float, reason: str) -> Decision:
    """Not sent because the target's pause was on: due again when the pause ends (plus a little
    jitter), with `attempts` and so the backoff and `max_attempts` untouched, and no row in the
    `attempts` table. The horizon still holds: a pause that outlasts it makes a dead letter."""
    pause = outcome.retry_after if outcome.retry_after is not None else policy.initial
    due = now + pause + random.uniform(0.0, min(DEFERRAL_JITTER, pause / 10))
    first = row.first_attempt_at if row.first_attempt_at is not None else now
    if due > first + policy.horizon:
        hours = policy.horizon / 3600
        return not_attempted(
            row,
            "dead",
            "gave_up",
            f"gave up after {row.attempts} attempts: the target's pause "
            f"outlasts the retry horizon of {hours:g} h ({reason})",
        )
    # remote_id: what an earlier step of this attempt created (a CRM person) is kept.
    return not_attempted(
        row, "retrying", "deferred", reason, next_attempt_at=due, remote_id=outcome.remote_id
    )


def not_attempted(
    row: DeliveryRow,
    status: DeliveryStatus,
    outcome: str,
    error: str,
    next_attempt_at: float | None = None,
    remote_id: str | None = None,
) -> Decision:
    """A row that was not sent: its `attempts` stay as they are and no attempt is recorded."""
    return Decision(
        row.inbox_id,
        row.destination,
        status,
        outcome,
        attempted=False,
        next_attempt_at=next_attempt_at,
        error=error,
        remote_id=remote_id,
    )
