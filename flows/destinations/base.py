"""What a destination is: deliver a batch of submissions to one configured target.

`deliver` answers, for each item, delivered / retry later (with when) / failed for good
(with why). It never raises for a bad answer from the target: garbage is a recorded
failure, not a crash.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from hub.submission import Submission

Status = Literal["delivered", "retry", "failed"]


class Outcome(BaseModel):
    """The result of one delivery attempt of one submission to one destination."""

    key: str
    status: Status
    status_code: int | None = None
    reason: str | None = None
    retry_after: float | None = None
    """Seconds the target asked us to wait (Retry-After); never deliver earlier."""
    remote_id: str | None = None
    """The destination's own id for what was created (message ts, record id)."""
    disable: bool = False
    """The target said it is gone for good (410): stop sending to it."""


@dataclass(frozen=True)
class DeliveryItem:
    """One submission bound for one destination through one route."""

    key: str
    """Stable per (submission, destination): the idempotency key receivers dedupe on."""
    submission: Submission
    route: str
    template: str | None = None
    mapping: dict[str, str] | None = None
    remote_id: str | None = None
    """Set when an earlier attempt already created something (e.g. Slack ts for an update)."""


@dataclass
class DeliveryContext:
    """Shared, per-process things a destination may use: HTTP client, pacing, links."""

    http: Any
    pacer: Any
    record_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Destination(abc.ABC):
    type: ClassVar[str]
    Config: ClassVar[type[BaseModel]]

    def check(self, config: BaseModel) -> list[str]:
        """Problems that can be known before start (beyond the Config model's own validation)."""
        return []

    @abc.abstractmethod
    async def deliver(
        self, items: list[DeliveryItem], config: BaseModel, context: DeliveryContext
    ) -> list[Outcome]:
        """Deliver every item; return exactly one Outcome per item, in any order, keyed by `item.key`."""
