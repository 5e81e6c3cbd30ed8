"""How the benchmarks print a figure measured over rounds: its median and its range."""

from __future__ import annotations

import statistics


def spread(values: list[float], digits: int = 0, unit: str = "") -> str:
    """`median [min-max]` of the rounds, e.g. `1,204/s [1,100-1,310]`."""
    return (
        f"{statistics.median(values):,.{digits}f}{unit} [{min(values):,.{digits}f}-{max(values):,.{digits}f}]"
    )
