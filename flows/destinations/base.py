"""What a destination is: deliver a batch of submissions to one configured target.

`deliver` answers, for each item, delivered / retry later (with when) / failed for good
(with why). It never raises for a bad answer from the target: garbage is a recorded
failure, not a crash.

Every destination's config model subclasses `DestinationSettings`, so the keys every
destination shares (`retry`, `timeout`) mean the same everywhere and the ledger can read
them without knowing the type.
"""

from __future__ import annotations

import abc
import builtins
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.alerts.model import Alert, AlertsUnsupported
from hub.sender import Sender
from hub.submission import Submission

Status = Literal["delivered", "retry", "failed"]

DAY = 24 * 3600.0


class RetryPolicy(BaseModel):
    """Exponential backoff with jitter between attempts, until `horizon` after the first one.

    The default horizon outlasts every provider's own retry window (10-32 h), so a
    destination that is down for a day still gets every submission once it is back.
    """

    model_config = ConfigDict(extra="forbid")

    initial: float = Field(default=10.0, gt=0, description="seconds before the first retry")
    multiplier: float = Field(default=2.0, ge=1.0, description="growth of the wait per attempt")
    max_delay: float = Field(default=3600.0, gt=0, description="longest wait between two attempts, seconds")
    horizon: float = Field(
        default=2 * DAY, gt=0, description="give up this many seconds after the first attempt"
    )
    max_attempts: int | None = Field(default=None, ge=1, description="give up after this many attempts")

    @model_validator(mode="after")
    def _ordered(self) -> RetryPolicy:
        if self.max_delay < self.initial:
            raise ValueError("max_delay must be at least initial")
        return self


class DestinationSettings(BaseModel):
    """Keys every destination type accepts besides its own."""

    # Validation errors must not echo the input: most types hold credentials (tokens, passwords,
    # webhook URLs with their token in the path).
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: str
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="How a failed delivery is tried again: waits start at `initial` seconds and grow by"
        " `multiplier` up to `max_delay`; it is given up `horizon` seconds (default 2 days) after the"
        " first attempt, or after `max_attempts`.",
        examples=[
            {"initial": 10, "multiplier": 2, "max_delay": 3600, "horizon": 172800},
            {"max_attempts": 30},
        ],
    )
    timeout: float = Field(default=30.0, gt=0, le=600, description="seconds for one request to the target")


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
    deferred: bool = False
    """Not sent at all: the target's pause (an earlier answer's Retry-After) was still on. With
    status "retry" and `retry_after` the seconds left, the ledger reschedules it for the end of
    the pause without counting an attempt or growing the backoff (flows/retry.py)."""


class DeliveryItem:
    """One submission bound for one destination through one route.

    Built from the spool, an item holds the Submission JSON stored at routing time and parses
    it only when a destination reads `submission`: a webhook sends those bytes as they are,
    which spares a parse and a re-encode per delivery (~70 us of a worker's CPU each).
    """

    __slots__ = ("_json", "_submission", "key", "mapping", "remote_id", "route", "template")

    def __init__(
        self,
        key: str,
        submission: Submission | None = None,
        route: str = "",
        template: str | None = None,
        mapping: dict[str, str] | None = None,
        remote_id: str | None = None,
        *,
        submission_json: str | None = None,
    ) -> None:
        if submission is None and submission_json is None:
            raise TypeError("a DeliveryItem needs its submission or the submission's stored JSON")
        self.key = key
        """Stable per (submission, destination): the idempotency key receivers dedupe on."""
        self.route = route
        self.template = template
        self.mapping = mapping
        self.remote_id = remote_id
        """Set when an earlier attempt already created something (e.g. Slack ts for an update)."""
        self._submission = submission
        self._json = submission_json

    @property
    def submission(self) -> Submission:
        if self._submission is None:
            assert self._json is not None
            self._submission = Submission.model_validate_json(self._json)
        return self._submission

    def submission_json(self) -> bytes:
        """The Submission's public JSON (compact, UTF-8): as stored, or encoded from the model."""
        if self._json is None:
            self._json = self.submission.to_json()[1]  # lone surrogates as U+FFFD
        return self._json.encode("utf-8")

    def replace(self, **changes: Any) -> DeliveryItem:
        fields = {
            "key": self.key,
            "route": self.route,
            "template": self.template,
            "mapping": self.mapping,
            "remote_id": self.remote_id,
            "submission": self._submission,
            "submission_json": self._json,
        }
        if "submission" in changes:
            fields["submission_json"] = None
        return DeliveryItem(**{**fields, **changes})

    def __repr__(self) -> str:
        return f"DeliveryItem(key={self.key!r}, route={self.route!r})"


