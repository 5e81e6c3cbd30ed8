"""The all-in-one hub's delivery in a process of its own, so that receiving wins during bursts.

`hookhub serve` used to run the dispatcher, Prefect's engine and in-process deliveries in a
thread beside the receiver. They then shared one GIL: bench/peak.py measured the receiver's
p99 at 100 requests/s going from ~3 ms to ~240 ms while a backlog drained, and a burst at 128
connections accepted about half of what a naive durable endpoint does (README, "Peak load").
Here the same dispatcher runs as `hookhub worker --attached` on the same store:

- The child runs at a lower CPU priority (`nice` +10, inherited by Prefect's server and the
  delivery worker processes it starts). A busy receiver gets the CPU first, and delivery
  catches up in the gaps: the kernel's scheduler arbitrates, with no tuning knob.
- They share one socket pair. The child writes its DeliveryHealth there every second, for
  /readyz, /metrics and `hookhub status`. When the hub's process dies however it dies, the
  kernel closes the parent's end, and the child stops on the EOF.
- At a stop, the child is told at the same moment as uvicorn (`begin_stop`, from the signal
  handler), so both wind down in parallel within the hub's 10 s. It stops as a worker does:
  it claims nothing more, lets runs under way record their outcomes, and puts the rest back.
  Only after STOP_SECONDS is it killed; what it held is then recovered at the next start.
- A child that exits on its own is started again after a pause (1 s doubling to 30 s), and
  /readyz says delivery is down meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from hub.health import DeliveryHealth

if TYPE_CHECKING:
    from hub.server import Hub

log = logging.getLogger("hookhub.dispatch")

STOP_SECONDS = 8.0
"""How long the delivery process gets after SIGTERM before it is killed (the hub must be gone in 10)."""
RESTART_FIRST, RESTART_MAX = 1.0, 30.0
"""Pause before starting a delivery process that exited on its own, doubling up to the maximum."""
HEALTH_FIELDS = tuple(f.name for f in fields(DeliveryHealth))


@dataclass
class DeliveryProcess:
    """A Service of the hub (hub/server.py): starts, watches and stops `hookhub worker --attached`."""

    hub: Hub
    config_path: Path
    lease_seconds: float
    log_level: str
    stop_seconds: float = STOP_SECONDS
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _supervisor: threading.Thread | None = field(default=None, init=False)

    def start(self) -> None:
        self.hub.health.dispatching = True
        self._stopping.clear()
        self._supervisor = threading.Thread(target=self._supervise, name="hookhub-delivery", daemon=True)
        self._supervisor.start()

    def begin_stop(self) -> None:
        """Tell the delivery process to stop, now, without waiting (called in a signal handler)."""
        self._stopping.set()
        with self._lock:
            process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.begin_stop()
        if self._supervisor is not None:
            self._supervisor.join(timeout=self.stop_seconds + 2)
            self._supervisor = None

    def _supervise(self) -> None:
        pause = RESTART_FIRST
        while not self._stopping.is_set():
            started = time.monotonic()
            code = self._run_once()
            if self._stopping.is_set():
                return
            self.hub.health.dispatcher_beat_at = None
            if time.monotonic() - started > RESTART_MAX:
                pause = RESTART_FIRST  # it ran for a while: a new fault, not the same one again
            log.error(
                "delivery process exited; starting it again",
                extra={"event": "delivery_process_exited", "code": code, "restart_in": pause},
            )
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, RESTART_MAX)

    def _run_once(self) -> int:
        """Start one delivery process, relay its health until it exits; its exit code."""
        ours, theirs = socket.socketpair()
        try:
            with self._lock:
                if self._stopping.is_set():
                    return 0
                self.process = subprocess.Popen(
                    self._command(theirs.fileno()), pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL
                )
            theirs.close()
            log.info(
                "delivery process started",
                extra={"event": "delivery_process_started", "pid": self.process.pid},
            )
            relay = threading.Thread(
                target=self._relay_health, args=(ours,), name="hookhub-delivery-health", daemon=True
            )
            relay.start()
            code = self._wait(self.process)
            relay.join(timeout=1.0)  # EOF comes with the child's exit
            return code
        finally:
            with contextlib.suppress(OSError):  # a relay still reading (a grandchild kept the fd) ends
                ours.shutdown(socket.SHUT_RDWR)
            ours.close()
            theirs.close()

    def _command(self, fd: int) -> list[str]:
        return [
            sys.executable, "-m", "hub.cli", "worker", "--attached", str(fd),
            "--config", str(self.config_path), "--data-dir", str(self.hub.data_dir),
            "--lease", repr(self.lease_seconds), "--log-level", self.log_level,
            "--priority", self.hub.delivery_priority,
        ]  # fmt: skip

    def _relay_health(self, ours: socket.socket) -> None:
        """Copy each health line the child writes into the hub's DeliveryHealth, until EOF."""
        with ours.makefile("rb") as lines:
            for line in lines:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    for name, value in json.loads(line).items():
                        if name in HEALTH_FIELDS and name != "dispatching":
                            setattr(self.hub.health, name, value)

    def _wait(self, process: subprocess.Popen[bytes]) -> int:
        """The exit code; past STOP_SECONDS after a stop began, the child is killed."""
        while True:
            try:
                return process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
            if self._stopping.is_set():
                try:
                    return process.wait(timeout=self.stop_seconds)
                except subprocess.TimeoutExpired:
                    log.error(
                        "delivery process did not stop in time; killed (its claims return at the next start)",
                        extra={"event": "delivery_process_killed", "seconds": self.stop_seconds},
                    )
                    process.kill()
                    return process.wait()


def health_line(health: DeliveryHealth) -> bytes:
    """One line of the child's health for the parent (hub/cli_worker.py writes it every second)."""
    return json.dumps({name: getattr(health, name) for name in HEALTH_FIELDS}).encode() + b"\n"


def attach_delivery_process(hub: Hub, config_path: Path, lease_seconds: float) -> DeliveryProcess:
    level = logging.getLevelName(logging.getLogger("hookhub").getEffectiveLevel()).lower()
    service = DeliveryProcess(hub, config_path, lease_seconds, level)
    hub.services.append(service)
    return service
