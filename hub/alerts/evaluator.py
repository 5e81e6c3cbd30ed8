"""The alert evaluator: a background task of the hub that applies the rules and sends the outbox.

Every `alerts.check_every` seconds it applies the rules to the spool (hub/alerts/rules.py, one
transaction that also queues what is owed) and then sends what is due in `alert_outbox` through
the `AlertChannel` (by default the configured destinations' `send_alert`). A send that fails is
retried on the alert destination's own `retry` policy and dropped after its horizon; it is
recorded only in the outbox, never as a delivery, so it can never raise an alert itself.

It runs in the hub's process because what it watches lives there: Prefect's reachability and
the dispatcher's beat (`Hub.health`) and rejected reloads (`ConfigHolder.rejection_listeners`).
SQLite work runs in a thread, on the evaluator's own connection, one call at a time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import aiohttp

from hub.alerts import rules, store
from hub.alerts.model import Alert, AlertNotSent
from hub.health import DeliveryHealth
from hub.runtime import ConfigHolder
from hub.sender import AiohttpSender
from hub.spool.transactions import transaction
from hub.store import Connection
from hub.store.location import SqliteStore, Store

if TYPE_CHECKING:
    from hub.server import Hub

log = logging.getLogger("hookhub.alerts")

IDLE_CHECK = 5.0
"""Seconds between looks at the config while it has no `alerts:` section (a reload may add one)."""
PREFECT_GRACE = 60.0
"""Prefect unreachable for less than this (or `stalled_after`, if shorter) is not yet an alert:
one failed health check while its server restarts is not worth a page."""


class AlertChannel(Protocol):
    async def send(self, destination_id: str, alert: Alert) -> None:
        """Send `alert` to one alert destination; raise AlertNotSent when it is not taken."""
        ...

    async def close(self) -> None:
        """Release what sending held (the evaluator stops)."""
        ...


@dataclass
class DestinationChannel:
    """Alerts through the configured destinations' `send_alert` (flows/destinations).

    It has its own small aiohttp session in the hub's loop: alerts are few, and the deliveries'
    pooled sessions belong to the dispatcher's loop."""

    holder: ConfigHolder
    _session: aiohttp.ClientSession | None = field(default=None, init=False)

    async def send(self, destination_id: str, alert: Alert) -> None:
        from flows.destinations import get_destination

        config = self.holder.current
        destination = config.destinations.get(destination_id)
        if destination is None:
            raise AlertNotSent(f"destination {destination_id!r} is no longer configured", retry=False)
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        named = alert.model_copy(update={"hub": config.server.public_base_url or alert.hub})
        sender = AiohttpSender(self._session)
        await get_destination(destination.type).send_alert(named, destination.settings, sender)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass
