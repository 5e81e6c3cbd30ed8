"""uvicorn's httptools HTTP protocol with the limits it lacks: head size, read timeouts, a connection cap.

httptools (uvicorn[standard]) buffers a request head of any size and waits for it, and for a
body, forever; uvicorn accepts connections until the process runs out of file descriptors.
A probe froze the hub with one 256 MB header, kept connections open by trickling bytes and
made /healthz fail with 19,980 idle connections. Per connection this protocol:

- answers 431 (414 for a request target alone over the limit) when the request line and
  headers exceed `max_header_bytes` or `max_headers`, for every route, before the app runs;
- answers 408 when a head is not complete `header_timeout` seconds after its first byte (a new
  connection that sends nothing is closed silently after the same time), or a body makes no
  progress for `body_idle_timeout` or is not complete within `body_timeout`;
- refuses a connection at once (503, closed) while `max_connections` are open, with a
  WARNING at most every 10 s saying how many were refused.

After a 4xx it stops answering but drains what the client still sends for up to
`LINGER_SECONDS` before closing, so that a client still writing reads the answer instead of
a connection reset. The keep-alive idle timeout stays uvicorn's.

The request path pays a clock read and a few attribute writes per request: timers are
re-armed lazily (one per connection, moved only when it fires early), not set and cancelled
per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from hub.config.models import ServerConfig

log = logging.getLogger("hookhub.receiver")

LINGER_SECONDS = 2.0
LOG_INTERVAL = 10.0

# Where the parser is in the current request.
_HEAD = 0  # waiting for, or reading, a request line and headers
_BODY = 1  # headers done, body not complete
_APP = 2  # request complete: the app answers, then uvicorn's keep-alive timeout applies
_DONE = 3  # answered by this module; draining until closed


@dataclass(frozen=True)
class EdgeLimits:
    """Per-connection limits of the HTTP server; `server:` in connectors.yaml, read at start."""

    max_connections: int = 1000
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_idle_timeout: float = 10.0
    body_timeout: float = 60.0

    body_first_check: float = field(init=False)
    """When the watchdog first looks at a body: the earlier of its two timeouts."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "body_first_check", min(self.body_idle_timeout, self.body_timeout))

    @classmethod
    def from_config(cls, server: ServerConfig) -> EdgeLimits:
        return cls(
            max_connections=server.max_connections,
            max_header_bytes=server.max_header_bytes,
            max_headers=server.max_headers,
            header_timeout=server.header_timeout,
            body_idle_timeout=server.body_idle_timeout,
            body_timeout=server.body_timeout,
        )


class ThrottledLog:
    """Counts events and logs at most one line per `interval` seconds, with the count since the last."""

    def __init__(self, level: int, message: str, event: str, interval: float = LOG_INTERVAL) -> None:
        self.level, self.message, self.event, self.interval = level, message, event, interval
        self._count = 0
        self._last = -interval

    def hit(self, **extra: object) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= self.interval:
            log.log(self.level, self.message, extra={"event": self.event, "count": self._count, **extra})
            self._count, self._last = 0, now


CAP_LOG = ThrottledLog(
    logging.WARNING, "connection cap reached: new connections are refused with 503", "connection_cap"
)
LIMIT_LOG = ThrottledLog(logging.INFO, "request refused at the HTTP layer", "request_refused")


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request this module has answered."""


def protocol_class(limits: EdgeLimits) -> type[HubHttpProtocol]:
    """A protocol class for uvicorn's `http=` bound to `limits`."""
    return type("HubHttpProtocol", (HubHttpProtocol,), {"limits": limits})


