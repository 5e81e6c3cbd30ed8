"""What a flow run needs from the hub that runs it: config in force, store, data dir, links.

Flow parameters stay plain (the store's key and the config path) so the Prefect UI shows them
and a worker on another machine could run the same flow; the key holds no credentials, so a
standalone worker finds the PostgreSQL URL itself (HOOKHUB_STORE or the config's `store:`).
Inside `hookhub serve` / `hookhub worker` the dispatcher binds the live runtime, so a config
reload is seen by the very next task without re-reading files.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flows.stages import Stages
from hub.config.loader import load_config
from hub.config.models import HubConfig
from hub.store.location import ENV, PostgresStore, SqliteStore, Store, store_from_setting

if TYPE_CHECKING:  # flows.delivery_pool imports this module
    from flows.delivery_pool import DeliveryPool


@dataclass(frozen=True)
class Runtime:
    config: Callable[[], HubConfig]
    store: Store
    data_dir: Path
    delivery_pool: DeliveryPool | None = None
    """A flows.delivery_pool.DeliveryPool when deliveries may run in worker processes."""
    stages: Stages = field(default_factory=Stages)
    clock: Callable[[], float] = time.time
    """Wall clock (unix seconds) for the flows' time rules: retry times and horizons, fetch
    backoff, upkeep stamps; a test pins it to check a rule at a fixed instant."""
    owner: str | None = None
    """The dispatcher's owner id (its lease), recorded with outcomes so a late write of an owner
    whose lease was taken over is refused; None outside a dispatcher (tests, `test-route`)."""

    def record_link(self, submission_id: str) -> str | None:
        base = self.config().server.public_base_url
        return f"{base.rstrip('/')}/submissions/{submission_id}" if base else None


_bound: dict[str, Runtime] = {}
_lock = threading.Lock()


def bind(runtime: Runtime) -> None:
    with _lock:
        _bound[runtime.store.key] = runtime


def unbind(runtime: Runtime) -> None:
    with _lock:
        _bound.pop(runtime.store.key, None)


def clock_for(store_key: str) -> Callable[[], float]:
    """The bound runtime's clock, else the wall clock: for paths where reading the config could
    fail again (recording that an upkeep failed)."""
    with _lock:
        found = _bound.get(store_key)
    return found.clock if found is not None else time.time


def store_for_key(store_key: str, setting: str | None, data_dir: Path) -> Store:
    """The store a flow parameter names: a SQLite file by its path; PostgreSQL by the URL that
    HOOKHUB_STORE or `store:` holds here, which must be the database the key names."""
    if "://" not in store_key:
        return SqliteStore(Path(store_key))
    found = store_from_setting(setting, data_dir)
    if not isinstance(found, PostgresStore) or found.key != store_key:
        raise LookupError(
            f"this process's store is {found.key}, not {store_key}; set {ENV} (or store: in the config)"
            " to the PostgreSQL URL the hub uses"
        )
    return found


def store_of(store_key: str) -> Store:
    """The bound runtime's store, else the one the key and HOOKHUB_STORE name: for paths where
    reading the config could fail again (recording that an upkeep failed)."""
    with _lock:
        found = _bound.get(store_key)
    if found is not None:
        return found.store
    return store_for_key(store_key, None, Path(store_key).parent)


def runtime_for(store_key: str, config_path: str) -> Runtime:
    """The bound runtime of this store, or one read from the files (a standalone worker)."""
    with _lock:
        found = _bound.get(store_key)
    if found is not None:
        return found
    config = load_config(config_path)
    data_dir = Path(os.environ.get("HOOKHUB_DATA_DIR", Path(config_path).parent))
    if "://" not in store_key:
        data_dir = Path(store_key).parent
    store = store_for_key(store_key, config.store, data_dir)
    return Runtime(config=lambda: config, store=store, data_dir=data_dir)
