"""Checks beyond the models: providers, destination types, secrets, retention, admin, store
(routes' references and the unused-item warnings are in hub/config/route_checks.py).

They run on the interpolated plain data, not on a validated HubConfig, so a typo in one
section does not hide a dangling reference in another: `hookhub check` shows all of it.
Whatever a check cannot interpret (a section of the wrong shape) the model validation
has reported already, so it is skipped here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

import connectors
from connectors import UnknownProvider
from connectors.base import Connector
from flows import destinations as destination_registry
from flows.destinations import UnknownDestinationType
from hub.config.models import SourceConfig
from hub.config.positions import KeyPath
from hub.config.problems import Reporter
from hub.config.secret_strength import secret_problems
from hub.config.validation import report_validation_error

# Ids are URL path segments (/hooks/<source id>) and file/metric labels: keep them plain.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ID_RULE = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
SOURCE_KEYS: tuple[str, ...] = tuple(f.alias or n for n, f in SourceConfig.model_fields.items())

PluginT = TypeVar("PluginT")
_ID_USE = {
    "sources": ("source id", "(it is the URL /hooks/<source id>)"),
    "destinations": ("destination id", "(it names the target in routes, logs and URLs)"),
}


def _plugins(
    reporter: Reporter,
    section: str,
    entries: Any,
    key: str,
    lookup: Callable[[str], PluginT],
    unknown: type[Exception],
) -> Iterator[tuple[str, dict[str, Any], KeyPath, PluginT]]:
    """Each entry of `section` (sources, destinations) whose `key` names a known plugin: its id,
    plain data, path and plugin. Ids are checked; an unknown plugin name is reported and skipped."""
    if not isinstance(entries, dict):
        return
    for entry_id, raw in entries.items():
        path = (section, entry_id)
        _check_id(reporter, path, entry_id, *_ID_USE[section])
        if not isinstance(raw, dict) or not isinstance(raw.get(key), str):
            continue
        try:
            plugin = lookup(raw[key])
        except unknown as exc:
            reporter.error((*path, key), str(exc))
            continue
        yield entry_id, raw, path, plugin


def check_sources(
    reporter: Reporter, sources: Any
) -> tuple[dict[str, BaseModel], dict[str, BaseModel | None]]:
    """Provider, provider options, secret and `reconcile:` of every source; returns the valid
    options by id, and the reconcile settings by id of the sources that set `reconcile:`."""
    options: dict[str, BaseModel] = {}
    reconcile: dict[str, BaseModel | None] = {}
    for source_id, raw, path, connector in _plugins(
        reporter, "sources", sources, "provider", connectors.get_connector, UnknownProvider
    ):
        provider = raw["provider"]
        extras = {k: v for k, v in raw.items() if k not in SOURCE_KEYS}
        needs_secret = connector.requires_secret
        try:
            options[source_id] = connector.Options.model_validate(extras)
        except ValidationError as exc:
            report_validation_error(
                reporter,
                exc,
                extras,
                connector.Options,
                prefix=path,
                context=f" for provider {provider}",
                extra_keys=SOURCE_KEYS,
            )
            # Where the options decide whether a secret is needed, that waits for valid options.
            needs_secret &= getattr(type(connector), "needs_secret", None) in (None, Connector.needs_secret)
        else:
            # Per-options answers (connectors.base.Connector); duck-typed connectors may lack them.
            if hasattr(connector, "needs_secret"):
                needs_secret = connector.needs_secret(options[source_id])
            for message in getattr(connector, "warnings", lambda _options: [])(options[source_id]):
                reporter.warn(path, message)
        if needs_secret and raw.get("secret") is None:
            reporter.error(
                (*path, "secret"),
                f"missing required key 'secret' (provider {provider} verifies requests with it)",
                at="key",
                pos_path=path,
            )
        _check_secrets(reporter, raw.get("secret"), (*path, "secret"), connector)
        if raw.get("reconcile") is not None:
            reconcile[source_id] = _check_reconcile(reporter, raw["reconcile"], path, connector, provider)
    return options, reconcile


def _check_secrets(reporter: Reporter, value: Any, path: KeyPath, connector: Any) -> None:
    """Each configured secret (one, or a rotation list) against its connector's scheme."""
    listed = [(path, value)] if isinstance(value, str) else []
    if isinstance(value, list):
        listed = [((*path, i), v) for i, v in enumerate(value) if isinstance(v, str)]
    for secret_path, secret in listed:
        if not secret:
            continue  # reported by the models
        for problem in secret_problems(secret, getattr(connector, "scheme", "")):
            if problem.is_error:
                reporter.error(secret_path, problem.message)
            else:
                reporter.warn(secret_path, problem.message, at="value")


