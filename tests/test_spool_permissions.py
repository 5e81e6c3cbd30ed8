"""The data dir is 0700 and every file the hub writes in it 0600, whatever the umask.

A served request and a delivery to a `file` destination make the hub write everything it writes
there (spool.db and its -wal/-shm, the delivered lines); a data dir left 0755 by an older hub or by
hand is tightened with a warning.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hub.spool.files import ensure_private_dir, ensure_private_file
from tests.harness import PROVIDER_FIXTURES, load_fixture, start_hub, wait_for

FIXTURE = load_fixture(PROVIDER_FIXTURES / "typeform" / "minimal.json")
FIRST_DELIVERY = 180.0  # Prefect's ephemeral server starts with the session's first flow run

CONFIG = f"""
sources:
  contact-form:
    provider: typeform
    secret: {FIXTURE["secret"]}
destinations:
  lines:
    type: file
    path: deliveries.jsonl
routes:
  - name: everything
    from: ["*"]
    to: [lines]
"""


@pytest.fixture
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def inbox_state(spool: Path, inbox_id: str) -> str | None:
    conn = sqlite3.connect(spool)
    try:
        row = conn.execute("SELECT state FROM inbox WHERE id=?", (inbox_id,)).fetchone()
    finally:
        conn.close()
    return row[0] if row else None


def test_new_data_dir_is_0700_and_every_file_0600_after_a_delivery(tmp_path: Path, umask_022: None) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    data_dir = tmp_path / "data"
    hub, server = start_hub(config, data_dir, dispatch=True)
    try:
        headers = {k: v for k, v in FIXTURE["headers"].items() if k.lower() != "content-length"}
        answer = httpx.post(
            f"{server.url}/hooks/contact-form",
            content=FIXTURE["body"].encode("utf-8"),
            headers=headers,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        inbox_id = answer.json()["id"]
        wait_for(
            lambda: inbox_state(hub.spool_path, inbox_id) == "done",
            timeout=FIRST_DELIVERY,
            what="the delivery to the file destination",
        )
        files = {p.name: mode(p) for p in data_dir.iterdir()}
    finally:
        server.stop()

    assert mode(data_dir) == 0o700
    assert {"spool.db", "spool.db-wal", "spool.db-shm", "intake.db", "deliveries.jsonl"} <= files.keys()
    assert files == dict.fromkeys(files, 0o600)


def test_an_existing_loose_data_dir_and_spool_are_tightened_with_one_warning(
    tmp_path: Path, umask_022: None, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "old"
    data_dir.mkdir(mode=0o755)
    spool = data_dir / "spool.db"
    for path in (spool, data_dir / "spool.db-wal"):
        path.write_bytes(b"")
        path.chmod(0o644)

    with caplog.at_level(logging.WARNING, logger="hookhub.spool"):
        ensure_private_dir(data_dir)
        ensure_private_file(spool)
        ensure_private_dir(data_dir)  # already private now: nothing more to say
        ensure_private_file(spool)

    assert mode(data_dir) == 0o700 and mode(spool) == 0o600 and mode(data_dir / "spool.db-wal") == 0o600
    tightened = [r for r in caplog.records if getattr(r, "event", None) == "permissions_tightened"]
    assert sorted(r.path for r in tightened) == sorted(map(str, (data_dir, spool, data_dir / "spool.db-wal")))


def test_a_shared_sticky_directory_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with caplog.at_level(logging.WARNING, logger="hookhub.spool"):
        ensure_private_dir(shared)
    assert mode(shared) == 0o1777
    assert [getattr(r, "event", None) for r in caplog.records] == ["data_dir_shared"]