class HubHttpProtocol(HttpToolsProtocol):
    limits: ClassVar[EdgeLimits] = EdgeLimits()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._phase = _HEAD
        self._head_bytes = 0  # received since the last complete head: an upper bound of this head's size
        self._started = 0.0  # when the current phase began (loop time)
        self._progress = 0.0  # last body bytes seen
        self._watchdog: asyncio.TimerHandle | None = None
        self._refused = False

    # --- connection ----------------------------------------------------------------------------

    # uvicorn's own connection_made narrows BaseProtocol's BaseTransport the same way (and ignores it too).
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            CAP_LOG.hit(limit=self.limits.max_connections)
            transport.write(
                _answer(
                    503,
                    "service unavailable",
                    "too many connections; retry later",
                    self.server_state.default_headers,
                    retry_after=True,
                )
            )
            transport.close()
            return
        super().connection_made(transport)
        self._started = self.loop.time()
        self._arm(self._started + self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, with the head counted and answers given here not sent twice.
        if self._phase == _DONE:
            return  # draining after our answer
        self._unset_keepalive_if_required()
        if self._phase == _BODY:
            self._progress = self.loop.time()
        else:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self._phase == _DONE:
                return
            self._parser_error()
            return
        except httptools.HttpParserError:
            self._parser_error()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._phase == _HEAD and self._head_bytes > self.limits.max_header_bytes:
            # The head is still incomplete and already over the limit: refuse before buffering more.
            self._refuse(self._head_status(), "request head too large")

    def _parser_error(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    # --- parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase != _HEAD:  # a keep-alive connection's next request: its head timer starts now
            self._phase = _HEAD
            self._started = self.loop.time()
            self._arm(self._started + self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        limits = self.limits
        if len(self.headers) > limits.max_headers or self._head_bytes > limits.max_header_bytes:
            self._check_head()  # raises _Refused if the head is over a limit
        self._head_bytes = 0
        self._phase = _BODY
        self._started = self._progress = now = self.loop.time()
        self._arm(now + limits.body_first_check)
        super().on_headers_complete()

    def _check_head(self) -> None:
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            self._refuse(431, f"more than {limits.max_headers} request headers")
            raise _Refused()
        # The count includes any body bytes that came in the same read as the head; this does not.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > limits.max_header_bytes:
            self._refuse(self._head_status(), "request head too large")
            raise _Refused()

    def on_message_complete(self) -> None:
        self._phase = _APP
        super().on_message_complete()

    # --- limits --------------------------------------------------------------------------------

    def _head_status(self) -> int:
        # `url` is set by uvicorn at a request's first byte; a head of only blank lines has none.
        return 414 if len(getattr(self, "url", b"")) > self.limits.max_header_bytes else 431

    def _arm(self, deadline: float) -> None:
        """Make sure the watchdog fires by `deadline` (it re-arms itself if it fires early)."""
        watchdog = self._watchdog
        if watchdog is not None:
            if watchdog.when() <= deadline:
                return  # the common case: no timer is set or cancelled per request
            watchdog.cancel()
        self._watchdog = self.loop.call_at(deadline, self._on_watchdog)

    def _on_watchdog(self) -> None:
        self._watchdog = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        limits = self.limits
        if self._phase == _HEAD:
            deadline = self._started + limits.header_timeout
            if now >= deadline:
                if self._head_bytes or self.headers:
                    self._refuse(408, f"request headers not complete within {limits.header_timeout:g} s")
                else:  # an idle connection that never sent a request
                    LIMIT_LOG.hit(status=0, reason="idle connection closed")
                    self.transport.close()
                return
        elif self._phase == _BODY:
            if self.flow.read_paused:  # the app has not read what came: not the client's delay
                self._progress = now
            deadline = min(self._started + limits.body_timeout, self._progress + limits.body_idle_timeout)
            if now >= deadline:
                why = (
                    f"no body bytes for {limits.body_idle_timeout:g} s"
                    if now >= self._progress + limits.body_idle_timeout
                    else f"body not complete within {limits.body_timeout:g} s"
                )
                self._refuse(408, why)
                return
        elif self._phase == _DONE:
            self.transport.close()  # the linger is over
            return
        else:
            return  # answering or idle between requests: the next request arms it again
        self._arm(deadline)

    def _refuse(self, status: int, reason: str) -> None:
        """Answer `status` unless the app has started answering, then drain and close."""
        LIMIT_LOG.hit(status=status, reason=reason)
        cycle = self.cycle
        answered = cycle is not None and self._phase == _BODY and cycle.response_started
        self._phase = _DONE
        if cycle is not None and not cycle.response_complete:
            # The app (if it runs) sees a disconnect and stops waiting for the body.
            cycle.disconnected = True
            cycle.message_event.set()
        if answered:
            self.transport.close()
            return
        error = {408: "request timeout", 414: "uri too long", 431: "request header fields too large"}[status]
        self.transport.write(_answer(status, error, reason, self.server_state.default_headers))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.flow.resume_reading()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = self.loop.call_later(LINGER_SECONDS, self._on_watchdog)


def _answer(
    status: int,
    error: str,
    detail: str,
    default_headers: list[tuple[bytes, bytes]] | None = None,
    retry_after: bool = False,
) -> bytes:
    body = orjson.dumps({"error": error, "detail": detail})
    lines = [STATUS_LINE[status]]
    for name, value in default_headers or ():
        lines.append(name + b": " + value + b"\r\n")
    lines.append(b"content-type: application/json\r\n")
    lines.append(b"content-length: " + str(len(body)).encode("ascii") + b"\r\n")
    if retry_after:
        lines.append(b"retry-after: 5\r\n")
    lines.append(b"connection: close\r\n\r\n")
    return b"".join(lines) + body
