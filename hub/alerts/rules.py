"""The alert rules over the spool: what fires, what recovers, what is owed; one transaction a turn.

Two shapes of rule:
- dead letters are *counted*: new dead letters of a destination open a group that is sent as
  one message after `group_window` (500 failures, one message), then at most once per
  `throttle`; what comes during the throttle is counted into the next message. After a
  message, the first delivery that succeeds to that destination sends "recovered".
- the others are *levels* (failing, disabled, stalled, silent, reload_rejected): a condition
  per key that is true or not; the message is sent when it becomes true (once, not again
  while it stays true, and not sooner than `throttle` after the last one for that key) and a
  "resolved" message when it is no longer true.

Dead letters are read by `deliveries.updated_at` up to a watermark that stays SCAN_LAG
behind the clock: the ledger stamps rows when a chunk's transaction starts and commits them
a moment later, so a row can become visible with a stamp slightly in the past.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hub.alerts import messages, store
from hub.alerts.model import Alert
from hub.alerts.store import RuleState
from hub.config.models import AlertKind, AlertsConfig, HubConfig
from hub.spool.transactions import transaction
from hub.store import Connection

SCAN_LAG = 2.0
BEFORE_DELIVERY = "(before delivery)"
"""The key of dead letters that never reached a destination (normalize, fetch or route failed)."""
_REASON_CHARS = 200


@dataclass(frozen=True)
class Facts:
    """What the hub knows beside the spool (hub.health, the config holder)."""

    started_at: float
    dispatching: bool = False
    prefect_reachable: bool | None = None
    prefect_error: str | None = None
    dispatcher_alive: bool = True
    reload_error: str | None = None


def evaluate(conn: Connection, config: HubConfig, facts: Facts, now: float) -> list[Alert]:
    """Apply every enabled rule at `now`; the alerts decided are queued in the outbox (same transaction)."""
    alerts = config.alerts
    if alerts is None:
        return []
    owed: list[Alert] = []
    with transaction(conn):
        if alerts.rule("dead_letters").enabled:
            owed += _dead_letters(conn, alerts, now)
        levels: list[tuple[AlertKind, dict[str, Alert]]] = [
            ("failing", _failing(conn, config, alerts.failing_in_a_row, now)),
            ("disabled", _disabled(conn, now)),
            ("stalled", _stalled(conn, alerts, facts, now)),
            ("silent", _silent(conn, config, facts, now)),
            ("reload_rejected", _reload(facts, now)),
            ("webhook", _webhooks(conn, config, now)),
            ("reconciled", _reconciled(conn, config, now)),
        ]
        for kind, conditions in levels:
            if alerts.rule(kind).enabled:
                owed += _level(conn, alerts, kind, conditions, now)
        for alert in owed:
            store.owe(conn, alert, alerts.destinations_of(alert.kind), now)
    return owed


def _level(
    conn: Connection, alerts: AlertsConfig, kind: AlertKind, conditions: dict[str, Alert], now: float
) -> list[Alert]:
    states = store.states(conn, kind)
    out: list[Alert] = []
    for key, alert in conditions.items():
        state = states.get(key) or RuleState(kind, key)
        if state.firing or state.throttled(now, alerts.throttle_of(kind)):
            continue
        state.firing, state.since, state.last_sent_at = True, now, now
        store.save(conn, state)
        out.append(alert)
    for key, state in states.items():
        if state.firing and key not in conditions:
            state.firing = False
            store.save(conn, state)
            out.append(messages.recovered(kind, key, now))
    return out


def _dead_letters(conn: Connection, alerts: AlertsConfig, now: float) -> list[Alert]:
    states = store.states(conn, "dead_letters")
    upper = now - SCAN_LAG
    # Counting starts when alerts are first enabled: older dead letters are history.
    low = store.watermark(conn, "dead_letters", upper)
    if upper > low:
        for key, reason, source, at in _new_dead(conn, low, upper):
            state = states.setdefault(key, RuleState("dead_letters", key))
            state.pending += 1
            state.pending_since = state.pending_since or now
            short = reason[:_REASON_CHARS] or "no reason recorded"
            state.reasons[short] = state.reasons.get(short, 0) + 1
            if source not in state.sources:
                state.sources.append(source)
            state.last_seen_at = max(state.last_seen_at or at, at)
    store.set_watermark(conn, "dead_letters", max(low, upper))
    out: list[Alert] = []
    throttle = alerts.throttle_of("dead_letters")
    for key, state in states.items():
        if state.pending:
            assert state.pending_since is not None
            if now >= state.pending_since + alerts.group_window and not state.throttled(now, throttle):
                out.append(
                    messages.dead_letters(
                        key, state.pending, state.reasons, state.sources, alerts.top_reasons, now
                    )
                )
                state.pending, state.pending_since, state.reasons, state.sources = 0, None, {}, []
                state.firing, state.last_sent_at = True, now
        elif state.firing and _delivered_since(conn, key, state.last_seen_at or 0.0):
            state.firing = False
            out.append(messages.dead_letters_recovered(key, _dead_count(conn, key), now))
        store.save(conn, state)
    return out


def _new_dead(conn: Connection, low: float, high: float) -> list[tuple[str, str, str, float]]:
    # The partial index (hub/alerts/store.py): without statistics SQLite would pick
    # deliveries_due and read every dead letter ever kept, each turn. PostgreSQL has them.
    indexed = " INDEXED BY alert_dead_by_time" if conn.dialect == "sqlite" else ""
    delivered = conn.execute(
        "SELECT d.destination, coalesce(d.last_error, ''), i.source, d.updated_at"
        f" FROM deliveries d{indexed} JOIN inbox i ON i.id = d.inbox_id"
        " WHERE d.status = 'dead' AND d.updated_at > ? AND d.updated_at <= ?",
        (low, high),
    ).fetchall()
    undelivered = conn.execute(
        "SELECT ?, coalesce(i.error, ''), i.source, i.updated_at FROM inbox i WHERE i.state = 'failed'"
        " AND i.updated_at > ? AND i.updated_at <= ?"
        " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.inbox_id = i.id)",
        (BEFORE_DELIVERY, low, high),
    ).fetchall()
    return [*delivered, *undelivered]


def _delivered_since(conn: Connection, destination: str, since: float) -> bool:
    # Through the attempts since then (an index range), not the deliveries: those hold every
    # submission ever delivered.
    row = conn.execute(
        "SELECT 1 FROM attempts WHERE destination = ? AND at > ? AND outcome = 'delivered' LIMIT 1",
        (destination, since),
    ).fetchone()
    return row is not None


def _dead_count(conn: Connection, destination: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM deliveries WHERE destination = ? AND status = 'dead'", (destination,)
    ).fetchone()
    return int(row[0])


def _failing(conn: Connection, config: HubConfig, in_a_row: int, now: float) -> dict[str, Alert]:
    found: dict[str, Alert] = {}
    for destination in config.destinations:
        rows = conn.execute(
            "SELECT outcome, coalesce(error, '') FROM attempts WHERE destination = ?"
            " ORDER BY at DESC LIMIT ?",
            (destination, in_a_row),
        ).fetchall()
        if len(rows) == in_a_row and all(outcome != "delivered" for outcome, _ in rows):
            reasons = [error[:_REASON_CHARS] for _, error in rows if error]
            found[destination] = messages.failing(destination, in_a_row, reasons, now)
    return found


def _disabled(conn: Connection, now: float) -> dict[str, Alert]:
    rows = conn.execute("SELECT destination, coalesce(reason, '') FROM disabled_destinations")
    return {dest: messages.disabled(dest, reason, now) for dest, reason in rows}


def _stalled(conn: Connection, alerts: AlertsConfig, facts: Facts, now: float) -> dict[str, Alert]:
    found: dict[str, Alert] = {}
    if not facts.dispatching:
        return found  # `serve --no-dispatch`: delivering is someone else's job
    if facts.prefect_reachable is False:
        found["prefect"] = messages.stalled("prefect", facts.prefect_error or "", alerts.stalled_after, now)
    if not facts.dispatcher_alive:
        found["dispatcher"] = messages.stalled("dispatcher", "", alerts.stalled_after, now)
    waiting = Counter[str]()
    oldest = now
    # Since the row last changed state (claimed, put back, replayed), not since it was first
    # written: replaying old dead letters must not look like a stall.
    for table, stamp, states in (
        ("inbox", "coalesce(updated_at, received_at)", "('pending', 'claimed')"),
        ("deliveries", "coalesce(updated_at, created_at)", "('pending', 'sending')"),
    ):
        first, count = conn.execute(
            f"SELECT min({stamp}), count(*) FROM {table} WHERE {_state_col(table)} IN {states}"
        ).fetchone()
        if first is not None:
            oldest = min(oldest, float(first))
            waiting[table] = int(count)
    if now - oldest > alerts.stalled_after:
        detail = f"{waiting['inbox']} submissions and {waiting['deliveries']} deliveries are waiting"
        found["delivery"] = messages.stalled("delivery", detail, alerts.stalled_after, now)
    return found


def _state_col(table: str) -> str:
    return "state" if table == "inbox" else "status"


def _silent(conn: Connection, config: HubConfig, facts: Facts, now: float) -> dict[str, Alert]:
    found: dict[str, Alert] = {}
    for source_id, source in config.sources.items():
        if source.expect_every is None:
            continue
        # Newest first along (source, received_at), stopping at the first submission: max() with
        # the kind filter would read every row of the source.
        row = conn.execute(
            "SELECT received_at FROM inbox WHERE source = ? AND kind = 'submission'"
            " ORDER BY received_at DESC LIMIT 1",
            (source_id,),
        ).fetchone()
        last = None if row is None else float(row[0])
        # A hub that was down did not hear anything either: count from its start.
        if now - max(last or 0.0, facts.started_at) > source.expect_every:
            found[source_id] = messages.silent(source_id, source.expect_every, last, now)
    return found


RECONCILED_WINDOW = 3600.0
"""The `reconciled` rule counts submissions that came only through reconciliation in this long."""


def _webhooks(conn: Connection, config: HubConfig, now: float) -> dict[str, Alert]:
    """Reconciled sources whose provider said, at the last run, the webhook is not sending here."""
    found: dict[str, Alert] = {}
    reconciled = [s for s, source in config.sources.items() if source.reconcile is not None]
    if not reconciled:
        return found
    for source_id, webhook_state, detail in conn.execute(
        "SELECT source, webhook_state, webhook_detail FROM reconcile_state"
        " WHERE webhook_state IS NOT NULL AND webhook_state <> 'ok'"
    ):
        if source_id in reconciled:
            provider = config.sources[source_id].provider
            found[source_id] = messages.webhook(source_id, provider, webhook_state, detail or "", now)
    return found


def _reconciled(conn: Connection, config: HubConfig, now: float) -> dict[str, Alert]:
    """Sources with submissions stored by reconciliation in the last hour: a webhook is failing."""
    found: dict[str, Alert] = {}
    for source_id, source in config.sources.items():
        if source.reconcile is None:
            continue
        # Along (source, received_at): the last hour of this source only.
        count = int(
            conn.execute(
                "SELECT count(*) FROM inbox WHERE source = ? AND received_at > ?"
                " AND event_id LIKE 'reconciled:%'",
                (source_id, now - RECONCILED_WINDOW),
            ).fetchone()[0]
        )
        if count:
            found[source_id] = messages.reconciled(source_id, count, RECONCILED_WINDOW, now)
    return found


def _reload(facts: Facts, now: float) -> dict[str, Alert]:
    if facts.reload_error is None:
        return {}
    return {"config": messages.reload_rejected(facts.reload_error, now)}
