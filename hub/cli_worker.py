"""`hookhub worker`: a dispatcher without a receiver, one of several sharing a PostgreSQL store.

Receivers (`hookhub serve --no-dispatch`, as many as wanted) write into the store; each worker
claims batches with FOR UPDATE SKIP LOCKED and runs their flows in its own process, against
the Prefect server PREFECT_API_URL names (without it, an ephemeral one of its own, as `serve`
starts: fine for one worker, but each would have its own Prefect UI). One of the workers also
runs the cluster's upkeep and alerts (hub/roles.py). With `--port` it answers /healthz,
/readyz and /metrics there; it never receives webhooks.

`open_store` is shared with `serve`: the store `store:` / HOOKHUB_STORE names, its schema
created or upgraded, or one line saying why it cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hub.cpu_priority import PRIORITIES
from hub.spool.lease import LEASE_SECONDS

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from hub.config.models import HubConfig
    from hub.runtime import ConfigHolder
    from hub.server import Hub
    from hub.store.location import Store

CONNECT_TIMEOUT = "10"
"""Seconds libpq waits for a PostgreSQL that does not answer (PGCONNECT_TIMEOUT, unless set)."""


class StoreNotReady(RuntimeError):
    """The configured store cannot be used; the message says what to check."""


def lease_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lease",
        type=float,
        default=LEASE_SECONDS,
        metavar="SECONDS",
        help=f"the dispatcher's lease: a killed or frozen worker's claims go back after this long"
        f" (default {LEASE_SECONDS:g}; renewed every third of it)",
    )


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    data_dir_arg: Callable[[argparse.ArgumentParser], None],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    worker = sub.add_parser(
        "worker", help="deliver from a PostgreSQL store shared with other receivers/workers"
    )
    config_arg(worker)
    data_dir_arg(worker)
    lease_arg(worker)
    worker.add_argument(
        "--host", default="127.0.0.1", help="with --port: the address of /healthz and /metrics"
    )
    worker.add_argument("--port", type=int, help="answer /healthz, /readyz and /metrics here (default: none)")
    worker.add_argument("--log-level", default="info")
    worker.add_argument("--log-format", choices=["auto", "text", "json"], default=None)
    # `hookhub serve` starts its delivery as `worker --attached FD` (hub/dispatch/delivery_process.py).
    worker.add_argument("--attached", type=int, default=None, metavar="FD", help=argparse.SUPPRESS)
    worker.add_argument("--priority", choices=PRIORITIES, default="idle", help=argparse.SUPPRESS)


def open_store(config: HubConfig, data_dir: Path) -> Store:
    """The store `store:` / HOOKHUB_STORE names, prepared; StoreNotReady saying what to fix."""
    from hub.store import StoreError
    from hub.store.location import BadStoreSetting, store_from_setting

    try:
        store = store_from_setting(config.store, data_dir)
    except BadStoreSetting as exc:
        raise StoreNotReady(str(exc)) from None
    if store.dialect == "postgresql":
        os.environ.setdefault("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT)
        try:
            store.prepare()
        except StoreError as exc:
            raise StoreNotReady(unreachable(store, exc)) from None
    return store


def unreachable(store: Store, error: Exception) -> str:
    """One line: which store (its key, no credentials), the driver's first line, what to check."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"cannot reach the store {store.key}: {reason}; check HOOKHUB_STORE / store:"


def cmd_worker(args: argparse.Namespace) -> int:
    from hub.config.loader import ConfigError
    from hub.logs import setup_logging
    from hub.runtime import ConfigHolder

    setup_logging(args.log_level, args.log_format)
    try:
        holder = ConfigHolder(Path(args.config))
    except ConfigError as exc:
        print(f"{exc}\nhookhub: not starting: fix the problems above (`hookhub check`)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.config}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    data_dir = Path(args.data_dir)
    try:
        store = open_store(holder.current, data_dir)
    except StoreNotReady as exc:
        print(f"hookhub: not starting: {exc}", file=sys.stderr)
        return 1
    if store.dialect != "postgresql" and args.attached is None:
        print(
            "hookhub worker: the store is SQLite, which one `hookhub serve` receives and delivers"
            " from on its own; run `hookhub serve`, or set HOOKHUB_STORE (or store:) to a"
            " postgresql:// URL to share the work between workers",
            file=sys.stderr,
        )
        return 2
    hub = _worker_hub(holder, data_dir, store, args)
    if args.attached is not None:
        from hub.dispatch.attached import attach_to_receiver

        attach_to_receiver(hub, args.attached, args.priority)
    else:
        print(f"hookhub: worker {hub_owner(hub)} delivering from {store.key}", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        if args.port is None:
            asyncio.run(_run(hub))
        else:
            _serve_health(hub, args.host, args.port)
    return 0


def _worker_hub(holder: ConfigHolder, data_dir: Path, store: Store, args: argparse.Namespace) -> Hub:
    from hub.alerts.evaluator import attach_alerts
    from hub.dispatch import attach_dispatcher
    from hub.server import Hub

    # A worker receives nothing, but one with --port answers /readyz by probing the store through
    # its spool writer; the delivery process `serve` starts has no port, and its receiver writes.
    hub = Hub(config=holder, data_dir=data_dir, store=store, port=args.port, receives=args.attached is None)
    attach_dispatcher(hub, lease_seconds=args.lease)
    attach_alerts(hub)
    return hub


def hub_owner(hub: Hub) -> str:
    from hub.dispatch import Dispatcher

    return next((s.owner for s in hub.services if isinstance(s, Dispatcher)), "?")


async def _run(hub: Hub) -> None:
    """The hub's services and background tasks until SIGTERM or Ctrl-C, without a web server."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with hub.lifespan(_health_app(hub)):
        await stop.wait()


def _health_app(hub: Hub) -> Starlette:
    from starlette.applications import Starlette
    from starlette.routing import Route

    receiver = hub.receiver
    return Starlette(
        routes=[
            Route("/healthz", receiver.healthz, methods=["GET"]),
            Route("/readyz", receiver.readyz, methods=["GET"]),
            Route("/metrics", receiver.metrics_endpoint, methods=["GET"]),
        ],
        lifespan=hub.lifespan,
    )


def _serve_health(hub: Hub, host: str, port: int) -> None:
    import uvicorn

    from hub.server import uvicorn_config

    uvicorn.Server(uvicorn_config(_health_app(hub), host, port)).run()