@dataclass
class DeliveryContext:
    """Per-task things a destination may use.

    `http` is what every HTTP request goes through (hub/sender.py): an `AiohttpSender` over the
    hub's pooled session in the pipeline, a `FakeSender` in tests and `hookhub test-route`;
    `pacer` is the hub's pacer, shared by every task and flow run, so budgets hold across
    routes and batches: the process-wide `flows.pacing.Pacer`, or on PostgreSQL a
    `flows.budgets.StorePacer`, whose budgets hold across every worker of the cluster;
    `record_link(submission_id)` is the URL of the hub's record of a submission, or None when
    the hub has no public URL.
    """

    http: Sender
    pacer: Any
    destination_id: str = ""
    record_link: Callable[[str], str | None] = lambda _id: None
    extra: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per delivery key, a destination's own facts for the one log line of that outcome, which
    the shared delivery path writes (flows/delivery.py): the step, the method, the target's
    error codes; never secrets, addresses or rendered text. `warn=True` among them logs even a
    delivered outcome as a warning."""

    def note(self, key: str, **facts: Any) -> None:
        """Add facts to the log line of the outcome of delivery `key` (see `facts`)."""
        self.facts.setdefault(key, {}).update(facts)


ConfigT = TypeVar("ConfigT", bound=DestinationSettings)


class Destination(abc.ABC, Generic[ConfigT]):
    """A destination type, generic over its validated config model `ConfigT` (its `Config`)."""

    type: ClassVar[str]
    Config: builtins.type[ConfigT]
    """Set on each subclass (not a ClassVar: one cannot hold a type variable); `type` here is
    the builtin, the class attribute above shadows it."""
    any_process: ClassVar[bool] = False
    """Whether deliveries may run in several processes at once (flows/delivery_pool.py): only
    for types that keep no budget that must hold across all sends (Slack's 1 message/s, CRM
    rate limits and SMTP sessions do; a Retry-After pause is learnt by each process anyway)."""
    reads_submission: ClassVar[bool] = True
    """Whether `deliver` reads `item.submission` (the parsed model) rather than only
    `item.submission_json()`: stored JSON that does not parse is then a dead letter up front."""

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock
        """Unix time, for what targets date (Retry-After HTTP-dates, rate-limit resets, a Date
        header); tests pin it."""

    def check(self, config: ConfigT) -> list[str]:
        """Problems that can be known before start (beyond the Config model's own validation)."""
        return []

    @abc.abstractmethod
    async def deliver(
        self, items: list[DeliveryItem], config: ConfigT, context: DeliveryContext
    ) -> list[Outcome]:
        """Deliver every item; return exactly one Outcome per item, in any order, keyed by `item.key`."""

    carries_alerts: ClassVar[bool] = False
    """Whether the type overrides `send_alert`: `hookhub check` refuses others in `alerts.to`."""

    async def send_alert(self, alert: Alert, config: ConfigT, sender: Sender) -> None:
        """Send one alert (hub/alerts) to this target; raise `hub.alerts.model.AlertNotSent` (with
        `retry` False when trying again cannot help) when the target does not take it."""
        raise AlertsUnsupported(self.type)
