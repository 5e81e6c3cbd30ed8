"""The live state of a running hub: the config in force, prepared per source.

A reload swaps the whole prepared table at once; a broken file leaves the old one
serving and records why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from connectors import get_connector
from connectors.base import Connector
from hub.config.loader import ConfigError, load_config
from hub.config.models import HubConfig, SourceConfig

log = logging.getLogger("hookhub.config")

# Headers kept with every stored request, beside each connector's own `stored_headers` (its
# id, timestamp and signature headers: not secrets, and what a re-verification needs). Every
# other header is dropped: an allow-list, since a credential can travel under any name.
STORED_HEADERS = frozenset({"content-type", "content-length", "user-agent"})
# Never stored even if a connector lists them.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
CREDENTIAL_QUERY = frozenset({"token", "key", "secret", "api_key", "access_token"})


@dataclass(frozen=True)
class PreparedSource:
    id: str
    config: SourceConfig
    connector: Connector
    max_body_bytes: int
    stored_headers: frozenset[str]
    credential_query: frozenset[str]


def prepare_sources(config: HubConfig) -> dict[str, PreparedSource]:
    prepared = {}
    for source_id, source in config.sources.items():
        # Configurable connectors (mapped) bind their per-source options here.
        connector = get_connector(source.provider).for_source(source.options)
        prepared[source_id] = PreparedSource(
            id=source_id,
            config=source,
            connector=connector,
            max_body_bytes=source.max_body_bytes or config.server.max_body_bytes,
            stored_headers=(STORED_HEADERS | connector.stored_headers)
            - CREDENTIAL_HEADERS
            - connector.credential_headers,
            credential_query=CREDENTIAL_QUERY | connector.credential_query,
        )
    return prepared


@dataclass
class ConfigHolder:
    path: Path
    environ: Mapping[str, str] | None = None
    clock: Callable[[], float] = time.time
    current: HubConfig = field(init=False)
    """The configuration in force (replaced whole by a reload that succeeds)."""
    sources: dict[str, PreparedSource] = field(init=False)
    loaded_at: float = field(init=False)
    last_error: str | None = field(default=None, init=False)
    reload_counts: dict[str, int] = field(default_factory=lambda: {"accepted": 0, "rejected": 0}, init=False)
    last_good_at: float = field(default=0.0, init=False)
    """When the config in force was loaded (the first load or the last accepted reload)."""
    listeners: list[Callable[[HubConfig], None]] = field(default_factory=list, init=False)
    rejection_listeners: list[Callable[[str], None]] = field(default_factory=list, init=False)
    """Called with the reason of each rejected reload (the config error: file, line, key, never a
    secret value); the alert evaluator listens here (hub/alerts/evaluator.py)."""

    def __post_init__(self) -> None:
        # The first load raises: a hub must not start on a broken file.
        self._install(load_config(self.path, self.environ))

    def _install(self, config: HubConfig) -> None:
        self.sources = prepare_sources(config)
        self.current = config
        self.loaded_at = self.last_good_at = self.clock()
        self.last_error = None
        for listener in self.listeners:
            listener(config)

    def reload(self) -> bool:
        """Load the file again; on any problem keep serving the old config. True if swapped."""
        try:
            config = load_config(self.path, self.environ)
        except ConfigError as exc:
            self.reload_counts["rejected"] += 1
            self.last_error = str(exc)
            self._tell_rejected(self.last_error)
            log.error(
                "config reload rejected; the previous config keeps serving",
                extra={"event": "config_rejected", "file": str(self.path), "problems": str(exc).splitlines()},
            )
            return False
        except OSError as exc:
            self.reload_counts["rejected"] += 1
            self.last_error = f"{self.path}: {exc.strerror or exc}"
            self._tell_rejected(self.last_error)
            log.error("config reload failed", extra={"event": "config_rejected", "error": self.last_error})
            return False
        self._install(config)
        self.reload_counts["accepted"] += 1
        log.info(
            "config reloaded",
            extra={"event": "config_reloaded", "sources": len(config.sources), "routes": len(config.routes)},
        )
        return True

    def _tell_rejected(self, reason: str) -> None:
        for listener in self.rejection_listeners:
            listener(reason)
