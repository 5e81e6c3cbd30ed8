"""`hookhub serve`: config + spool + receiver (+ dispatcher) under one uvicorn process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, runtime_checkable

import uvicorn
from starlette.applications import Starlette

from hub.cpu_priority import Priority
from hub.health import DeliveryHealth
from hub.receiver.app import HubApp, Receiver, create_app
from hub.receiver.protocol import EdgeLimits, protocol_class
from hub.roles import MaintenanceRole
from hub.runtime import ConfigHolder
from hub.spool.files import ensure_private_dir
from hub.spool.schema import SPOOL_FILE, Durability
from hub.spool.writer import SpoolWriter
from hub.store.location import SqliteStore, Store

log = logging.getLogger("hookhub.server")

# Hub's default store: the SQLite file in its data dir (a marker, replaced in __post_init__).
_IN_DATA_DIR: Store = SqliteStore(Path(SPOOL_FILE))
BackgroundTask = Callable[["Hub"], Coroutine[Any, Any, None]]
# File descriptors beyond server.max_connections: spool, delivery workers, outgoing connections.
FD_MARGIN = 1024
LISTEN_BACKLOG = 2048  # uvicorn's default


class Service(Protocol):
    """Something that runs beside the receiver in its own thread or process (the dispatcher)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@runtime_checkable
class EarlyStopping(Protocol):
    def begin_stop(self) -> None:
        """Start stopping now, without blocking (called from a signal handler); `stop` follows."""


