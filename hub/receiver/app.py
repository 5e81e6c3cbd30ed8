"""Starlette app: POST /hooks/{source_id}, /healthz, /readyz, /metrics.

Order on the request path is fixed: source → body (size-limited) → verify → content
type → envelope → durable spool write → answer. Nothing is parsed before it is verified
and nothing is answered 2xx before it is committed. An unknown source is read and
answered like a failed verification (hub/receiver/access.py: what a caller may learn).

The webhook endpoint is a plain ASGI app rather than a Starlette request handler, and
`HubApp` hands POST /hooks/<id> to it before Starlette's middleware and router. It is
the one hot path, and the Request/JSONResponse objects and the layers that each wrap
`send` cost ~50 µs of CPU per request: under bench/loadgen.py the bare Starlette endpoint
took ~120 µs per request, the same endpoint as plain ASGI ~75 µs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ExceptionHandler, Lifespan, Receive, Scope, Send

from connectors.base import (
    Envelope,
    InboundRequest,
    UnsupportedPayload,
    VerificationFailed,
    dedupe_key,
    response_key,
)
from hub.console.app import console_routes
from hub.health import DeliveryHealth
from hub.metrics.collector import DeliveryCollector
from hub.metrics.readiness import delivery_status
from hub.metrics.snapshot import Snapshot, SnapshotCache
from hub.receiver.access import STATUS_FORBIDDEN_DETAIL, UNVERIFIED_DETAIL, bearer_matches, is_loopback
from hub.receiver.body import BadContentLength, BodyTooLarge, ClientGone, read_limited
from hub.receiver.metrics import ReceiverMetrics
from hub.receiver.protocol import EdgeLimits
from hub.receiver.request_parts import redacted_url, request_headers, stored_headers, verification_url
from hub.runtime import ConfigHolder, PreparedSource
from hub.spool.ids import new_id
from hub.spool.writer import SpoolRecord, SpoolUnavailable, SpoolWriter
from hub.store import StoreError

log = logging.getLogger("hookhub.receiver")


@dataclass
class Receiver:
    config: ConfigHolder
    spool: SpoolWriter
    clock: Callable[[], float] = time.time
    metrics: ReceiverMetrics = field(default_factory=ReceiverMetrics)
    health: DeliveryHealth | None = None
    """The dispatcher's delivery health, if this hub runs one (set by the Hub)."""
    snapshots: SnapshotCache = field(init=False)
    """The spool's delivery numbers, read at most once a second for /metrics and /readyz."""

    def __post_init__(self) -> None:
        # Wall time, not `clock`: tests pin `clock` to a fixture's instant so signatures verify.
        self.snapshots = SnapshotCache(self.spool.location)
        self.metrics.registry.register(
            DeliveryCollector(
                self.snapshots,
                destinations=lambda: self.config.current.destinations,
                config=self.config,
                health=lambda: self.health,
                clock=time.time,
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app for POST /hooks/{source_id} (Starlette routes to an instance as an app)."""
        started = time.perf_counter()
        source_id: str = scope["path_params"]["source_id"]
        source = self.config.sources.get(source_id)
        headers = request_headers(scope)
        # An unknown source is read and refused like a known one whose verification fails, so
        # an anonymous caller cannot tell which source ids exist (see docs/security.md).
        limit = source.max_body_bytes if source is not None else self.config.current.server.max_body_bytes
        label = source_id if source is not None else "-"
        try:
            body = await read_limited(receive, headers.get("content-length"), limit)
        except BodyTooLarge as exc:
            return await self._reject(scope, send, 413, label, "payload too large", str(exc))
        except BadContentLength as exc:
            return await self._reject(scope, send, 400, label, "bad request", str(exc))
        except ClientGone:
            return None
        if source is None:
            return await self._reject(
                scope, send, 401, label, "unauthorized", f"no source {source_id[:80]!r} is configured"
            )

        inbound = InboundRequest(
            method=scope["method"],
            url=verification_url(scope, headers, source),
            headers=headers,
            body=body,
        )
        received_at = self.clock()
        try:
            source.connector.verify(inbound, source.config, received_at)
        except VerificationFailed as exc:
            return await self._reject(scope, send, 401, source_id, "unauthorized", str(exc))
        except Exception as exc:  # a connector bug must not answer an anonymous caller with a 500
            log.exception("connector verify crashed", extra={"event": "connector_error", "source": source_id})
            return await self._reject(
                scope, send, 401, source_id, "unauthorized", f"verify failed: {type(exc).__name__}"
            )
        # After verification, so that only the provider learns the source's media types.
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type not in source.connector.content_types:
            accepted = ", ".join(sorted(source.connector.content_types))
            return await self._reject(
                scope,
                send,
                415,
                source_id,
                "unsupported media type",
                f"{source.connector.title} sends {accepted}; got {media_type or 'no Content-Type'}",
            )

        envelope = _envelope(source, inbound)
        record = SpoolRecord(
            id=new_id(received_at),
            received_at=received_at,
            source=source_id,
            provider=source.connector.provider,
            event_id=dedupe_key(source.connector, envelope),
            response_key=response_key(source.connector, envelope),
            kind=envelope.kind,
            note=envelope.note,
            method=inbound.method,
            url=redacted_url(inbound.url, source.credential_query),
            headers=stored_headers(headers, source.stored_headers),
            body=body,
        )
        try:
            stored = await self.spool.store(record)
        except SpoolUnavailable as exc:
            log.error(
                "spool write failed",
                extra={"event": "spool_unavailable", "source": source_id, "error": str(exc)},
            )
            self.metrics.count(source_id, "spool_error")
            return await _answer(
                send,
                503,
                {"error": "temporarily unavailable", "detail": "could not store the request; retry later"},
                extra_headers=[(b"retry-after", b"5")],
            )
        if stored.duplicate:
            outcome = "duplicate"
        elif envelope.kind != "submission":
            outcome = envelope.kind
        else:
            outcome = "accepted"
        self.metrics.count(source_id, outcome)
        self.metrics.observe_latency(time.perf_counter() - started)
        answer: dict[str, object] = {"status": outcome, "id": stored.id}
        if envelope.note and not stored.duplicate:
            answer["note"] = envelope.note
        await _answer(send, 200, answer)
        # After the answer, so the line costs the provider no latency; no answers in it, only ids.
        log.info(
            "webhook %s",
            outcome,
            extra={"event": "received", "id": stored.id, "source": source_id, "event_id": record.event_id},
        )

    async def _reject(
        self, scope: Scope, send: Send, status: int, source_id: str, error: str, detail: str
    ) -> None:
        self.metrics.count(source_id, str(status))
        log.info(
            "webhook rejected",
            extra={"event": "rejected", "status": status, "source": source_id, "reason": detail},
        )
        if status == 401 and not is_loopback(scope):
            # The reason would tell a remote caller whether the source exists and how it is
            # verified; the log above has it for the admin. Loopback callers (send-test) see it.
            detail = UNVERIFIED_DETAIL
        await _answer(send, status, {"error": error, "detail": detail})

    async def probe_source(self, request: Request) -> Response:
        """HEAD /hooks/<id>: SurveyMonkey checks the URL answers before using it. 200 for any id,
        so the probe cannot be used to enumerate sources."""
        return Response(status_code=200)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        problems: list[str] = []
        try:
            await asyncio.wait_for(self.spool.probe(), timeout=2.0)
        except (TimeoutError, SpoolUnavailable) as exc:
            problems.append(f"spool not writable: {str(exc) or 'timed out'}")
        body: dict[str, object] = {"status": "ready" if not problems else "not ready"}
        if self._may_see_status(request):
            # Config errors name files, lines and destinations: for the admin only.
            body["sources"] = len(self.config.sources)
            body["config_loaded_at"] = self.config.loaded_at
            if self.config.last_error:
                body["config_error"] = self.config.last_error.splitlines()
            if problems:
                body["problems"] = problems
            body["delivery"] = delivery_status(await self._snapshot(), self.health, time.time())
        return JSONResponse(body, status_code=200 if not problems else 503)

    async def _snapshot(self) -> Snapshot | None:
        """The spool's delivery numbers (at most a second old), or None if the spool is too busy."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.snapshots.refresh), timeout=2.0)
        except StoreError + (TimeoutError,) as exc:
            log.warning("spool numbers unavailable", extra={"event": "snapshot_failed", "error": str(exc)})
            return None

    async def metrics_endpoint(self, request: Request) -> Response:
        if not self._may_see_status(request):  # the labels name every source
            return JSONResponse({"error": "forbidden", "detail": STATUS_FORBIDDEN_DETAIL}, status_code=403)
        await self._snapshot()  # the collector serves what this read; the receiver's own counts need none
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def _may_see_status(self, request: Request) -> bool:
        return is_loopback(request.scope) or bearer_matches(
            request.headers.get("authorization"), self.config.current.server.status_token
        )


def _envelope(source: PreparedSource, inbound: InboundRequest) -> Envelope:
    """The connector's envelope, or a body-hash key when the payload is not of its shape.

    A verified request is never refused for its shape: it is stored, and the pipeline
    dead-letters it with the connector's reason, where an admin can see and replay it.
    """
    try:
        return source.connector.envelope(inbound)
    except UnsupportedPayload as exc:
        note = f"unrecognized payload: {exc}"
    except Exception as exc:
        log.exception("connector envelope crashed", extra={"event": "connector_error", "source": source.id})
        note = f"connector error: {type(exc).__name__}"
    return Envelope(event_id=f"sha256:{inbound.body_sha256()}", kind="submission", note=note)


def _encode_answer(content: dict[str, object]) -> bytes:
    # JSONResponse's output (compact, UTF-8) at a tenth of json's cost; answers hold only text.
    return orjson.dumps(content)


async def _answer(
    send: Send,
    status: int,
    content: dict[str, object],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """What JSONResponse would send, without building one."""
    body = _encode_answer(content)
    headers = [(b"content-length", str(len(body)).encode("latin-1")), (b"content-type", b"application/json")]
    if extra_headers:
        headers += extra_headers
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


class HubApp(Starlette):
    """Starlette, except that POST /hooks/<id> skips the middleware and router on its way to
    the receiver. Everything else (other methods and paths, lifespan) goes through Starlette,
    whose own /hooks/{source_id} route (same receiver) answers e.g. 405 to a GET."""

    def __init__(
        self,
        receiver: Receiver,
        routes: Sequence[BaseRoute],
        exception_handlers: Mapping[Any, ExceptionHandler],
        lifespan: Lifespan[HubApp] | None = None,
    ) -> None:
        super().__init__(routes=routes, exception_handlers=exception_handlers, lifespan=lifespan)
        self._receiver = receiver

    def edge_limits(self) -> EdgeLimits:
        """The HTTP-layer limits of the config in force (the server reads them once, at start)."""
        return EdgeLimits.from_config(self._receiver.config.current.server)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path: str = scope["path"]
            if path.startswith("/hooks/") and len(path) > 7 and "/" not in path[7:]:
                scope["app"] = self
                scope["path_params"] = {"source_id": path[7:]}
                return await self._receiver(scope, receive, send)
        await super().__call__(scope, receive, send)


def create_app(receiver: Receiver, lifespan: Lifespan[HubApp] | None = None) -> HubApp:
    routes = [
        Route("/hooks/{source_id}", receiver, methods=["POST"]),
        Route("/hooks/{source_id}", receiver.probe_source, methods=["HEAD"]),
        Route("/healthz", receiver.healthz, methods=["GET"]),
        Route("/readyz", receiver.readyz, methods=["GET"]),
        Route("/metrics", receiver.metrics_endpoint, methods=["GET"]),
        *console_routes(receiver),  # /admin and the message links' /submissions/<id> (hub/console)
    ]
    return HubApp(receiver, routes=routes, exception_handlers={HTTPException: _http_error}, lifespan=lifespan)
