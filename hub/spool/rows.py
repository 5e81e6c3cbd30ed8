"""The ledger's rows as flows see them: inbox rows, planned deliveries, deliveries, decisions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

DeliveryStatus = Literal["pending", "sending", "retrying", "delivered", "dead"]


@dataclass(frozen=True)
class InboxRow:
    id: str
    received_at: float
    source: str
    provider: str
    event_id: str
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    kind: str = "submission"
    """`fetched`: a submission a notification stood for; its body is the Submission JSON."""


@dataclass(frozen=True)
class PlannedDelivery:
    destination: str
    route: str


Routed = dict[str, tuple[str, list[PlannedDelivery]]]
"""Inbox id -> (Submission JSON, planned deliveries)."""


@dataclass(frozen=True)
class DeliveryRow:
    inbox_id: str
    destination: str
    route: str
    attempts: int
    first_attempt_at: float | None
    remote_id: str | None
    submission: str | None
    """The normalized Submission JSON stored at routing time."""
    generation: int = 0
    """0 for the first sending; +1 per `hookhub resend` (hub/spool/actions.py)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.inbox_id, self.destination)

    @property
    def delivery_key(self) -> str:
        """The idempotency key receivers dedupe on: stable across retries, new for each resend."""
        base = f"{self.inbox_id}.{self.destination}"
        return f"{base}.r{self.generation}" if self.generation else base


@dataclass(frozen=True)
class Decision:
    """What one attempt concluded for one (submission, destination)."""

    inbox_id: str
    destination: str
    status: DeliveryStatus  # delivered, retrying or dead
    outcome: str  # what the attempt itself was: delivered, retry, failed, disabled, gave_up
    attempted: bool = True
    next_attempt_at: float | None = None
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    remote_id: str | None = None


def by_destination(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(inbox id, destination) pairs as destination -> inbox ids: one IN (...) query per destination."""
    grouped: dict[str, list[str]] = {}
    for inbox_id, destination in keys:
        grouped.setdefault(destination, []).append(inbox_id)
    return grouped


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    """`items` in lists of at most `size`: an IN (...) list stays under SQLite's bound-variable limit."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
