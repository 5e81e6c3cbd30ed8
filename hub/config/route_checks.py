"""Checks of `routes:`: unique names, references to existing sources and destinations, a `when`
that compiles, templates that render; and the warnings about what no route uses or can reach.

Like hub/config/semantic.py, they run on the interpolated plain data (see its docstring).
"""

from __future__ import annotations

import difflib
from typing import Any

from hub.config.positions import KeyPath
from hub.config.problems import Reporter
from hub.routing.when import WhenSyntaxError, compile_when


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


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
