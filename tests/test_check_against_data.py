"""`hookhub check --against-data DIR` (issue 17): `when` answer labels no stored submission had.

The data dirs are real: signed provider fixtures posted to a real hub over loopback, then
claimed, normalized, routed and saved by the same functions the dispatcher's flow runs.
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.cli import main
from hub.config.label_check import answer_labels
from hub.config.loader import load_config
from hub.routing.process import route_rows
from hub.spool import claiming, routing_store
from hub.spool.schema import SPOOL_FILE
from hub.store import PostgresStore, SqliteStore, Store
from hub.submission import parse_instant
from tests.harness import PROVIDER_FIXTURES, FakeClock, load_fixture, start_hub
from tests.postgres import scratch_schema

FULL = load_fixture(PROVIDER_FIXTURES / "typeform" / "full_event_registration.json")
MINIMAL = load_fixture(PROVIDER_FIXTURES / "typeform" / "minimal.json")
TICKETS_KEY = "e8ac477c-6a15-4d4d-ac8d-9725f7758c5f"  # the fixture's ref of 'How many tickets?'

CONFIG = f"""
sources:
  signup: {{provider: typeform, secret: {FULL["secret"]}}}
  quiet: {{provider: typeform, secret: {FULL["secret"]}}}
destinations:
  out: {{type: file, path: out.jsonl}}
routes:
  - name: big-orders
    from: [signup]
    when: "answers['How many tickets'] > 2"
    to: [out]
  - name: by-label
    from: [signup]
    when: "answers['How many tickets?'] > 2 and exists(answers['Work email'])"
    to: [out]
  - name: by-key
    from: ["*"]
    when: "number(answers['{TICKETS_KEY}']) > 2 or not (answers.utm_source == 'x')"
    to: [out]
  - name: quiet-only
    from: [quiet]
    when: "answers['Anything else'] == 'x'"
    to: [out]