@dataclass
class Hub:
    """Everything one running hub owns; tests build one and serve it on a loopback port."""

    config: ConfigHolder
    data_dir: Path
    durability: Durability = "full"
    clock: Callable[[], float] = time.time
    watch_config: bool = True
    background: list[BackgroundTask] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    freeze_heap: bool = False
    """Move what startup allocated out of the cyclic GC's reach (set by `serve`, not by tests)."""
    port: int | None = None
    """The port `serve` listens on, recorded in the dispatcher's lease (None in tests)."""
    health: DeliveryHealth = field(default_factory=DeliveryHealth)
    """Kept current by the dispatcher; read by the receiver's endpoints."""
    store: Store = _IN_DATA_DIR
    """The ledger: by default the SQLite file in the data dir; a PostgreSQL store is shared by a cluster."""
    delivery_priority: Priority = "idle"
    """How delivery yields the CPU to receiving: the delivery process `serve` starts and the
    intake's mover (hub/cpu_priority.py)."""
    receives: bool = True
    """Whether this process takes webhooks. False in the delivery process `serve` starts: its
    receiver writes the spool, and a second spool writer there (with its own intake mover and
    checkpoints, hub/spool/intake.py) would compete with it for the spool's and the intake's locks."""
    spool: SpoolWriter = field(init=False)
    receiver: Receiver = field(init=False)
    maintenance: MaintenanceRole = field(init=False)
    """Whether this process runs the cluster's upkeep and alerts: the one hub of a SQLite data
    dir always; on PostgreSQL the dispatcher that holds the `maintenance` lease."""

    def __post_init__(self) -> None:
        ensure_private_dir(self.data_dir)  # 0700: the spool holds every raw submission
        if self.store is _IN_DATA_DIR:
            self.store = SqliteStore(self.data_dir / SPOOL_FILE)
        shared = self.store.dialect != "sqlite"
        self.maintenance = MaintenanceRole(held=not shared, shared=shared)
        self.spool = SpoolWriter(
            self.store, self.durability, clock=self.clock, background=self.delivery_priority
        )
        self.receiver = Receiver(config=self.config, spool=self.spool, clock=self.clock, health=self.health)

    @property
    def spool_path(self) -> Path:
        """The SQLite spool file (where a PostgreSQL hub would keep one, unused)."""
        return self.store.path or self.data_dir / SPOOL_FILE

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self.receives:
            self.spool.start()
        for service in self.services:
            service.start()
        tasks = [
            asyncio.create_task(job(self), name=getattr(job, "__name__", "job")) for job in self.background
        ]
        if self.watch_config:
            tasks.append(asyncio.create_task(_watch_config(self.config), name="config-watch"))
        if self.freeze_heap:
            _freeze_startup_heap()
        log.info(
            "hub started",
            extra={"event": "started", "sources": sorted(self.config.sources), "store": self.store.key},
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for service in reversed(self.services):
                # Off the event loop: a service may wait for in-flight flow runs to finish.
                await asyncio.to_thread(service.stop)
            self.spool.stop()
            self.receiver.snapshots.close()
            log.info("hub stopped", extra={"event": "stopped"})

    def begin_stop(self) -> None:
        """A stop signal came: services that take long to stop start now (see _HubServer)."""
        for service in self.services:
            if isinstance(service, EarlyStopping):
                service.begin_stop()

    def app(self) -> HubApp:
        return create_app(self.receiver, lifespan=self.lifespan)


def _freeze_startup_heap() -> None:
    # A full collection walks every object the process holds: with Prefect imported that is
    # ~130,000 objects and ~50 ms with the event loop stopped, on the receiver's p99.
    # Modules, classes and config live as long as the process, so the collector need not
    # look at them again; what requests allocate later is still collected as usual.
    gc.collect()
    gc.freeze()


async def _watch_config(holder: ConfigHolder) -> None:
    """Reload connectors.yaml when it changes; a broken edit keeps the old config serving."""
    from watchfiles import awatch

    # Watch the directory: editors replace files by rename, which a file watch would lose.
    async for changes in awatch(holder.path.parent, debounce=300, recursive=False):
        if any(Path(path).name == holder.path.name for _, path in changes):
            holder.reload()


def uvicorn_config(
    app: Starlette, host: str, port: int, limits: EdgeLimits | None = None, **overrides: object
) -> uvicorn.Config:
    """uvicorn's settings for a hub; `limits` default to the hub's `server:` config (else built-in)."""
    if limits is None:
        limits = app.edge_limits() if isinstance(app, HubApp) else EdgeLimits()
    settings: dict[str, Any] = {  # uvicorn.Config's keyword arguments, each of its own type
        "host": host,
        "port": port,
        "http": protocol_class(limits),  # 431/408/connection cap: see hub/receiver/protocol.py
        "log_level": "warning",
        # Our own structured logs cover rejects; an access line per webhook costs throughput.
        "access_log": False,
        # Requests in flight at a stop get this long; the whole stop must be over in ~10 s.
        "timeout_graceful_shutdown": 3,
        "lifespan": "on",
        "log_config": None,  # uvicorn's records go to hookhub's handler (hub/logs.py)
    }
    settings.update(overrides)
    return uvicorn.Config(app, **settings)


def listen(host: str, port: int) -> socket.socket:
    """The hub's listening socket, bound before anything else starts (OSError if the port is taken)."""
    sock = socket.create_server((host, port), backlog=LISTEN_BACKLOG)
    sock.set_inheritable(False)  # Prefect's server and the delivery workers must not hold it
    return sock


def serve(hub: Hub, host: str, port: int, sock: socket.socket | None = None) -> None:
    # The spool writer thread gives up the GIL at every SQLite call (a group commit makes
    # about three) and a busy event loop makes it wait up to one switch interval to get it
    # back, while every webhook in the group waits with it. Forced switches happen only
    # while the writer waits, so a short interval costs little. Under bench/ingest.py's
    # closed-loop load a group commit took ~1.8 ms at 0.1 ms against ~2.4 ms at 0.5 ms.
    sys.setswitchinterval(0.0001)
    hub.freeze_heap = True
    app = hub.app()
    limits = app.edge_limits()
    _raise_file_limit(limits.max_connections + FD_MARGIN)
    server = _HubServer(uvicorn_config(app, host, port, limits=limits), hub)
    server.run(sockets=None if sock is None else [sock])


class _HubServer(uvicorn.Server):
    """uvicorn's server, telling the hub's services of a stop as soon as the signal comes."""

    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn first waits for requests in flight (up to 3 s) and only then ends the lifespan,
        # where services stop. The delivery process needs most of the 10 s a stop may take.
        self.hub.begin_stop()
        super().handle_exit(sig, frame)


def _raise_file_limit(wanted: int) -> None:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (up to the hard limit), or warn that it stays below."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < wanted:
        log.warning(
            "open-file limit is below server.max_connections plus a margin: raise `ulimit -n`",
            extra={"event": "file_limit", "limit": soft, "wanted": wanted},
        )
