"""`hookhub status` asks the running hub what only its memory holds (Prefect, the dispatcher).

The spool is shared, the dispatcher's health is not: a hub records its pid and port in the
data dir's lock file (hub/spool/lock.py), and status asks that port's /readyz over loopback,
where /readyz shows its details. Without a live hub, status shows only what the spool holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from hub.spool.lock import LOCK_FILE


@dataclass(frozen=True)
class LiveHub:
    pid: int
    port: int
    delivery: dict[str, Any] | None
    """/readyz's `delivery` part; None if the hub did not answer."""
    error: str | None = None


def running_hub(data_dir: Path, timeout: float = 2.0) -> LiveHub | None:
    """The hub that holds `data_dir`'s lock and what its /readyz says, or None if none runs."""
    holder = _lock_holder(data_dir / LOCK_FILE)
    if holder is None:
        return None
    pid, port = holder
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=timeout)
        delivery = response.json().get("delivery")
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return LiveHub(pid, port, None, f"{type(exc).__name__}: {exc}")
    if not isinstance(delivery, dict):
        return LiveHub(
            pid, port, None, f"its /readyz answered {response.status_code} without delivery details"
        )
    return LiveHub(pid, port, delivery)


def _lock_holder(path: Path) -> tuple[int, int] | None:
    """(pid, port) of the live process that holds the lock file; None if no process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: a hub runs
            owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return int(owner["pid"]), int(owner["port"])
        fcntl.flock(fd, fcntl.LOCK_UN)  # not held: what the file names is gone
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
