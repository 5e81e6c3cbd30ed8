"""`hookhub add route NAME --from SOURCE --to DESTINATION [--when EXPR]`: a route appended to connectors.yaml.

Sources and destinations must exist already (`*` is every source); the block goes at the end of
`routes:`, every other byte of the file kept, and the result is checked as `hookhub check`
does (the file is restored if it does not load, e.g. a `when` that does not parse).
Exit codes as `hookhub add source`: 0 added, 1 the result would not load, 2 usage.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from hub.cli_add import Edit, Refused, apply_edit, ask
from hub.config.edit import append_item, load_round_trip, section_keys

ROUTE_USAGE = (
    "hookhub add route NAME --from SOURCE... --to DESTINATION... [--when EXPR] [--config FILE] [--yes]"
)


def add_parser(
    kinds: argparse._SubParsersAction[argparse.ArgumentParser],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    route = kinds.add_parser("route", help="send submissions from sources to destinations")
    route.add_argument("name", nargs="?", help="the route's name (logs, dead letters, metrics)")
    route.add_argument("--from", dest="sources", action="append", help="a source id, or '*' (repeatable)")
    route.add_argument("--to", dest="destinations", action="append", help="a destination id (repeatable)")
    route.add_argument("--when", default=None, help="only submissions matching this condition (README: when)")
    route.add_argument("--yes", action="store_true", help="write without asking for confirmation")
    config_arg(route)


def cmd_add_route(args: argparse.Namespace) -> int:
    path = Path(args.config)
    planned: list[dict[str, object]] = []

    def plan(text: str) -> Edit:
        route = _plan(args, text, sys.stdin.isatty())
        planned.append(route)
        today = datetime.now(UTC).date().isoformat()
        updated = append_item(text, "routes", route, f"added by `hookhub add route` on {today}")
        return Edit(updated, f"route {route['name']!r}")

    code = apply_edit(args, path, plan)
    if code is not None:
        return code
    [route] = planned
    print(f"Added route {route['name']!r} to {path}.")
    print("A running hub reloads the file; `hookhub test-route` shows which submissions it would deliver.")
    return 0


def _plan(args: argparse.Namespace, text: str, interactive: bool) -> dict[str, object]:
    name = args.name or ask(interactive, "route name", "NAME", ROUTE_USAGE)
    routes = load_round_trip(text).get("routes") or []
    if any(isinstance(r, dict) and r.get("name") == name for r in routes):
        raise Refused(f"route {name!r} already exists in {args.config}; choose another name")
    sources = args.sources or _many(ask(interactive, "from (source ids, or *)", "--from", ROUTE_USAGE))
    destinations = args.destinations or _many(ask(interactive, "to (destination ids)", "--to", ROUTE_USAGE))
    _known(sources, [*section_keys(text, "sources"), "*"], "source")
    _known(destinations, section_keys(text, "destinations"), "destination")
    route: dict[str, object] = {"name": name, "from": sources}
    if args.when:
        # Quoted, as the README writes conditions: they hold quotes, brackets and '>'.
        route["when"] = DoubleQuotedScalarString(args.when)
    route["to"] = destinations
    return route


def _many(answer: str) -> list[str]:
    return [part for part in answer.replace(",", " ").split() if part]


def _known(ids: list[str], known: list[str], what: str) -> None:
    for entry in ids:
        if entry not in known:
            close = difflib.get_close_matches(entry, known, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            listed = ", ".join(k for k in known if k != "*") or "none"
            raise Refused(f"no {what} {entry!r}; {hint}{what}s: {listed} (add it first)")