"""


def write_config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "connectors.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def fill(config: Path, data_dir: Path, posts: list[tuple[str, dict[str, Any]]], store: Store) -> None:
    """Post signed fixtures to a running hub, then route what it stored as the dispatcher does."""
    clock = FakeClock()
    _, server = start_hub(config, data_dir, clock=clock, store=store)
    try:
        for source, fixture in posts:
            clock.now = parse_instant(fixture["received_at"]).timestamp()  # signatures are timed
            headers = {k: v for k, v in fixture["headers"].items() if k.lower() != "content-length"}
            response = httpx.post(
                f"{server.url}/hooks/{source}", content=fixture["body"].encode(), headers=headers, timeout=30
            )
            assert response.status_code == 200, response.text
    finally:
        server.stop()
    now = clock.now + 1
    conn = store.connect()
    try:
        rows = routing_store.load_inbox(conn, claiming.claim_inbox(conn, now, 100, "test"))
        assert len(rows) == len(posts)
        routed, failed = route_rows(load_config(config, {}), rows)
        assert not failed
        routing_store.save_routing(conn, now, routed, failed)
    finally:
        conn.close()


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, Path]:
    config = write_config(tmp_path)
    data = tmp_path / "data"
    fill(config, data, [("signup", FULL), ("signup", MINIMAL)], SqliteStore(data / SPOOL_FILE))
    return config, data


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["check", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_labels_come_from_the_parsed_condition() -> None:
    text = "answers['A b'] > 1 and (not exists(answers.k) or lower(answers[\"A b\"]) in ['x']) or hidden.h"
    assert answer_labels(text) == ["A b", "k"]
    # Quoted text that only looks like a lookup is a literal, not a label.
    assert answer_labels("email == \"answers['Nope']\"") == []


def test_a_typo_warns_with_did_you_mean_and_real_labels_and_keys_do_not(
    filled: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, data = filled
    before = hashlib.sha256((data / SPOOL_FILE).read_bytes()).hexdigest()
    code, out, err = check(capsys, str(config), "--against-data", str(data))
    assert code == 0, err
    assert out[0].startswith(f"{config}: OK")
    typo = [line for line in out if "big-orders" in line]
    assert typo == [
        "warning: routes[0].when (big-orders): no recent submission of signup has an answer"
        " 'How many tickets' (2 looked at; labels seen include: 'How many tickets?', 'Email',"
        " 'Full name', 'Work email', 'Which sessions will you attend?', 'Dietary preference',"
        " 'Arrival date', 'Upload your ID', ...) — a typo? did you mean 'How many tickets?'"
    ]
    # By label ('How many tickets?', 'Work email') and by key (the ref, utm_source) resolve at
    # evaluation, so they are not reported; quiet has no data: one note, no per-label warning.
    assert not [line for line in out if "by-label" in line or "by-key" in line or "quiet-only" in line]
    assert out.count("note: no stored submissions of quiet to compare `when` labels against") == 1
    # Answer values never appear, only labels.
    text = "\n".join(out)
    assert "renee.mueller@example.de" not in text and "min@example.org" not in text and "Renée" not in text
    assert hashlib.sha256((data / SPOOL_FILE).read_bytes()).hexdigest() == before


def test_sample_looks_at_only_the_most_recent(
    filled: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, data = filled
    code, out, _ = check(capsys, str(config), "--against-data", str(data), "--sample", "1")
    assert code == 0
    # The newest is the minimal response: one question, 'Email'.
    by_label = [line for line in out if "(by-label)" in line]
    assert by_label == [
        "warning: routes[1].when (by-label): no recent submission of signup has an answer"
        " 'How many tickets?' (1 looked at; labels seen include: 'Email') — a typo?",
        "warning: routes[1].when (by-label): no recent submission of signup has an answer"
        " 'Work email' (1 looked at; labels seen include: 'Email') — a typo? did you mean 'Email'",
    ]


def test_without_against_data_no_label_is_judged(
    filled: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = filled
    code, out, _ = check(capsys, str(config))
    assert code == 0
    assert not [line for line in out if "How many tickets" in line or line.startswith("note:")]


def test_a_missing_data_dir_is_an_error_and_nothing_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    absent = tmp_path / "nowhere"
    code, out, err = check(capsys, str(config), "--against-data", str(absent))
    assert code == 2 and out == []
    assert f"error: {absent}: no hub data here (no {SPOOL_FILE})" in err.splitlines()
    assert not absent.exists()


def test_a_file_that_is_no_spool_is_an_error_and_stays_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / SPOOL_FILE).write_bytes(b"")  # SQLite reads an empty file as an empty database
    code, _, err = check(capsys, str(config), "--against-data", str(data))
    assert code == 2
    assert f"error: {data / SPOOL_FILE}: no hub data here (no inbox table)" in err.splitlines()
    # Opened read-only: the hub's schema was not created in it.
    assert (data / SPOOL_FILE).read_bytes() == b""


def test_an_invalid_config_reports_its_problems_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, CONFIG.replace("answers['How many tickets'] > 2", "answers[ > 2"))
    code, out, err = check(capsys, str(config), "--against-data", str(tmp_path / "nowhere"))
    assert code == 1 and out == []
    lines = err.splitlines()
    assert lines[0].startswith(f"{config}:") and "routes[big-orders].when: invalid condition" in lines[0]
    assert lines[-1] == f"note: {tmp_path / 'nowhere'} not compared: fix the problems above first"
    assert "no hub data" not in err


def test_sample_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", str(write_config(tmp_path)), "--against-data", str(tmp_path), "--sample", "0"])
    assert exited.value.code == 2
    assert "expected a whole number of at least 1, got '0'" in capsys.readouterr().err


def test_postgres_store_named_by_hookhub_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with scratch_schema("label_check") as url:
        store = PostgresStore(url)
        store.prepare()
        config = write_config(tmp_path)
        fill(config, tmp_path / "data", [("signup", FULL)], store)
        monkeypatch.setenv("HOOKHUB_STORE", url)
        # The data dir holds no SQLite spool: the store HOOKHUB_STORE names is the one read.
        code, out, err = check(capsys, str(config), "--against-data", str(tmp_path / "elsewhere"))
    assert code == 0, err
    typo = [line for line in out if "big-orders" in line]
    assert len(typo) == 1 and "(1 looked at;" in typo[0] and "did you mean 'How many tickets?'" in typo[0]
    assert not [line for line in out if "by-label" in line or "by-key" in line]
