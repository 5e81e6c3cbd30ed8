"""What reconciliation needs from a provider: its responses API, and whether its webhook is healthy.

Providers drop webhooks in ways no receiver can see (a Typeform webhook disabled after failures,
a Jotform webhook deleted while the form is edited). A connector whose provider has a documented
list endpoint sets `Connector.reconciler` to a `Reconciler`; hub/reconcile/ then lists the
form's responses in a time window, compares them with the spool by the provider's response
identity, and stores the missing ones (metadata.origin `reconciled` or `imported`).

The identity is the key of the whole feature: a response listed here and a webhook for the same
response must carry the same `response_id` (the webhook's in `Envelope.response_id`), so that
whichever comes second is a duplicate. Each provider's docs page states its rule.

Every request goes through the `Sender` (hub/sender.py) and through `get_json` below, which
retries 429 and 5xx answers (honouring Retry-After) and turns the rest into `ReconcileFailed`.
"""

from __future__ import annotations

import abc
import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit

import tenacity
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from hub.alerts.durations import Duration
from hub.sender import Request, TransportFailed
from hub.submission import Submission

if TYPE_CHECKING:
    from connectors.base import SourceSettings
    from hub.sender import Answer, Sender

DAY = 86400.0


class ReconcileFailed(Exception):
    """The provider's API could not be read; the message says why and what to do.

    `permanent`: trying again cannot help until the admin acts (a revoked or expired token, a
    form that does not exist): the run stops and says so instead of retrying.
    """

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ReconcileSettings(BaseModel):
    """`reconcile:` on a source. Each provider's `Reconciler.Settings` subclasses this with what its
    API needs (credentials, form ids, `api_base_url`); credentials come from the environment
    (`${TYPEFORM_TOKEN}`) and are `SecretStr`, so they never appear in a repr or a log."""

    model_config = ConfigDict(extra="forbid")

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


# -- calling an API ------------------------------------------------------------------------

RETRIES = 5
"""Tries of one call on 429, 5xx or no answer before the run gives up (it is tried again next run)."""
MAX_WAIT = 120.0
"""The longest Retry-After honoured inside a run; a longer one ends the run (retried next time)."""


class _TryAgain(Exception):
    def __init__(self, message: str, wait: float | None) -> None:
        super().__init__(message)
        self.wait = wait


def retry_after(answer: Answer) -> float | None:
    """Seconds in a Retry-After header given as a number (the form these APIs use), else None."""
    raw = answer.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def _wait(state: tenacity.RetryCallState) -> float:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    if isinstance(error, _TryAgain) and error.wait is not None:
        return error.wait
    return min(2.0 ** (state.attempt_number - 1), 30.0)


async def get_json(
    http: Sender,
    url: str,
    *,
    what: str,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    sleep: Sleep = asyncio.sleep,
    denied: str = "the API token was refused (expired, revoked or without the needed scope)",
    not_found: str | None = None,
) -> Any:
    """GET `url` and return its JSON body; `what` names the call in messages (`list responses of form X`).

    429 and 5xx answers and failed connections are retried (RETRIES tries; a numeric Retry-After is
    waited for, up to MAX_WAIT); 401/403 raise a permanent `ReconcileFailed` saying `denied`, 404
    one saying `not_found`; any other answer, or a body that is not JSON, a `ReconcileFailed`.
    Nothing of the URL, headers or body is quoted: URLs may carry keys (Jotform's `apiKey`).
    """
    request = Request("GET", url, headers=dict(headers or {}), params=params, max_bytes=16 * 1024 * 1024)

    async def once() -> Any:
        try:
            answer = await http.send(request)
        except TransportFailed as exc:
            raise _TryAgain(f"{what}: {exc.reason}", None) from None
        if answer.status == 429 or answer.status >= 500:
            wait = retry_after(answer)
            if wait is not None and wait > MAX_WAIT:
                raise ReconcileFailed(f"{what}: rate limited for {wait:.0f} s; the next run tries again")
            raise _TryAgain(f"{what}: HTTP {answer.status}", wait)
        if answer.status in (401, 403):
            raise ReconcileFailed(f"{what}: HTTP {answer.status}: {denied}", permanent=True)
        if answer.status == 404:
            raise ReconcileFailed(f"{what}: HTTP 404: {not_found or 'not found'}", permanent=True)
        if answer.status >= 300:
            raise ReconcileFailed(f"{what}: HTTP {answer.status}: {answer.text[:200]}")
        if answer.truncated:
            raise ReconcileFailed(f"{what}: the answer was larger than 16 MiB")
        try:
            return answer.json()
        except ValueError:
            raise ReconcileFailed(f"{what}: the answer is not JSON") from None

    try:
        async for attempt in tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(_TryAgain),
            stop=tenacity.stop_after_attempt(RETRIES),
            wait=_wait,
            sleep=sleep,
            reraise=True,
        ):
            with attempt:
                return await once()
    except _TryAgain as exc:
        raise ReconcileFailed(f"{exc} (gave up after {RETRIES} tries; the next run tries again)") from None
    raise AssertionError("unreachable: tenacity either returns or raises")


