"""Positioned configuration problems and the exception that carries them.

A problem is always reported as `FILE:LINE:COL: key.path: message` (1-based), the
format editors and CI annotate, so an admin can jump straight to the offending line.
Messages never contain configuration values: they may be secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hub.config.positions import KeyPath, Locator, render_path

Anchor = Literal["key", "value"]


@dataclass(frozen=True, order=True)
class ConfigProblem:
    file: str
    line: int
    col: int
    key_path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        if self.key_path:
            return f"{where}: {self.key_path}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """connectors.yaml is invalid; `problems` lists every problem found, in file order."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


@dataclass
class Reporter:
    """Collects errors and warnings for one file, positioned through its Locator.

    `tainted` holds paths whose scalar could not be interpolated: anything reported
    at or below them later is a consequence of that one problem, not news.
    """

    file: str
    locator: Locator
    errors: list[ConfigProblem] = field(default_factory=list)
    warnings: list[ConfigProblem] = field(default_factory=list)
    tainted: set[KeyPath] = field(default_factory=set)

    def error(
        self, path: KeyPath, message: str, at: Anchor = "value", pos_path: KeyPath | None = None
    ) -> None:
        """Report at `path`; `pos_path` positions it elsewhere (a missing key at its owner)."""
        if any(path[: len(t)] == t for t in self.tainted):
            return
        self._add(self.errors, path, message, at, pos_path)

    def warn(self, path: KeyPath, message: str, at: Anchor = "key") -> None:
        self._add(self.warnings, path, message, at, None)

    def at(self, line: int, col: int, path: KeyPath, message: str) -> None:
        """An error whose position is known already (YAML marks), not derived from a path."""
        self._append(
            self.errors, ConfigProblem(self.file, line, col, render_path(self.locator.root, path), message)
        )

    def _add(
        self, bucket: list[ConfigProblem], path: KeyPath, message: str, at: Anchor, pos_path: KeyPath | None
    ) -> None:
        where = path if pos_path is None else pos_path
        line, col = self.locator.key_pos(where) if at == "key" else self.locator.value_pos(where)
        self._append(
            bucket, ConfigProblem(self.file, line, col, render_path(self.locator.root, path), message)
        )

    @staticmethod
    def _append(bucket: list[ConfigProblem], problem: ConfigProblem) -> None:
        # Aliased YAML nodes and overlapping checks can find the same thing twice.
        if problem not in bucket:
            bucket.append(problem)

    def sorted_errors(self) -> list[ConfigProblem]:
        return sorted(self.errors, key=lambda p: (p.line, p.col))

    def sorted_warnings(self) -> list[ConfigProblem]:
        return sorted(self.warnings, key=lambda p: (p.line, p.col))