class AlertEvaluator:
    spool: Path | Store
    """The store (a Path: the SQLite spool file)."""
    holder: ConfigHolder
    health: DeliveryHealth
    channel: AlertChannel
    clock: Callable[[], float] = time.time
    runs_here: Callable[[], bool] = lambda: True
    """Whether this process holds the cluster's maintenance role (hub/roles.py): alerts are
    evaluated and sent by one process of a cluster only."""
    started_at: float = field(init=False)
    _conn: Connection | None = field(default=None, init=False)
    _reload_error: str | None = field(default=None, init=False)
    _prefect_down_since: float | None = field(default=None, init=False)
    _restarted: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self.started_at = self.clock()
        self.holder.rejection_listeners.append(self._rejected)
        self.holder.listeners.append(lambda _config: self._rejected(None))

    def _rejected(self, reason: str | None) -> None:
        # Called on the event loop (the config watcher) while `evaluate` may run in its thread:
        # one reference assignment, read once per turn.
        self._reload_error = reason

    def connection(self) -> Connection:
        if self._conn is None:
            where = SqliteStore(self.spool) if isinstance(self.spool, Path) else self.spool
            conn = where.connect()
            with transaction(conn):
                store.ensure_alert_tables(conn)
            self._conn = conn
        return self._conn

    def evaluate(self) -> list[Alert]:
        """Apply the rules once at the clock's now; returns what was queued (blocking: SQLite)."""
        now = self.clock()
        return rules.evaluate(self.connection(), self.holder.current, self._facts(now), now)

    def _facts(self, now: float) -> rules.Facts:
        alerts = self.holder.current.alerts
        stalled_after = alerts.stalled_after if alerts else 900.0
        health = self.health
        if health.prefect_reachable is False:
            self._prefect_down_since = self._prefect_down_since or now
        else:
            self._prefect_down_since = None
        down = self._prefect_down_since is not None and now - self._prefect_down_since >= min(
            PREFECT_GRACE, stalled_after
        )
        return rules.Facts(
            started_at=self.started_at,
            dispatching=health.dispatching,
            prefect_reachable=False if down else None,
            prefect_error=health.prefect_error,
            # Before its first turn (Prefect's server starting) the dispatcher counts from our start.
            dispatcher_alive=not health.dispatching
            or now - (health.dispatcher_beat_at or self.started_at) <= stalled_after,
            reload_error=self._reload_error,
        )

    async def send_owed(self) -> int:
        """Send every due outbox row once; returns how many were sent."""
        conn = self.connection()
        sent = 0
        # After a (re)start everything owed is due at once, before what this start decides: an
        # alert owed from before a restart goes out ahead of its own all-clear.
        due_by = math.inf if self._restarted else self.clock()
        self._restarted = False
        for owed in await asyncio.to_thread(store.due, conn, due_by):
            try:
                await self.channel.send(owed.destination, owed.alert)
            except AlertNotSent as exc:
                await asyncio.to_thread(self._failed, owed, exc.reason, exc.retry)
            except Exception as exc:  # noqa: BLE001 - a broken sender must not stop the other alerts
                await asyncio.to_thread(self._failed, owed, f"sending failed ({type(exc).__name__})", True)
            else:
                await asyncio.to_thread(store.mark_sent, conn, owed.id, self.clock())
                sent += 1
                log.info("alert sent", extra=_facts_of(owed, event="alert_sent"))
        return sent

    def _failed(self, owed: store.Owed, reason: str, retry: bool) -> None:
        from flows.retry import backoff

        now = self.clock()
        destination = self.holder.current.destinations.get(owed.destination)
        next_at = None
        if retry and destination is not None:
            policy = getattr(destination.settings, "retry", None)
            if policy is not None and now - owed.created_at < policy.horizon:
                next_at = now + backoff(policy, owed.attempts + 1)
        store.mark_failed(self.connection(), owed.id, reason, next_at)
        level = logging.WARNING if next_at is not None else logging.ERROR
        what = "alert not sent; retrying" if next_at is not None else "alert not sent; dropped"
        log.log(level, what, extra=_facts_of(owed, event="alert_not_sent", reason=reason, retry_at=next_at))

    async def turn(self) -> None:
        """One evaluation and one pass over the outbox (nothing while `alerts:` is absent)."""
        if self.holder.current.alerts is None or not self.runs_here():
            return
        if self._restarted:
            await self.send_owed()
        owed = await asyncio.to_thread(self.evaluate)
        for alert in owed:
            log.info(
                "alert raised",
                extra={"event": "alert_raised", "rule": alert.kind, "key": alert.key, "state": alert.state},
            )
        await self.send_owed()

    async def run(self, _hub: Hub | None = None) -> None:
        """The background task (`Hub.background`): turns until cancelled."""
        try:
            while True:
                try:
                    await self.turn()
                except Exception:  # noqa: BLE001 - one bad turn (a locked spool) must not end alerting
                    log.exception("alert evaluation failed", extra={"event": "alert_error"})
                alerts = self.holder.current.alerts
                await asyncio.sleep(alerts.check_every if alerts else IDLE_CHECK)
        finally:
            await self.channel.close()
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _facts_of(owed: store.Owed, **extra: object) -> dict[str, object]:
    return {"rule": owed.alert.kind, "key": owed.alert.key, "destination": owed.destination, **extra}


def attach_alerts(hub: Hub, channel: AlertChannel | None = None) -> AlertEvaluator:
    """Run the alert evaluator in `hub` (cmd_serve; tests pass their own channel or none)."""
    evaluator = AlertEvaluator(
        hub.store,
        hub.config,
        hub.health,
        channel or DestinationChannel(hub.config),
        clock=hub.clock,
        runs_here=lambda: hub.maintenance.held,
    )
    hub.background.append(evaluator.run)
    return evaluator
