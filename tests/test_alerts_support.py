"""Helpers of the alert tests: a spool with rows written the way the ledger leaves them, a
channel that records what the evaluator sends, and configs with an `alerts:` section."""

from __future__ import annotations

import itertools
import sqlite3
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from hub.alerts.model import Alert, AlertNotSent
from hub.spool.schema import ensure_schema

WHSEC = "whsec_EAQMFunN9cJRB1htPZ0NSfpniZb7tDxZ4fYC2mVqfo0="

CONFIG = """
sources:
  demo:
    provider: standard_webhooks
    secret: {whsec}
{source_extra}
destinations:
  crm:
    type: webhook
    url: {crm}
    secret: {whsec}
    retry: {{initial: 0.2, max_delay: 0.5, max_attempts: 1}}
  ops-slack:
    type: slack
    webhook_url: {slack}
    retry: {{initial: 1, max_delay: 4, horizon: 30}}
routes:
  - name: all
    from: [demo]
    to: [crm]
alerts:
{alerts}
"""


def write_config(
    path: Path,
    alerts: str,
    crm: str = "http://127.0.0.1:9/crm",
    slack: str = "http://127.0.0.1:9/services/T/B/x",
    source_extra: str = "",
) -> Path:
    path.write_text(
        CONFIG.format(
            whsec=WHSEC,
            crm=crm,
            slack=slack,
            alerts=textwrap.indent(textwrap.dedent(alerts).strip(), "  "),
            source_extra=textwrap.indent(textwrap.dedent(source_extra).strip(), "    "),
        ),
        encoding="utf-8",
    )
    return path


_ids = itertools.count(1)


@dataclass
class Spool:
    """A real spool file; rows as the receiver and the ledger write them."""

    path: Path

    def __post_init__(self) -> None:
        ensure_schema(self.path)

    def _conn(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None)

    def _insert(self, table: str, **values: object) -> None:
        marks = ",".join("?" * len(values))
        with self._conn() as conn:
            conn.execute(f"INSERT INTO {table} ({','.join(values)}) VALUES ({marks})", tuple(values.values()))

    def submission(self, at: float, source: str = "demo", state: str = "routed") -> str:
        inbox_id = f"sub_{next(_ids):06d}"
        self._insert(
            "inbox",
            id=inbox_id,
            received_at=at,
            source=source,
            provider="standard_webhooks",
            event_id=inbox_id,
            kind="submission",
            state=state,
            body=b"{}",
            updated_at=at,
        )
        return inbox_id

    def delivery(
        self,
        at: float,
        status: str,
        destination: str = "crm",
        error: str = "",
        updated_at: float | None = None,
    ) -> str:
        inbox_id = self.submission(at)
        delivered_at = at if status == "delivered" else None
        self._insert(
            "deliveries",
            inbox_id=inbox_id,
            destination=destination,
            route="all",
            status=status,
            attempts=1,
            next_attempt_at=at,
            last_error=error or None,
            delivered_at=delivered_at,
            created_at=at,
            updated_at=at if updated_at is None else updated_at,
        )
        return inbox_id

    def attempt(self, at: float, outcome: str, destination: str = "crm", error: str = "") -> None:
        inbox_id = self.submission(at)
        self._insert(
            "attempts",
            inbox_id=inbox_id,
            destination=destination,
            attempt=1,
            at=at,
            outcome=outcome,
            error=error or None,
        )

    def disable(self, destination: str, at: float, reason: str) -> None:
        with self._conn() as conn:
            conn.execute("INSERT INTO disabled_destinations VALUES (?,?,?)", (destination, at, reason))

    def enable(self, destination: str) -> None:
        with self._conn() as conn:
            conn.execute("DELETE FROM disabled_destinations WHERE destination=?", (destination,))

    def count(self, sql: str) -> int:
        with self._conn() as conn:
            return int(conn.execute(sql).fetchone()[0])


@dataclass
class RecordingChannel:
    """Records every alert sent; `failing` makes every send fail (retry as given)."""

    sent: list[tuple[str, Alert]] = field(default_factory=list)
    tries: int = 0
    failing: bool = False
    retry: bool = True

    async def send(self, destination_id: str, alert: Alert) -> None:
        self.tries += 1
        if self.failing:
            raise AlertNotSent("Slack answered HTTP 500", retry=self.retry)
        self.sent.append((destination_id, alert))

    async def close(self) -> None:
        pass

    def alerts(self, kind: str | None = None) -> list[Alert]:
        return [a for _, a in self.sent if kind is None or a.kind == kind]