# -- shared checks of a `reconcile:` block ---------------------------------------------------
# Each provider's Settings keeps its own rules (a token prefix, an id's alphabet, a version suffix
# to drop) and calls these for what every provider checks alike, so that the same mistake gets the
# same answer whichever provider the source is.

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
"""Hosts an `api_base_url` may name over plain http: a test's fake API on this machine."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BEARER = re.compile(r"bearer\s", re.IGNORECASE)


def api_base_url(value: str, example: str, name: str = "api_base_url") -> str:
    """`value` stripped and without its trailing `/`, refused (ValueError naming `example`) unless it
    is a plain http(s) URL with a host: no query, fragment or user:password@, and https unless the
    host is loopback. The API's credentials are sent to it, so a typo must fail at config load, not
    send them in clear or somewhere else."""
    text = value.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        host, _ = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"{name} is not a URL such as {example}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"{name} must be an https URL such as {example}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(
            f"{name} must be a plain URL such as {example}: no query, fragment or user:password@"
        )
    if parts.scheme == "http" and host not in LOOPBACK:
        raise ValueError(
            f"{name} must use https, as in {example}: the credentials are sent to it "
            "(plain http is allowed only to localhost, for tests)"
        )
    return text


def bare_url(url: str) -> str:
    """scheme://host[:port]/path of `url`, lower-case, without a trailing `/` or a default port.

    No user info, query or fragment: a webhook URL's query may hold the source's token, and its
    user info another service's password, so this is the only form of a URL a message may show
    (and then only the hub's own: another service's path can be its secret, see `url_host`)."""
    try:
        parts = urlsplit(url.strip())
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:  # a port that is no number, a broken [IPv6]: compared and shown without them
        parts, host, port = urlsplit(""), "", None
    if ":" in host:
        host = f"[{host}]"
    scheme = parts.scheme.lower()
    shown_port = f":{port}" if port is not None and port != _DEFAULT_PORTS.get(scheme) else ""
    return f"{scheme}://{host}{shown_port}{parts.path.rstrip('/')}"


def same_endpoint(url: str, expected: str) -> bool:
    """Whether a webhook's `url` sends to `expected` (the source's public URL): scheme, host, port and
    path alike; query, fragment and user info are ignored (the query carries the source's token, which
    a provider may show masked or the hub may not know). An empty URL matches nothing."""
    if not url.strip() or not expected.strip():
        return False
    return bare_url(url) == bare_url(expected)


def url_host(url: object) -> str:
    """The host of a webhook URL that is not the hub's, to name it in a message; `?` if there is none.

    Only the host: the path of another service's webhook is often its secret (Zapier's
    /hooks/catch/<id>/<key>/, Make's /<key>), and an alert is read by people who must not get it."""
    if not isinstance(url, str):
        return "?"
    try:
        return (urlsplit(url.strip()).hostname or "?").lower()
    except ValueError:
        return "?"


