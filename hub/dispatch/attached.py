"""The delivery process's side of `hookhub serve` (hub/dispatch/delivery_process.py): a worker
that runs at a lower CPU priority, reports its health to the receiver's process and stops when
that process is gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from typing import TYPE_CHECKING

from hub.cpu_priority import Priority, background_process
from hub.dispatch.delivery_process import health_line

if TYPE_CHECKING:
    from hub.server import Hub

log = logging.getLogger("hookhub.dispatch")

HEALTH_SECONDS = 1.0


def attach_to_receiver(hub: Hub, fd: int, priority: Priority = "idle") -> None:
    """Make this worker the delivery process of the hub whose socket is `fd`."""
    # Both processes write to the hub's one stderr: this one's lines say whose they are.
    for handler in logging.getLogger().handlers:
        handler.addFilter(_tag_delivery)
    # SCHED_IDLE (unless `low`) and nice +10, for this process, Prefect's server and the delivery
    # workers it starts: the receiver gets the CPU the moment it wants it (hub/cpu_priority.py).
    background_process(priority)
    channel = socket.socket(fileno=fd)
    channel.set_inheritable(False)  # Prefect's server and delivery workers must not keep it open
    threading.Thread(
        target=_stop_when_receiver_gone, args=(channel,), name="hookhub-attached", daemon=True
    ).start()

    async def report_health(hub: Hub) -> None:
        while True:
            try:
                await asyncio.to_thread(channel.sendall, health_line(hub.health))
            except OSError:
                _stop("cannot reach the receiver's process")
                return
            await asyncio.sleep(HEALTH_SECONDS)

    hub.background.append(report_health)


def _tag_delivery(record: logging.LogRecord) -> bool:
    record.role = "delivery"
    return True


def _stop_when_receiver_gone(channel: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while channel.recv(1024):
            pass
    _stop("the receiver's process is gone")


def _stop(why: str) -> None:
    log.warning("delivery stops: %s", why, extra={"event": "receiver_gone"})
    os.kill(os.getpid(), signal.SIGTERM)
