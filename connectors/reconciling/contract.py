"""The contract: what a provider's reconciler is and what it yields (see the package's doc)."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.alerts.durations import Duration
from hub.submission import Submission

if TYPE_CHECKING:
    from connectors.base import SourceSettings
    from hub.sender import Sender


DAY = 86400.0


class ReconcileFailed(Exception):
    """The provider's API could not be read; the message says why and what to do.

    `permanent`: trying again cannot help until the admin acts (a revoked or expired token, a
    form that does not exist): the run stops and says so instead of retrying.
    """

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


SHARED_KEYS = {
    "credentials": "The API secret the form's responses are listed with; write it as ${VAR} so it stays"
    " out of the file. It is never logged.",
    "api_base_url": "The API's root URL; change it only for another data centre, a proxy or a test server.",
}


def _shared_keys(schema: dict[str, Any], model: type[Any]) -> None:
    """Hover text for the keys every provider's Settings declares with a type of its own, so once here
    rather than in each subclass; a subclass's own description or example wins."""
    properties = schema.get("properties", {})
    for key, text in SHARED_KEYS.items():
        if key in properties:
            properties[key].setdefault("description", text)
    credentials = model.model_fields.get("credentials")
    example = getattr(credentials.annotation, "yaml_example", None) if credentials is not None else None
    if example is not None and "credentials" in properties:
        properties["credentials"].setdefault("examples", [example()])


class ReconcileSettings(BaseModel):
    """`reconcile:` on a source. Each provider's `Reconciler.Settings` subclasses this with what its
    API needs (credentials, form ids, `api_base_url`); credentials come from the environment
    (`${TYPEFORM_TOKEN}`) and are `SecretStr`, so they never appear in a repr or a log."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_shared_keys)

    every: Duration = Field(default=3600.0, ge=60, description="how often the scheduled run lists the form")
    lookback: Duration = Field(
        default=7 * DAY,
        ge=60,
        description="how far back a first run (no watermark yet) may look; never before the source's"
        " first stored submission less an hour (older responses are history: `hookhub import`)",
    )
    settle: Duration = Field(
        default=600.0,
        ge=0,
        description="responses younger than this are left to their webhook (it may still be on its way)",
    )


@dataclass(frozen=True)
class Window:
    """Responses submitted in [since, until): what one run lists."""

    since: datetime
    until: datetime


@dataclass(frozen=True)
class ListedResponse:
    """One response as the provider's API lists it.

    `response_id` is the identity a webhook for the same response carries in
    `Envelope.response_id`. `submission` is normalized like the webhook's would be (the hub sets
    its `id`, `source` and `metadata.origin`); its `event_id` is the response id where the API has
    no event id of its own.
    """

    response_id: str
    submitted_at: datetime
    submission: Submission


@dataclass(frozen=True)
class UnreadableResponse:
    """A listed response the connector could not normalize: `problem` says why.

    Listed on its page rather than raised, so that one odd response neither stops the run nor
    holds the watermark back for ever: the hub stores it as a dead letter with the problem, and
    the listing goes on with the others.
    """

    response_id: str
    submitted_at: datetime
    problem: str
    form_id: str | None = None
    """The form it belongs to, where the provider numbers responses per form (Wufoo): the spool's
    key is then `<form id>/<response id>`, as for the webhook (connectors.base.response_key)."""


@dataclass(frozen=True)
class ResponsePage:
    """One page of a listing, oldest first where the API allows it."""

    responses: list[ListedResponse]
    total: int | None = None
    """Responses in the whole window, when the API says (for the progress bar)."""
    unreadable: list[UnreadableResponse] = field(default_factory=list)


Sleep = Callable[[float], Awaitable[None]]

WebhookState = Literal["ok", "disabled", "missing", "elsewhere"]


@dataclass(frozen=True)
class WebhookHealth:
    """What the provider says of the webhook that should be sending to this source.

    `detail` is for the alert: what the API said, in words (never a token, never the URL's secret).
    """

    state: WebhookState
    detail: str


class Reconciler(abc.ABC):
    """A provider's responses API (and, where it has one, its webhook API)."""

    Settings: ClassVar[type[ReconcileSettings]] = ReconcileSettings
    page_size: ClassVar[int]
    """Responses per listing call: the README's cost figures are computed from it."""
    api: ClassVar[str]
    """The API a run reads, for messages and docs (`Typeform Responses API`)."""

    def __init__(self, sleep: Sleep = asyncio.sleep) -> None:
        self.sleep = sleep
        """How calls wait out a Retry-After (pass it to `get_json`); a test passes one that records."""

    @abc.abstractmethod
    def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        """The responses submitted in `window`, page by page. Raise `ReconcileFailed`."""

    async def webhook_health(
        self, source: SourceSettings, settings: Any, expected_url: str | None, http: Sender
    ) -> WebhookHealth | None:
        """Whether the provider's webhook for this source is enabled and points at `expected_url`
        (the source's public URL, None if the hub does not know it); None where the API cannot say."""
        return None

    def warnings(self, settings: Any) -> list[str]:
        """Valid but risky about reconciling this provider (an identity rule the provider's docs do
        not confirm), for `hookhub check` to print as warnings."""
        return []
