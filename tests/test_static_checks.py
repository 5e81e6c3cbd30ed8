"""The checkers the code is written for run with the suite, so their comments are not decoration.

Each checker runs as its own process from the repository root and reads its settings from
pyproject.toml (`[tool.mypy]`: which packages, how strict; `[tool.ruff]`: line length, rule sets,
the complexity limit), exactly as a developer runs it by
hand; a failing test shows the checker's own output. The versions are pinned in the `test`
extras, so a new release cannot change the verdict.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CHECK_TIMEOUT = 240.0
"""Seconds one checker may take (mypy takes ~20 s here without its cache, ~2 s with it)."""


def _run(cmd: list[str]) -> tuple[int, str]:
    """Run `cmd` from the repository root: its exit code, and what it printed (stdout, then stderr)."""
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=CHECK_TIMEOUT, check=False)
    return done.returncode, done.stdout + done.stderr


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]' installs the pinned version)")


def test_mypy_is_clean() -> None:
    _require("mypy")
    code, output = _run([sys.executable, "-m", "mypy"])
    assert code == 0, f"mypy (settings: [tool.mypy] in pyproject.toml) is not clean:\n{output}"


CHECKED = ["hub", "connectors", "flows", "tests", "bench"]
"""What ruff lints and formats: the product's packages, and the tests and benchmarks beside them."""


def test_ruff_lint_is_clean() -> None:
    _require("ruff")
    code, output = _run([sys.executable, "-m", "ruff", "check", "--no-cache", *CHECKED])
    assert code == 0, f"ruff check (settings: [tool.ruff] in pyproject.toml) is not clean:\n{output}"


def test_ruff_format_is_applied() -> None:
    _require("ruff")
    code, output = _run([sys.executable, "-m", "ruff", "format", "--check", "--no-cache", *CHECKED])
    assert code == 0, f"files not formatted (run `ruff format {' '.join(CHECKED)}`):\n{output}"
