"""Provider connectors, one module or package per provider, found by module name.

The provider id is the module name (and the fixture folder name under
tests/fixtures/providers/). A provider with helpers of its own is a package;
modules starting with `_` hold helpers shared by several providers.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from connectors.base import Connector

_NOT_PROVIDERS = frozenset({"base", "reconciling"})


class UnknownProvider(KeyError):
    def __init__(self, provider: str) -> None:
        known = ", ".join(provider_ids())
        super().__init__(f"unknown provider {provider!r}; known providers: {known}")
        self.provider = provider

    def __str__(self) -> str:
        return str(self.args[0])


@cache
def provider_ids() -> tuple[str, ...]:
    names = (m.name for m in pkgutil.iter_modules(__path__))
    return tuple(sorted(n for n in names if not n.startswith("_") and n not in _NOT_PROVIDERS))


@cache
def get_connector(provider: str) -> Connector:
    if provider not in provider_ids():
        raise UnknownProvider(provider)
    module = importlib.import_module(f"{__name__}.{provider}")
    connector = getattr(module, "connector", None)
    if not isinstance(connector, Connector):
        raise TypeError(f"connectors/{provider}.py must define `connector = <Connector subclass>()`")
    return connector


def all_connectors() -> list[Connector]:
    return [get_connector(p) for p in provider_ids()]
