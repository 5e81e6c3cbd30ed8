"""What every console page needs: the config in force, the spool, the signer, the templates."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from hub.config.models import AdminConfig
from hub.console.sessions import Signer, load_key
from hub.console.throttle import LoginThrottle
from hub.health import DeliveryHealth
from hub.runtime import ConfigHolder
from hub.store import Connection
from hub.store.location import SqliteStore, Store

# Inline, allowed by its hash in the Content-Security-Policy: no file to serve without a session.
CSS = resources.files("hub.console").joinpath("static/console.css").read_text(encoding="utf-8")
CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode("ascii")


@dataclass
class Console:
    config: ConfigHolder
    spool: Path | Store
    """The store (a Path: the SQLite spool file, as tests pass it)."""
    health: Callable[[], DeliveryHealth | None] = lambda: None
    clock: Callable[[], float] = time.time
    elsewhere: str | None = None
    """The console's own address when `serve --admin-port` gives it one (then /admin on the hub's
    port answers 404 saying where it is)."""
    throttle: LoginThrottle = field(init=False)
    templates: jinja2.Environment = field(init=False)
    _signers: dict[str | None, Signer] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.throttle = LoginThrottle(clock=self.clock)
        self.templates = _environment()

    @property
    def store(self) -> Store:
        return SqliteStore(self.spool) if isinstance(self.spool, Path) else self.spool

    @property
    def spool_path(self) -> Path | None:
        """The SQLite file, whose size the overview shows (None on PostgreSQL)."""
        return self.store.path

    @property
    def admin(self) -> AdminConfig:
        return self.config.current.admin

    @property
    def signer(self) -> Signer:
        """One per configured key: a changed admin.secret_key (a reload) ends every session."""
        configured = self.admin.secret_key
        with self._lock:  # pages run in worker threads: the first ones must not each write a key
            if configured not in self._signers:
                self._signers = {configured: Signer(load_key(configured, self._key_dir()))}
            return self._signers[configured]

    @contextmanager
    def db(self) -> Iterator[Connection]:
        """A connection of its own per request (pages run in worker threads, beside the writer)."""
        conn = self.store.connect(durability="normal")
        try:
            yield conn
        finally:
            conn.close()

    def _key_dir(self) -> Path:
        # The generated session key lives beside the SQLite spool; receivers of a PostgreSQL
        # store each keep theirs in the data dir (admin.secret_key shares one across them).
        path = self.spool_path
        return path.parent if path is not None else Path(os.environ.get("HOOKHUB_DATA_DIR", ".hookhub"))

    def render(self, name: str, **values: Any) -> str:
        return self.templates.get_template(name).render(**values)


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hub.console", "templates"),
        autoescape=True,  # every value on a page came from a form filler or a destination's answer
        undefined=jinja2.StrictUndefined,
    )
    env.globals["css"] = Markup(CSS)  # our own file, not input
    env.filters["when"] = _when
    env.filters["age"] = _age
    return env


def _when(at: float | None) -> str:
    if at is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + " UTC"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
