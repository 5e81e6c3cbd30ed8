"""What a connector is: one provider's verification, envelope and normalization.

A connector module (or package) in this package defines one `Connector` subclass instance
named `connector`. `connectors.get_connector` (connectors/__init__.py) finds it by module name,
so adding a provider means adding one module or package here and its fixtures, nothing else.

The three jobs are deliberately separate because they run at different places:
- `verify` and `envelope` run on the request path, before the 2xx; they must be cheap
  and must never raise anything but `VerificationFailed` / `UnsupportedPayload`.
- `normalize` runs in the pipeline, from the stored raw request, so a connector bug can
  never lose a verified submission: it fails into a dead letter instead.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict

from connectors._hashing import sha256_hex
from hub.submission import Submission

if TYPE_CHECKING:  # only annotations here: the receiver imports connectors, not the HTTP client
    from connectors.reconciling import Reconciler
    from hub.sender import Sender


class VerificationFailed(Exception):
    """The request is not provably from the provider: answered with 401.

    The message is short and safe to return to the caller (no secrets, no expected
    signature values).
    """


class UnsupportedPayload(Exception):
    """The payload does not have the provider's documented shape.

    On the request path this is not fatal: the verified request is still stored (keyed
    on a hash of its body) and marked unnormalizable with this message.
    """


class FetchFailed(Exception):
    """A provider API needed to complete a submission could not be read; the message says why.

    `permanent`: trying again cannot help (missing credentials, 401/403/404), so the
    submission becomes a dead letter at once instead of after the retries.
    """

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class NoOptions(BaseModel):
    """Connectors that need nothing beyond `secret`, `tolerance` and `public_url`."""

    model_config = ConfigDict(extra="forbid")


class SourceSettings(Protocol):
    """The parts of a configured source a connector may read (see hub.config.models)."""

    @property
    def secrets(self) -> list[str]: ...

    @property
    def tolerance(self) -> int: ...

    @property
    def public_url(self) -> str | None: ...

    @property
    def options(self) -> BaseModel: ...


@dataclass(frozen=True)
class InboundRequest:
    """A webhook request as received: the bytes every signature is computed over."""

    method: str
    url: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def media_type(self) -> str:
        raw = self.headers.get("content-type", "")
        return raw.split(";", 1)[0].strip().lower()

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))

    def body_sha256(self) -> str:
        return sha256_hex(self.body)


Kind = Literal["submission", "test", "ignored"]


@dataclass(frozen=True)
class Envelope:
    """What the edge needs to know before answering: the dedupe key and the kind.

    `kind` is `test` for provider pings/test events and `ignored` for authentic events
    that are not new submissions (partial responses, other event types, updates); both
    are acknowledged and recorded but never routed. `note` says why, for the admin.
    """

    event_id: str
    kind: Kind = "submission"
    form_id: str | None = None
    note: str | None = None
    response_id: str | None = None
    """The provider's identity of the response a submission event is about (Typeform's `token`,
    Tally's `responseId`), where the webhook carries it: the spool keeps one row per (source,
    response id) as well as per event id, so a response that reconciliation fetched and its late
    webhook (or the other way round) are delivered once. Set only on `submission` events."""


@dataclass(frozen=True)
class NormalizeContext:
    """Where a stored request came from, for building its Submission."""

    submission_id: str
    source: str
    received_at: datetime
    extra: dict[str, object] = field(default_factory=dict)


class Connector(abc.ABC):
    """Base class: subclasses set the class attributes and implement the three jobs."""

    provider: ClassVar[str]
    title: ClassVar[str]
    scheme: ClassVar[str]
    """Short name of the verification scheme, as `hookhub providers` lists it."""
    # These five are not ClassVars: a bound MappedConnector sets them per source.
    content_types: frozenset[str] = frozenset({"application/json"})
    credential_headers: frozenset[str] = frozenset()
    """Request headers (lower-case) that carry credentials and are never stored."""
    credential_query: frozenset[str] = frozenset()
    """URL query parameters that carry credentials and are never stored."""
    stored_headers: frozenset[str] = frozenset()
    """The provider's own id/timestamp/signature headers (lower-case, never a credential): stored with the
    request beside content-type, content-length and user-agent; every other header is dropped."""
    requires_secret: bool = True
    event_ids_per_form: ClassVar[bool] = False
    """True where the provider numbers events per form (Wufoo, Microsoft Forms): the spool then
    dedupes on (form id, event id), so two forms posting to one source cannot collide."""
    Options: ClassVar[type[BaseModel]] = NoOptions

    @abc.abstractmethod
    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        """Raise `VerificationFailed` unless the request is authentic. `now` is epoch seconds."""

    @abc.abstractmethod
    def envelope(self, request: InboundRequest) -> Envelope:
        """Dedupe key and kind; raise `UnsupportedPayload` if the shape is not the provider's."""

    @abc.abstractmethod
    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        """Build the Submission; raise `UnsupportedPayload` with a reason an admin can act on."""

    @abc.abstractmethod
    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        """A realistic, correctly signed submission for `hookhub send-test`."""

    def describe(self) -> str:
        return f"{self.provider}: {self.title} ({self.scheme})"

    # Per-source hooks. Defaults fit every connector whose behaviour the class attributes
    # describe; a connector configured by its `Options` (connectors/mapped/) overrides them.

    def for_source(self, options: BaseModel) -> Connector:
        """This connector set up for one source's validated `Options`; by default itself.

        Whoever holds a source's options and calls `envelope`/`normalize` (which take no
        source) should call them on `get_connector(provider).for_source(options)`.
        """
        return self

    def needs_secret(self, options: BaseModel) -> bool:
        """Whether a source with these options must set `secret` (checked by `hookhub check`)."""
        return self.requires_secret

    def warnings(self, options: BaseModel) -> list[str]:
        """Valid but risky settings of a source, reported by `hookhub check` as warnings."""
        return []

    # Pipeline hooks for providers whose webhook is only a notification (SurveyMonkey, the
    # Forms API watch). They run inside the delivery flow, never on the request path.

    fetches: ClassVar[bool] = False
    """True if `expand` fetches what the webhook did not carry; the flow then calls it."""

    async def expand(self, submission: Submission, source: SourceSettings, http: Sender) -> list[Submission]:
        """The submission(s) a notification stands for, fetched from the provider's API.

        One Submission with the same `event_id`: it replaces the thin one. Otherwise each one
        becomes a submission of its own (deduplicated on its `event_id`, so responses fetched
        again by a later notification are not delivered twice) and the notification is done.
        Raise `FetchFailed` when the API cannot be read; every request goes through `http` (hub/sender.py).
        """
        return [submission]

    reconciler: ClassVar[Reconciler | None] = None
    """The provider's responses API (connectors/reconciling.py), where it has one: sources of this
    provider may then set `reconcile:`. Responses fetched by `expand` are kept under their
    `event_id` as their response id too, so that a reconciled response is not fetched twice."""

    maintenance_interval: ClassVar[float | None] = None
    """Seconds between `maintain` runs for each source of this provider (None: never)."""

    async def maintain(self, source_id: str, source: SourceSettings, http: Sender) -> str:
        """Periodic upkeep of one source (renewing a watch); returns what it did, for the log."""
        return "nothing to do"