def _check_reconcile(
    reporter: Reporter, raw: Any, path: tuple[str | int, ...], connector: Any, provider: str
) -> BaseModel | None:
    """A source's `reconcile:` against its provider's settings model (connectors/reconciling.py)."""
    reconciler = getattr(connector, "reconciler", None)
    where = (*path, "reconcile")
    if reconciler is None:
        able = ", ".join(c.provider for c in connectors.all_connectors() if c.reconciler is not None)
        reporter.error(
            where,
            f"provider {provider} has no responses API hookhub can list; reconciliation is available"
            f" for: {able}",
            at="key",
        )
        return None
    if not isinstance(raw, dict):
        reporter.error(where, "expected a mapping (every, lookback, and the provider's keys)")
        return None
    try:
        settings = cast(BaseModel, reconciler.Settings.model_validate(raw))
    except ValidationError as exc:
        report_validation_error(
            reporter, exc, raw, reconciler.Settings, prefix=where, context=f" for provider {provider}"
        )
        return None
    for message in reconciler.warnings(settings):
        reporter.warn(where, message)
    return settings


def check_destinations(reporter: Reporter, destinations: Any) -> dict[str, BaseModel]:
    """Type and type-specific settings of every destination; returns valid settings by id."""
    settings: dict[str, BaseModel] = {}
    for dest_id, raw, path, destination in _plugins(
        reporter,
        "destinations",
        destinations,
        "type",
        destination_registry.get_destination,
        UnknownDestinationType,
    ):
        type_name = raw["type"]
        config_model = destination.Config
        data = raw if "type" in config_model.model_fields else {k: v for k, v in raw.items() if k != "type"}
        try:
            settings[dest_id] = config_model.model_validate(data)
        except ValidationError as exc:
            report_validation_error(
                reporter,
                exc,
                data,
                config_model,
                prefix=path,
                context=f" for destination type {type_name}",
                extra_keys=("type",),
            )
            continue
        for message in destination.check(settings[dest_id]):
            reporter.error(path, message, at="key")
    return settings


def check_retention(reporter: Reporter, data: dict[str, Any]) -> None:
    """A raw request set to outlive its submission (`retention:` or a source's own) goes with it
    anyway: say so rather than let the config promise what it cannot keep."""
    from hub.config.models import RetentionConfig, RetentionPeriods

    try:
        retention = RetentionConfig.model_validate(data.get("retention") or {})
    except ValidationError:
        return  # reported by the models
    sources = data.get("sources")
    overrides: list[tuple[KeyPath, Any]] = [(("retention",), {})]
    if isinstance(sources, dict):
        overrides += [
            (("sources", k, "retention"), v.get("retention"))
            for k, v in sources.items()
            if isinstance(v, dict)
        ]
    for path, raw in overrides:
        try:
            own = RetentionPeriods.model_validate(raw) if isinstance(raw, dict) else None
        except ValidationError:
            continue
        if own is None and path[0] == "sources":
            continue
        keys = own.model_fields_set if own is not None else set()
        kept = own.raw_requests if own is not None and "raw_requests" in keys else retention.raw_requests
        gone = own.submissions if own is not None and "submissions" in keys else retention.submissions
        if kept is not None and gone is not None and kept > gone:
            reporter.warn(
                path,
                "raw_requests is longer than submissions: a removed submission takes its raw request"
                " with it (set raw_requests shorter, or submissions longer)",
            )


def check_admin(reporter: Reporter, data: dict[str, Any]) -> None:
    """The console's credential (README "Admin console"): set, and not shared with the status token."""
    admin = data.get("admin")
    if not isinstance(admin, dict):
        return
    if not admin.get("password_hash") and not admin.get("token"):
        reporter.warn(("admin",), "no password_hash or token: the admin console stays off")
    server = data.get("server")
    status_token = server.get("status_token") if isinstance(server, dict) else None
    if admin.get("token") and admin.get("token") == status_token:
        reporter.error(
            ("admin", "token"),
            "is the same as server.status_token: whoever may read /metrics could use the console",
        )


def _check_id(reporter: Reporter, path: KeyPath, value: Any, what: str, why: str) -> None:
    if isinstance(value, str) and not ID_PATTERN.fullmatch(value):
        reporter.error(path, f"invalid {what} {value!r} {why}: {_ID_RULE}", at="key")


def check_store(reporter: Reporter, data: dict[str, Any]) -> None:
    """`store:` is `sqlite` or a PostgreSQL URL; problems are told with the URL's credentials left out."""
    from hub.store.location import BadStoreSetting, store_from_setting

    value = data.get("store")
    if not isinstance(value, str):
        return  # absent (SQLite), or a wrong type the models report
    try:
        store_from_setting(value, Path("."), environ={}).key  # noqa: B018 - parses the URL's port
    except BadStoreSetting as exc:
        reporter.error(("store",), str(exc))
    except ValueError:  # urllib's "Port could not be cast to integer value as '...'" would show it
        reporter.error(("store",), "the URL's port is not a number (expected postgresql://host:5432/db)")
