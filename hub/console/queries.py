"""The console's reads: each an index range or a small table, so pages stay fast on big spools.

Overview numbers come from the same snapshot /metrics reads (hub/metrics/snapshot.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hub.config.models import HubConfig
from hub.console.redact import scrub, secrets_of
from hub.metrics.snapshot import Snapshot, read_snapshot
from hub.reconcile import state as reconcile_state
from hub.store import Connection
from hub.store.catalog import tables

DAY = 86400.0


@dataclass(frozen=True)
class SourceLine:
    name: str
    today: int
    week: int
    last_received: float | None
    silent_for: float | None
    """Seconds without a submission beyond the source's expect_every (None: not silent)."""
    warnings: tuple[str, ...] = ()
    """What reconciliation found wrong (README "Missed webhooks"): the webhook, the last run."""
    reconciled: int = 0
    """Submissions stored by reconciliation so far: their webhooks never came."""


@dataclass(frozen=True)
class DestinationLine:
    name: str
    type: str
    delivered: int
    pending: int
    retrying: int
    dead: int
    disabled: str | None
    paused: bool
    last_error: str | None
    last_error_at: float | None


def sources(conn: Connection, config: HubConfig, now: float) -> list[SourceLine]:
    lines = []
    reconciled = reconcile_state.read_all(conn)
    for name, source in sorted(config.sources.items()):
        # inbox(source, received_at) (alert_inbox_by_source): two range counts and one seek each.
        today, week = (
            conn.execute(
                "SELECT count(*) FROM inbox WHERE source=? AND received_at>=?", (name, since)
            ).fetchone()[0]
            for since in (now - DAY, now - 7 * DAY)
        )
        last = conn.execute("SELECT max(received_at) FROM inbox WHERE source=?", (name,)).fetchone()[0]
        silent = None
        if source.expect_every is not None:
            quiet = now - (last if last is not None else now)
            silent = quiet if quiet > source.expect_every else None
        state = reconciled.get(name)
        warnings: list[str] = []
        if state is not None and source.reconcile is not None:
            if state.webhook_state not in (None, "ok"):
                warnings.append(f"webhook {state.webhook_state}: {state.webhook_detail}")
            if state.last_outcome in ("failed", "refused"):
                warnings.append(f"reconciliation {state.last_outcome}: {state.last_error}")
        count = state.reconciled if state is not None else 0
        lines.append(SourceLine(name, today, week, last, silent, tuple(warnings), count))
    return lines


def snapshot(conn: Connection, spool_path: Any, now: float) -> Snapshot:
    return read_snapshot(conn, spool_path, now)


def destinations(conn: Connection, config: HubConfig, snap: Snapshot) -> list[DestinationLine]:
    lines = []
    secrets = secrets_of(config)  # a destination's error text may echo its URL or token
    paused = {row[0] for row in conn.execute("SELECT destination FROM paused_destinations")}
    for name, destination in sorted(config.destinations.items()):
        opened = {
            status: snap.open_deliveries.get((status, name)) for status in ("pending", "retrying", "dead")
        }
        error = _last_error(conn, name)
        disabled = snap.disabled.get(name)
        lines.append(
            DestinationLine(
                name=name,
                type=destination.type,
                delivered=int(snap.counters.get(name, {}).get("outcome:delivered", 0)),
                pending=opened["pending"].count if opened["pending"] else 0,
                retrying=opened["retrying"].count if opened["retrying"] else 0,
                dead=opened["dead"].count if opened["dead"] else 0,
                disabled=scrub(disabled.reason, secrets) if disabled else None,
                paused=name in paused,
                last_error=scrub(error[0], secrets) if error else None,
                last_error_at=error[1] if error else None,
            )
        )
    return lines


def _last_error(conn: Connection, destination: str) -> tuple[str, float] | None:
    """The error of the destination's latest-scheduled retrying or dead delivery (about its newest).

    Each read is one seek at the end of a range of the partial index deliveries_open (status,
    destination, next_attempt_at), whatever the number of dead letters.
    """
    found = [
        conn.execute(
            "SELECT last_error, last_attempt_at FROM deliveries WHERE status = ? AND destination = ?"
            " AND status != 'delivered' ORDER BY next_attempt_at DESC LIMIT 1",
            (status, destination),
        ).fetchone()
        for status in ("retrying", "dead")
    ]
    errors = [(row[0], row[1]) for row in found if row and row[0] is not None and row[1] is not None]
    return max(errors, key=lambda pair: pair[1]) if errors else None


def dead_groups(conn: Connection, source: str | None) -> list[tuple[str | None, str, int]]:
    """(destination or None before delivery, reason, count) of every dead letter, counted by SQLite
    (a range of deliveries_open, and of inbox_by_state) instead of loading each letter."""
    where, args = ("AND i.source = ?", [source]) if source else ("", [])
    joined = " JOIN inbox i ON i.id = d.inbox_id" if source else ""  # one lookup per dead letter
    rows = conn.execute(
        f"SELECT d.destination, coalesce(d.last_error, 'failed'), count(*) FROM deliveries d{joined}"
        f" WHERE d.status = 'dead' AND d.status != 'delivered' {where} GROUP BY 1, 2",
        args,
    ).fetchall()
    # SQLite: `+d.status` looks the submission's own rows up by primary key, not every dead row;
    # PostgreSQL has no unary + on text, and its planner needs no such hint.
    status = "+d.status" if conn.dialect == "sqlite" else "d.status"
    rows += conn.execute(
        "SELECT NULL, coalesce(i.error, 'failed'), count(*) FROM inbox i WHERE i.state = 'failed'"
        f" {where} AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.inbox_id = i.id AND {status} = 'dead')"
        " GROUP BY 2",
        args,
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def recent_alerts(conn: Connection, limit: int = 10) -> list[dict[str, Any]]:
    """The newest alerts sent or owed (hub/alerts/store.py's outbox), one line per alert."""
    if "alert_outbox" not in tables(conn):
        return []  # no `alerts:` section has ever run on this SQLite spool
    # One alert is one outbox row per alert destination, each with the same text (max() picks it).
    statuses = "group_concat(status)" if conn.dialect == "sqlite" else "string_agg(status, ',')"
    rows = conn.execute(
        f"SELECT rule, key, max(created_at), {statuses}, max(alert) FROM alert_outbox"
        " GROUP BY rule, key, created_at ORDER BY created_at DESC LIMIT ?",
        (limit,),
    ).fetchall()
    out = []
    for rule, key, at, statuses, alert in rows:
        try:
            title = str(json.loads(alert).get("title", ""))
        except (ValueError, AttributeError):
            title = ""
        out.append({"rule": rule, "key": key, "at": at, "statuses": statuses, "title": title})
    return out
