"""Destination types, one module or package per type, found by module name.

A module (or a package's `__init__.py`) defines `destination = <Destination subclass>()`;
modules starting with `_` hold helpers shared by several types; the type name used in
connectors.yaml is the module's `destination.type`.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from flows.destinations.base import Destination

_NOT_TYPES = frozenset({"base"})


class UnknownDestinationType(KeyError):
    def __init__(self, type_name: str) -> None:
        known = ", ".join(destination_types())
        super().__init__(f"unknown destination type {type_name!r}; known types: {known}")

    def __str__(self) -> str:
        return str(self.args[0])


@cache
def _modules() -> dict[str, Destination[Any]]:
    found: dict[str, Destination[Any]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in _NOT_TYPES:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        dest = getattr(module, "destination", None)
        if not isinstance(dest, Destination):
            raise TypeError(f"flows/destinations/{info.name}.py must define `destination = <Destination>()`")
        found[dest.type] = dest
    return found


def destination_types() -> tuple[str, ...]:
    return tuple(sorted(_modules()))


def get_destination(type_name: str) -> Destination[Any]:
    """The destination of a type named at run time, so its config type is not known statically:
    callers pass the settings validated by its own `Config` (hub/config/semantic.py), and the
    delivery path checks that once (flows/delivery.py, `deliver_rows`)."""
    try:
        return _modules()[type_name]
    except KeyError:
        raise UnknownDestinationType(type_name) from None
