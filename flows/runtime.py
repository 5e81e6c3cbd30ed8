"""What a flow run needs from the hub that runs it: config in force, spool, data dir, links.

Flow parameters stay plain (paths and ids) so the Prefect UI shows them and a worker on
another machine could run the same flow; inside `hookhub serve` the dispatcher binds the
live runtime, so a config reload is seen by the very next task without re-reading files.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flows.stages import Stages
from hub.config.loader import load_config
from hub.config.models import HubConfig

if TYPE_CHECKING:  # flows.delivery_pool imports this module
    from flows.delivery_pool import DeliveryPool


@dataclass(frozen=True)
class Runtime:
    config: Callable[[], HubConfig]
    spool_path: Path
    data_dir: Path
    delivery_pool: DeliveryPool | None = None
    """A flows.delivery_pool.DeliveryPool when deliveries may run in worker processes."""
    stages: Stages = field(default_factory=Stages)
    clock: Callable[[], float] = time.time
    """Wall clock (unix seconds) for the flows' time rules: retry times and horizons, fetch
    backoff, upkeep stamps; a test pins it to check a rule at a fixed instant."""

    def record_link(self, submission_id: str) -> str | None:
        base = self.config().server.public_base_url
        return f"{base.rstrip('/')}/submissions/{submission_id}" if base else None


_bound: dict[str, Runtime] = {}
_lock = threading.Lock()


def bind(runtime: Runtime) -> None:
    with _lock:
        _bound[str(runtime.spool_path)] = runtime


def unbind(runtime: Runtime) -> None:
    with _lock:
        _bound.pop(str(runtime.spool_path), None)


def clock_for(spool_path: str) -> Callable[[], float]:
    """The bound runtime's clock, else the wall clock: for paths where reading the config could
    fail again (recording that an upkeep failed)."""
    with _lock:
        found = _bound.get(spool_path)
    return found.clock if found is not None else time.time


def runtime_for(spool_path: str, config_path: str) -> Runtime:
    """The bound runtime of this spool, or one read from the files (a standalone worker)."""
    with _lock:
        found = _bound.get(spool_path)
    if found is not None:
        return found
    config = load_config(config_path)
    return Runtime(config=lambda: config, spool_path=Path(spool_path), data_dir=Path(spool_path).parent)
