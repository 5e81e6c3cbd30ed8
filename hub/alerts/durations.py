"""Durations in connectors.yaml: `30s`, `10m`, `6h`, `1d`, or a number of seconds."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")
_RULE = "must be a duration such as 30s, 10m, 6h or 1d (or a number of seconds), above zero"


def parse_duration(value: Any) -> float:
    """Seconds in `value`; raises ValueError with the accepted forms otherwise."""
    if isinstance(value, bool):
        raise ValueError(_RULE)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _PATTERN.fullmatch(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(_RULE)
    if seconds <= 0:
        raise ValueError(_RULE)
    return seconds


def format_duration(seconds: float) -> str:
    """The largest whole unit that states `seconds` exactly (`600` -> `10m`), for messages."""
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A config value in seconds, written as a duration or a plain number."""
