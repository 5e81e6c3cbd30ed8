"""`hookhub reconcile`, `hookhub import` and the reconciliation lines of `hookhub status`, on a SQLite
data dir, with Typeform's reconciler swapped for one answering from memory (tests/reconcile_memory.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connectors.typeform import TypeformConnector
from hub.cli import main as cli
from hub.spool.transactions import open_spool
from tests.reconcile_memory import MemoryReconciler
from tests.test_reconcile_core import CONFIG

HOUR = 3600.0


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> MemoryReconciler:
    fake = MemoryReconciler()
    monkeypatch.setattr(TypeformConnector, "reconciler", fake)
    return fake


@pytest.fixture
def paths(tmp_path: Path) -> tuple[str, str]:
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    data = tmp_path / "data"
    open_spool(data / "spool.db").close()
    return str(config), str(data)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_dry_run_lists_what_is_missing_then_a_run_stores_it(
    memory: MemoryReconciler, paths: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, data = paths
    now = time.time()
    memory.add("r1", now - 2 * HOUR)
    memory.add("r2", now - 3 * HOUR)
    args = ("reconcile", "contact-form", "--config", config, "--data-dir", data, "--since", "1d")
    code, out, _ = _run(capsys, *args, "--dry-run")
    assert code == 0
    assert "2 response(s) submitted" in out and "2 missing from the spool" in out
    assert "  response r2, submitted" in out and "dry run: nothing was stored" in out
    code, out, _ = _run(capsys, *args)
    assert code == 0 and "stored 2 as reconciled submission(s); the running hub delivers them" in out
    code, out, _ = _run(capsys, *args)
    assert "0 missing from the spool" in out
    code, out, _ = _run(capsys, "status", "--data-dir", data)
    assert "reconciliation\n  contact-form  last run " in out and "2 reconciled, 0 imported so far" in out


def test_import_says_which_routes_take_the_history(
    memory: MemoryReconciler, paths: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, data = paths
    memory.add("old", time.time() - 30 * 24 * HOUR)
    code, out, _ = _run(
        capsys, "import", "contact-form", "--config", config, "--data-dir", data, "--since", "90d"
    )
    assert code == 0 and "stored 1 as imported submission(s)" in out
    assert "routes that deliver imported submissions (backfill: true): archive" in out
    assert "webhook:" not in out  # an import does not judge the webhook


def test_failures_and_usage_errors_say_what_to_do(
    memory: MemoryReconciler, paths: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, data = paths
    memory.add("r1", time.time() - HOUR)
    memory.fail_after_pages, memory.permanent = 0, True
    code, out, _ = _run(
        capsys, "reconcile", "contact-form", "--config", config, "--data-dir", data, "--since", "1d"
    )
    assert code == 1
    assert (
        "error: memory API: HTTP 401: token revoked (fix the credentials or settings, then run again)" in out
    )
    code, _, err = _run(capsys, "reconcile", "nope", "--config", config, "--data-dir", data)
    assert code == 2 and "no source 'nope' in the config (sources: contact-form)" in err
    code, _, err = _run(
        capsys, "import", "contact-form", "--config", config, "--data-dir", data, "--since", "soon"
    )
    assert code == 2 and "not a time: 'soon'" in err
    code, _, err = _run(
        capsys, "import", "contact-form", "--config", config, "--data-dir", data + "x", "--since", "1d"
    )
    assert code == 1 and "no spool at" in err


def test_the_progress_bar_shows_on_a_terminal_only(capsys: pytest.CaptureFixture[str]) -> None:
    from hub.cli_reconcile import _progress_bar
    from hub.reconcile.run import Progress

    with _progress_bar(True) as show:
        assert show is not None
        show(Progress(listed=1000, total=2500, missing=12))
    assert capsys.readouterr().out == ""  # stdout is the report's, which may be piped
    with _progress_bar(False) as none:
        assert none is None
