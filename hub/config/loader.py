"""Loading connectors.yaml: parse, interpolate, validate, check, in one pass.

Public API:
- `load_config(path, environ=None) -> HubConfig`
- `load_config_with_warnings(path, environ=None) -> tuple[HubConfig, list[ConfigProblem]]`
- `parse_config(text, filename, environ=None) -> tuple[HubConfig, list[ConfigProblem]]`
  (the same from text, e.g. for a reload that already read the file)

All raise `ConfigError` whose `.problems` lists every problem found, in file order, each
`FILE:LINE:COL: key.path: message` (1-based). Warnings (a source no route takes from, a
destination no route sends to, a route no source can reach, a weak secret, no sources at
all) never fail a load; they are returned by the `*_with_warnings` / `parse_config` variants
and printed by `hookhub check`.

Key paths name route items by their `name` when they have one (`routes[all-leads].to[0]`),
by index otherwise (`routes[2]`). A missing key is positioned at the key that owns the
mapping it is missing from; an unknown key at itself; a bad value at the value.

Environment interpolation (`${VAR}`, `${VAR:-default}`, `$$`) applies to every string
value before validation; see hub.config.envsubst. `environ` defaults to os.environ.

On success every source has `options` (its connector's Options instance) and every
destination `settings` (its type's Config instance).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hub.alerts.checks import check_alerts
from hub.config.envsubst import resolve_tree
from hub.config.models import HubConfig
from hub.config.positions import Locator, YamlSyntaxError, parse_yaml
from hub.config.problems import ConfigError, ConfigProblem, Reporter
from hub.config.route_checks import check_routes, warn_unused
from hub.config.semantic import check_admin, check_destinations, check_retention, check_sources, check_store
from hub.config.validation import report_validation_error

__all__ = ["ConfigError", "ConfigProblem", "load_config", "load_config_with_warnings", "parse_config"]

WHERE_CONFIG = "name the config file with --config FILE, or set HOOKHUB_CONFIG to its path"
# Sections keyed by id: a duplicate key there is a duplicate id.
_ID_SECTIONS = frozenset({"sources", "destinations"})
_SECTIONS = (
    "sources",
    "destinations",
    "routes",
    "server",
    "dispatch",
    "alerts",
    "retention",
    "admin",
    "store",
)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> HubConfig:
    """The validated configuration in `path`; raises ConfigError listing every problem."""
    return load_config_with_warnings(path, environ)[0]


def load_config_with_warnings(
    path: str | Path, environ: Mapping[str, str] | None = None
) -> tuple[HubConfig, list[ConfigProblem]]:
    filename = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(filename, 1, 1, "", f"not UTF-8 text: {exc.reason}")]) from None
    except FileNotFoundError as exc:
        # Most often the command ran elsewhere than the config's directory: say how to point at it.
        message = f"cannot read: {exc.strerror or exc}; {WHERE_CONFIG}"
        raise ConfigError([ConfigProblem(filename, 1, 1, "", message)]) from None
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(filename, 1, 1, "", f"cannot read: {exc.strerror or exc}")]
        ) from None
    return parse_config(text, filename, environ)


def parse_config(
    text: str, filename: str, environ: Mapping[str, str] | None = None
) -> tuple[HubConfig, list[ConfigProblem]]:
    """Validate YAML `text`; `filename` is only used in problem positions."""
    try:
        tree, duplicates = parse_yaml(text)
    except YamlSyntaxError as exc:
        raise ConfigError([ConfigProblem(filename, exc.line, exc.col, "", exc.message)]) from None
    reporter = Reporter(filename, Locator(tree))

    for dup in duplicates:
        owner = reporter.locator.path_of(dup.mapping)
        if owner is None:  # inside a subtree ruamel dropped as a duplicate itself
            owner = ()
        what = "id" if owner in {(s,) for s in _ID_SECTIONS} else "key"
        first = reporter.locator.key_pos((*owner, dup.key))[0]
        message = f"duplicate {what} {dup.key!r} (first defined at line {first})"
        reporter.at(dup.line, dup.col, (*owner, dup.key), message)

    data, issues = resolve_tree(tree, os.environ if environ is None else environ)
    for issue_path, message in issues:
        reporter.error(issue_path, message)
        reporter.tainted.add(issue_path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        reporter.error((), f"expected a mapping of sections ({', '.join(_SECTIONS)}) at the top level")
        raise ConfigError(reporter.sorted_errors())
    # A section whose entries are all commented out is null; it means "none", not an error.
    data = {k: v for k, v in data.items() if not (k in _SECTIONS and v is None)}

    config = _validate(reporter, data)
    options, reconcile = check_sources(reporter, data.get("sources"))
    settings = check_destinations(reporter, data.get("destinations"))
    check_routes(reporter, data)
    check_alerts(reporter, data)  # `alerts.to` names destinations, as routes do
    check_retention(reporter, data)
    check_admin(reporter, data)
    check_store(reporter, data)
    if reporter.errors or config is None:
        raise ConfigError(reporter.sorted_errors())

    for source_id, source in config.sources.items():
        source._options = options[source_id]
        source._reconcile = reconcile.get(source_id)
    for dest_id, destination in config.destinations.items():
        destination._settings = settings[dest_id]
    warn_unused(reporter, data)
    return config, reporter.sorted_warnings()


def _validate(reporter: Reporter, data: dict[str, Any]) -> HubConfig | None:
    try:
        return HubConfig.model_validate(data)
    except ValidationError as exc:
        report_validation_error(reporter, exc, data, HubConfig)
        return None
