"""The admin commands of issue 14 on a real spool file: show, --json on status / deadletters /
show, resend, pause / resume, --version, and exit 2 with what exists for names that do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.cli import main as cli
from hub.spool import delivery_outcomes
from hub.spool.rows import Decision
from hub.spool.transactions import open_spool
from tests.spool_fill import store

CONFIG = """
sources:
  tf: {provider: typeform, secret: cli-secret}
destinations:
  crm: {type: file, path: crm.jsonl}
  chat: {type: file, path: chat.jsonl}
routes:
  - {name: all, from: [tf], to: [crm, chat]}
"""


@pytest.fixture
def dirs(tmp_path: Path) -> list[str]:
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    conn = open_spool(tmp_path / "data" / "spool.db")
    store(conn, "S1", 100.0, email="chloe@example.com", name="Chloé Martin", destinations=("crm", "chat"))
    delivery_outcomes.record(
        conn,
        110.0,
        [
            Decision("S1", "crm", "dead", "failed", status_code=400, error="HTTP 400: bad request"),
            Decision("S1", "chat", "delivered", "delivered", status_code=200, remote_id="1712.0001"),
        ],
    )
    conn.close()
    return ["--config", str(config), "--data-dir", str(tmp_path / "data")]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_show_prints_everything_and_json(dirs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "S1", *dirs)
    assert code == 0
    for text in (
        "Chloé Martin <chloe@example.com>",
        "Plan: pro",
        "all: -> crm, chat",
        "#1",
        "HTTP 400: bad request",
    ):
        assert text in out
    assert "remote id 1712.0001" in out
    code, out, _ = run(capsys, "show", "S1", "--json", *dirs)
    shown = json.loads(out)
    assert (code, shown["id"], shown["submission"]["email"]) == (0, "S1", "chloe@example.com")
    assert {d["destination"]: d["status"] for d in shown["deliveries"]} == {
        "crm": "dead",
        "chat": "delivered",
    }
    code, _, err = run(capsys, "show", "NOSUCH", *dirs)
    assert (code, err.strip()) == (2, "hookhub show: no submission with id 'NOSUCH'")


def test_status_and_deadletters_as_json(dirs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = dirs[3]
    code, out, _ = run(capsys, "status", "--json", "--data-dir", data_dir)
    status = json.loads(out)
    assert (code, status["stored"], status["sources"]) == (0, 1, {"tf": {"failed": 1}})
    assert status["destinations"] == {"chat": {"delivered": 1}, "crm": {"dead": 1}}
    code, out, _ = run(capsys, "deadletters", "--json", *dirs)
    letters = json.loads(out)
    assert [(x["inbox_id"], x["destination"], x["last_status_code"]) for x in letters] == [("S1", "crm", 400)]


def test_names_that_do_not_exist_exit_2(dirs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "deadletters", "--source", "nosuch", *dirs)
    assert (code, out) == (2, "")
    assert "no source named 'nosuch'" in err and "(sources: tf)" in err
    assert run(capsys, "deadletters", "--source", "tf", *dirs)[0] == 0
    code, _, err = run(capsys, "replay", "--id", "NOSUCH", *dirs)
    assert (code, "no submission with id 'NOSUCH'" in err) == (2, True)
    code, _, err = run(capsys, "resend", "--id", "S1", "--destination", "crn", *dirs)
    assert (code, err.strip()) == (2, "hookhub resend: no destination named 'crn'; configured: chat, crm")
    for command in ("pause", "resume"):
        code, _, err = run(capsys, command, "nosuch", *dirs)
        assert (code, "no destination named 'nosuch'" in err) == (2, True)


def test_resend_pause_resume(dirs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "resend", "--id", "S1", *dirs)
    assert (code, out.splitlines()[0]) == (0, "S1 -> chat: resend #1")
    code, _, err = run(capsys, "resend", "--id", "S1", *dirs)
    assert (code, "already on its way to chat" in err) == (1, True)
    assert run(capsys, "pause", "crm", "--reason", "CRM maintenance", *dirs)[0] == 0
    code, out, _ = run(capsys, "status", "--data-dir", dirs[3])
    assert "paused     crm since" in out and "CRM maintenance" in out
    code, out, _ = run(capsys, "resume", "crm", *dirs)
    assert out.splitlines() == [
        "crm resumed",
        "1 dead letters for it stay dead: `hookhub replay --all` (or --id) sends them again",
    ]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("hookhub 0.")
