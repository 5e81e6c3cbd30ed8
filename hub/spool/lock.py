"""One hub per data dir: an exclusive `flock` on a file in it, naming the owner.

The kernel drops the lock when the holding process dies however it dies (kill -9 included),
so a stale lock file never blocks a restart; its contents only say who holds it. The file
descriptor is close-on-exec (Python's default), so neither Prefect's server nor the delivery
workers inherit it and keep a dead hub's lock.

It guards the SQLite store only (`hookhub serve` takes it for that store): receivers and
workers sharing a PostgreSQL store are many by design, and their leases say who is alive.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from hub.spool.files import ensure_private_dir

LOCK_FILE = "hub.lock"
BUSY_TRIES = 5
BUSY_PAUSE = 0.1


class DataDirBusy(RuntimeError):
    """Another live hub holds the data dir."""


@dataclass
class DataDirLock:
    """Held from `acquire` until `release` or the process's death."""

    data_dir: Path
    _fd: int | None = None

    def acquire(self, port: int) -> None:
        """Take the lock and record who holds it; DataDirBusy naming the holder if it is taken."""
        ensure_private_dir(self.data_dir)
        path = self.data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        for attempt in range(BUSY_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # `hookhub status` probes the lock with a brief shared flock (and a dead hub's
                # pid may still be in the file): only a holder that stays is another hub.
                if attempt < BUSY_TRIES - 1:
                    time.sleep(BUSY_PAUSE)
                    continue
                holder = _read_holder(fd)
                os.close(fd)
                raise DataDirBusy(
                    f"another hub ({holder or 'its pid not recorded yet'}) owns {self.data_dir};"
                    " stop it first or use another --data-dir"
                ) from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "port": port}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def _read_holder(fd: int) -> str | None:
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {int(owner['pid'])}, port {int(owner['port'])}"
    except (OSError, ValueError, KeyError, TypeError):
        return None