def dedupe_key(connector: Connector, envelope: Envelope) -> str:
    """The spool's dedupe key for a request (the Submission keeps the provider's own event id)."""
    key = (
        f"{envelope.form_id}/{envelope.event_id}"
        if connector.event_ids_per_form and envelope.form_id
        else envelope.event_id
    )
    return storable_text(key)


def response_key(connector: Connector, envelope: Envelope) -> str | None:
    """The spool's second dedupe key: the response a submission event is about, if the webhook says.

    Per form where the provider numbers per form, like `dedupe_key`; None for tests and ignored
    events, so that an update to a response never stands in for the response itself.
    """
    if envelope.kind != "submission" or not envelope.response_id:
        return None
    key = (
        f"{envelope.form_id}/{envelope.response_id}"
        if connector.event_ids_per_form and envelope.form_id
        else envelope.response_id
    )
    return storable_text(key)


def storable_text(text: str) -> str:
    """`text` as both stores can hold it, different texts kept different.

    A JSON id may hold a lone UTF-16 surrogate ("Ren\ud83d"), which SQLite cannot store as text,
    or a NUL ("\u0000"), which PostgreSQL's text refuses: each is written as its escape, so such
    an id keeps a key of its own (U+FFFD would merge "\ud83d" and "\ud83e"); only an id that
    spells the escape out itself could meet it.
    """
    if text.isascii() and "\x00" not in text:
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def require_secrets(source: SourceSettings) -> Sequence[str]:
    if not source.secrets:
        raise VerificationFailed("source has no secret configured")
    return source.secrets


def send_test_request(url: str, payload: Any, content_type: str = "application/json") -> InboundRequest:
    """An unsigned send-test POST of `payload` as JSON (a connector that needs a token puts it in `url`)."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    headers = {"content-type": content_type, "user-agent": "hookhub-send-test"}
    return InboundRequest(method="POST", url=url, headers=headers, body=body)
