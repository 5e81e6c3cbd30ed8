"""Checks beyond the models: providers, destination types, references between sections.

They run on the interpolated plain data, not on a validated HubConfig, so a typo in one
section does not hide a dangling reference in another: `hookhub check` shows all of it.
Whatever a check cannot interpret (a section of the wrong shape) the model validation
has reported already, so it is skipped here.
"""

from __future__ import annotations

import difflib
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
from hub.routing.when import WhenSyntaxError, compile_when

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


def check_routes(reporter: Reporter, data: dict[str, Any]) -> None:
    """Unique names, existing sources and destinations, a `when` that compiles."""
    routes = data.get("routes")
    if not isinstance(routes, list):
        return
    # An absent section defines nothing; one of the wrong shape was reported by the models.
    sources, destinations = data.get("sources", {}), data.get("destinations", {})
    first_line: dict[str, int] = {}
    for index, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        path = ("routes", index)
        _check_route_name(reporter, route.get("name"), path, first_line)
        _check_route_references(reporter, route, path, sources, destinations)
        _check_when(reporter, route, path)
        _check_target_templates(reporter, route.get("to"), (*path, "to"))


def alert_destinations(alerts: Any) -> set[str]:
    """Destinations the `alerts:` section sends to (they need no route)."""
    from hub.alerts.checks import alert_refs

    return {ref for _, ref in alert_refs(alerts)}


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


def _check_route_name(reporter: Reporter, name: Any, path: KeyPath, first_line: dict[str, int]) -> None:
    """A route name used before is an error; `first_line` records where each name was first seen."""
    if not isinstance(name, str):
        return
    line = reporter.locator.value_pos((*path, "name"))[0]
    if name in first_line:
        reporter.error(
            (*path, "name"),
            f"duplicate route name {name!r} (first defined at line {first_line[name]})",
        )
    else:
        first_line[name] = line


def _check_route_references(
    reporter: Reporter, route: dict[str, Any], path: KeyPath, sources: Any, destinations: Any
) -> None:
    """`from` names defined sources (or `*`), `to` names defined destinations.

    A route none of whose sources is defined is only unreachable (a warning from warn_unused:
    the admin may have removed a form), unless one of them is a misspelt defined source."""
    if isinstance(sources, dict) and not unreachable(route, sources):
        for ref_path, ref in _references(route.get("from"), (*path, "from")):
            if ref != "*" and ref not in sources:
                reporter.error(ref_path, f"unknown source {ref!r}; {_defined_or_close(ref, sources)}")
    if isinstance(destinations, dict):
        for ref_path, ref in _targets(route.get("to"), (*path, "to")):
            if ref not in destinations:
                reporter.error(
                    ref_path, f"unknown destination {ref!r}; {_defined('destinations', destinations)}"
                )


def unreachable(route: dict[str, Any], sources: dict[str, Any]) -> bool:
    """`from` names sources, none of them defined and none a near miss of a defined one."""
    refs = [ref for _, ref in _references(route.get("from"), ())]
    return bool(refs) and all(ref != "*" and ref not in sources and not _close(ref, sources) for ref in refs)


def _close(ref: str, items: dict[str, Any]) -> list[str]:
    return difflib.get_close_matches(ref, [str(k) for k in items], n=1, cutoff=0.6)


def _defined_or_close(ref: str, items: dict[str, Any]) -> str:
    close = _close(ref, items)
    return f"did you mean {close[0]!r}?" if close else _defined("sources", items)


def _check_when(reporter: Reporter, route: dict[str, Any], path: KeyPath) -> None:
    """A `when` is not blank and compiles."""
    if "when" in route and _is_blank(route["when"]):
        reporter.error(
            (*path, "when"),
            "empty condition: remove `when` to route every submission, or write one",
            at="key",
        )
    elif isinstance(route.get("when"), str):  # any other type was reported by the models
        try:
            compile_when(route["when"])
        except WhenSyntaxError as exc:
            # Positioned at the value; the message names the column inside the condition.
            reporter.error((*path, "when"), f"invalid condition: {exc}")


def _check_target_templates(reporter: Reporter, targets: Any, path: KeyPath) -> None:
    """Route-level templates and field mappings must at least parse before any submission comes."""
    from flows.mapping import check_template

    if not isinstance(targets, list):
        return
    for index, target in enumerate(targets):
        if not isinstance(target, dict):
            continue
        texts: list[tuple[KeyPath, Any]] = [((*path, index, "template"), target.get("template"))]
        mapping = target.get("map")
        if isinstance(mapping, dict):
            texts += [((*path, index, "map", field), text) for field, text in mapping.items()]
        for text_path, text in texts:
            if isinstance(text, str) and (problem := check_template(text)):
                reporter.error(text_path, f"invalid template: {problem}")


def warn_unused(reporter: Reporter, data: dict[str, Any]) -> None:
    """Sources nobody routes from and destinations nobody routes to are likely mistakes."""
    sources, destinations = data.get("sources") or {}, data.get("destinations") or {}
    routes = [r for r in data.get("routes") or [] if isinstance(r, dict)]
    if not sources:
        reporter.warn(("sources",), "no sources configured: the hub will not accept any webhook")
    taken = {ref for r in routes for _, ref in _references(r.get("from"), ())}
    if "*" not in taken:
        for source_id in sources:
            if source_id not in taken:
                reporter.warn(
                    ("sources", source_id),
                    "no route takes from this source: its submissions are stored, not delivered",
                )
    if isinstance(sources, dict):
        for index, route in enumerate(data.get("routes") or []):
            if isinstance(route, dict) and unreachable(route, sources):
                reporter.warn(
                    ("routes", index, "from"),
                    "no configured source can reach this route: `from` names no defined source and"
                    f' not "*" ({_defined("sources", sources)}); it never runs',
                )
    live = [r for r in routes if not (isinstance(sources, dict) and unreachable(r, sources))]
    named = {ref for r in routes for _, ref in _targets(r.get("to"), ())}
    sent = {ref for r in live for _, ref in _targets(r.get("to"), ())}
    sent |= alert_destinations(data.get("alerts"))
    for dest_id in destinations:
        if dest_id in named and dest_id not in sent:
            reporter.warn(
                ("destinations", dest_id),
                "only routes no source can reach send to this destination: nothing will be delivered here",
            )
        elif dest_id not in sent:
            reporter.warn(("destinations", dest_id), "no route sends to this destination")


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _check_id(reporter: Reporter, path: KeyPath, value: Any, what: str, why: str) -> None:
    if isinstance(value, str) and not ID_PATTERN.fullmatch(value):
        reporter.error(path, f"invalid {what} {value!r} {why}: {_ID_RULE}", at="key")


def _references(value: Any, path: KeyPath) -> list[tuple[KeyPath, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, list):
        return [((*path, i), v) for i, v in enumerate(value) if isinstance(v, str)]
    return []


def _targets(value: Any, path: KeyPath) -> list[tuple[KeyPath, str]]:
    if not isinstance(value, list):
        return []
    found: list[tuple[KeyPath, str]] = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            found.append(((*path, index), item))
        elif isinstance(item, dict) and isinstance(item.get("destination"), str):
            found.append(((*path, index, "destination"), item["destination"]))
    return found


def _defined(section: str, items: dict[str, Any]) -> str:
    return f"defined {section}: {', '.join(map(str, items))}" if items else f"no {section} are defined"


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