def secret_text(value: SecretStr | str, name: str, env_hint: str) -> str:
    """A credential from the config, stripped, after the checks every provider makes alike: not
    empty, not an unexpanded `${...}` reference, not prefixed with `Bearer `, one word. A provider
    checks its own shape (a prefix, a length) on what this returns. Messages never quote the value;
    `env_hint` is the variable the docs suggest (`TYPEFORM_TOKEN`), to say where it comes from."""
    text = (value.get_secret_value() if isinstance(value, SecretStr) else value).strip()
    if not text:
        raise ValueError(f"{name} is empty (is its environment variable, e.g. {env_hint}, unset?)")
    if "${" in text:
        raise ValueError(
            f"{name} holds an unexpanded ${{...}} reference: set the environment variable it names "
            f"(e.g. {env_hint}) where hookhub runs"
        )
    if _BEARER.match(text):
        raise ValueError(f"{name} must be the token alone, without 'Bearer '")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(f"{name} must be one line and must not contain spaces or line breaks")
    return text


def id_text(value: object, name: str, shape: re.Pattern[str], hint: str) -> str:
    """A provider's id (form, survey, site) from the config: stripped, a number taken as its digits,
    refused unless it matches `shape` all through, with `hint` saying where to find it ("must be
    <hint>"). A pasted share link then fails at config load rather than as a 404 at the first run."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not shape.fullmatch(text):
        raise ValueError(f"{name} must be {hint}")
    return text


def hosts(urls: Iterable[object]) -> str:
    """The hosts of webhook URLs that are not the hub's, sorted, for a message (see `url_host`)."""
    return ", ".join(sorted({url_host(u) for u in urls})) or "no URL"


def url_health(urls: list[str], expected_url: str | None, where: str, how_to_add: str) -> WebhookHealth:
    """What a provider's list of webhook URLs says where it has no enabled flag (Jotform, Webflow):
    missing, elsewhere or ok. `where` names the form or site, `how_to_add` tells the admin how to
    create the webhook again."""
    urls = [u for u in urls if u.strip()]
    if not urls:
        return WebhookHealth("missing", f"{where} has no webhook: {how_to_add}")
    if expected_url is None:
        return WebhookHealth(
            "ok", f"{where} has {len(urls)} webhook(s) (where they point is not checked: no public URL known)"
        )
    if any(same_endpoint(u, expected_url) for u in urls):
        return WebhookHealth("ok", f"{where} has a webhook to {bare_url(expected_url)}")
    return WebhookHealth(
        "elsewhere",
        f"{where} has no webhook to {bare_url(expected_url)} (its webhooks go to {hosts(urls)})",
    )


# -- shared reading of a listing ---------------------------------------------------------------

Read = ListedResponse | UnreadableResponse
"""One listed item, as `read_response` gives it."""


def problem_text(error: BaseException, limit: int = 300) -> str:
    """What went wrong with one response, for its dead letter: the exception's message (its type
    where it has none), cut to `limit` characters. Normalization errors quote the payload's shape,
    never the request's credentials."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_response(response_id: str, submitted_at: datetime, normalize: Callable[[], Submission]) -> Read:
    """The response normalized, or, where `normalize` fails, an `UnreadableResponse` saying why.

    One odd response (a field of an unexpected type, an API change in one item) must neither stop
    the run nor hold the watermark back for ever: its identity and time are known, so the hub keeps
    it as a dead letter and the rest of the page is stored."""
    try:
        submission = normalize()
    except Exception as exc:  # noqa: BLE001 - any failure of this one item is its problem, not the run's
        return UnreadableResponse(response_id, submitted_at, problem_text(exc))
    return ListedResponse(response_id, submitted_at, submission)


def page_of(read: Iterable[Read], total: int | None = None) -> ResponsePage:
    """A `ResponsePage` of what was read, the readable and the unreadable apart, in listing order."""
    items = list(read)
    return ResponsePage(
        [r for r in items if isinstance(r, ListedResponse)],
        total,
        [r for r in items if isinstance(r, UnreadableResponse)],
    )
