"""The per-row parts a flow run calls: connectors, `when` conditions and destinations.

They are looked up through a `Stages` carried by the runtime rather than imported where they
are used, so a test can run the real dispatcher and flow with one part that fails for a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors import get_connector
from connectors.base import Connector
from flows.destinations import get_destination
from flows.destinations.base import Destination
from hub.routing.plan import compiled_condition
from hub.routing.when import Condition


@dataclass(frozen=True)
class Stages:
    connector: Callable[[str], Connector] = get_connector
    """Provider id -> connector."""
    condition: Callable[[str], Condition] = compiled_condition
    """`when` text -> compiled condition."""
    destination: Callable[[str], Destination[Any]] = get_destination
    """Destination type -> destination."""
