"""Console pages and commands beyond access: dead letters' preview and bulk replay, the console on
its own address (serve --admin-port), `hookhub admin hash-password`, a bad hash in `hookhub check`."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from hub.cli import main as cli
from hub.config.check import check_file
from hub.console.passwords import verify
from hub.submission import Submission
from tests.harness import free_socket, serve_command, start_hub, wait_for
from tests.test_console_support import (
    CSRF,
    ENVIRON,
    PASSWORD,
    PASSWORD_HASH,
    SECRETS,
    config_text,
    log_in,
    post_sample,
    write,
)


def _kill_crm(spool: Path, ids: list[str], reason: str) -> None:
    conn = sqlite3.connect(spool)
    try:
        with conn:
            for inbox_id in ids:
                conn.execute(
                    "INSERT INTO deliveries (inbox_id, destination, route, status, attempts, next_attempt_at,"
                    " last_error, created_at, updated_at) VALUES (?, 'crm', 'all', 'dead', 3, 0, ?, 0, 0)",
                    (inbox_id, reason),
                )
                conn.execute("UPDATE inbox SET state = 'failed' WHERE id = ?", (inbox_id,))
    finally:
        conn.close()


def _statuses(spool: Path) -> dict[str, str]:
    conn = sqlite3.connect(spool)
    try:
        return dict(
            conn.execute("SELECT inbox_id, status FROM deliveries WHERE destination='crm'").fetchall()
        )
    finally:
        conn.close()


def test_dead_letters_grouped_previewed_and_replayed_in_bulk(tmp_path: Path) -> None:
    hub, server = start_hub(write(tmp_path / "c.yaml"), tmp_path / "data", environ=ENVIRON)
    try:
        ids = post_sample(hub.config, server.url, 3)
        _kill_crm(hub.spool_path, ids[:2], "HTTP 422: unknown field")
        _kill_crm(hub.spool_path, ids[2:], "HTTP 500: boom")
        with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as client:
            log_in(client)
            groups = client.get("/admin/deadletters").text
            assert "HTTP 422: unknown field" in groups and "HTTP 500: boom" in groups
            preview = client.get(
                "/admin/deadletters", params={"destination": "crm", "reason": "HTTP 422: unknown field"}
            )
            assert "Replay preview: 2 dead letter(s)" in preview.text
            assert ids[0] in preview.text and ids[1] in preview.text and ids[2] not in preview.text
            assert set(_statuses(hub.spool_path).values()) == {"dead"}  # a preview changes nothing
            found = CSRF.search(preview.text)
            assert found
            csrf = found.group(1)
            form = {"csrf": csrf, "destination": "crm", "reason": "HTTP 422: unknown field", "source": ""}
            done = client.post("/admin/deadletters/replay", data=form)
            assert done.status_code == 303
            assert "2 dead letter(s) put back" in client.get(done.headers["location"]).text
        assert _statuses(hub.spool_path) == {ids[0]: "pending", ids[1]: "pending", ids[2]: "dead"}
    finally:
        server.stop()


def test_console_on_its_own_address(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(config_text().replace("${HASH}", PASSWORD_HASH.replace("$", "$$")), encoding="utf-8")
    port, admin_port = (s.getsockname()[1] for s in (free_socket(), free_socket()))
    command = serve_command(config, tmp_path / "data", port, "--no-dispatch", "--admin-port", str(admin_port))
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("wb"), start_new_session=True)
    try:

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{admin_port}/admin/login", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, 0.1, "the console on its own port")
        public = httpx.get(f"http://127.0.0.1:{port}/admin/login", timeout=5)
        assert public.status_code == 404 and public.json() == {"error": "Not Found"}  # nothing tells where
        assert httpx.get(f"http://127.0.0.1:{port}/submissions/01ABC", timeout=5).status_code == 404
        with httpx.Client(base_url=f"http://127.0.0.1:{admin_port}", timeout=30) as client:
            assert log_in(client).status_code == 303
            assert client.get("/admin/destinations").status_code == 200
            assert client.get("/submissions/01ABC").headers["location"] == "/admin/submissions/01ABC"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()


def test_hash_password_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli(["admin", "hash-password", "--stdin"]) == 0
    printed = capsys.readouterr()
    assert verify(printed.out.strip(), PASSWORD) and PASSWORD not in printed.out + printed.err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli(["admin", "hash-password", "--stdin"]) == 2


def test_check_reports_a_bad_hash_without_showing_it(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml")
    code, text = check_file(config, {"HASH": "not-a-hash-but-maybe-a-password"})
    assert code == 1 and "admin.password_hash: not a hookhub password hash" in text
    assert "not-a-hash-but-maybe-a-password" not in text


def test_erase_a_person_from_the_console(tmp_path: Path) -> None:
    hub, server = start_hub(write(tmp_path / "c.yaml"), tmp_path / "data", environ=ENVIRON)
    try:
        [inbox_id] = post_sample(hub.config, server.url)
        spool = sqlite3.connect(hub.spool_path)
        try:  # what the pipeline would have stored: the normalized submission (no dispatcher here)
            with spool:
                stored = Submission(
                    id=inbox_id,
                    source="demo",
                    provider="standard_webhooks",
                    event_id="e1",
                    submitted_at=datetime.now(UTC),
                    email="ada@example.org",
                    name="Ada Lovelace",
                )
                spool.execute(
                    "UPDATE inbox SET state='done', submission=? WHERE id=?",
                    (stored.model_dump_json(), inbox_id),
                )
        finally:
            spool.close()
        with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as client:
            log_in(client)
            page = client.get(f"/admin/submissions/{inbox_id}").text
            csrf = CSRF.search(page)
            assert csrf and "Erase everything of this e-mail address" in page
            dry = client.post(
                f"/admin/submissions/{inbox_id}/erase", data={"csrf": csrf.group(1), "by": "email"}
            )
            assert dry.status_code == 200 and "would be anonymized" in dry.text and inbox_id in dry.text
            assert (
                "ada@example.org" in client.get(f"/admin/submissions/{inbox_id}").text
            )  # a dry run erases nothing
            form = {"csrf": csrf.group(1), "by": "email", "confirm": "yes"}
            done = client.post(f"/admin/submissions/{inbox_id}/erase", data=form)
            assert done.status_code == 200 and "anonymized" in done.text and "sent nowhere" in done.text
            after = client.get(f"/admin/submissions/{inbox_id}").text
            assert "ada@example.org" not in after and "Ada Lovelace" not in after
    finally:
        server.stop()


def test_check_refuses_the_status_token_as_admin_token_and_warns_of_an_empty_admin(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    shared = config_text().replace(SECRETS["admin_token"], SECRETS["status"])
    config.write_text(shared, encoding="utf-8")
    code, text = check_file(config, ENVIRON)
    assert code == 1 and "admin.token: is the same as server.status_token" in text
    assert SECRETS["status"] not in text
    config.write_text(config_text(admin=False) + "admin: {session_hours: 2}\n", encoding="utf-8")
    code, text = check_file(config, ENVIRON)
    assert code == 0 and "admin: no password_hash or token: the admin console stays off" in text


def test_generated_signing_key_is_private_and_kept(tmp_path: Path) -> None:
    from hub.console.sessions import KEY_FILE, Signer, load_key

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    key = load_key(None, data_dir)
    assert (data_dir / KEY_FILE).stat().st_mode & 0o777 == 0o600 and len(key) >= 32
    assert load_key(None, data_dir) == key  # a restart keeps its sessions
    _, cookie = Signer(key).new_session(1000.0, 1)
    assert Signer(load_key(None, data_dir)).session(cookie, 1001.0) is not None
    assert Signer(load_key("x" * 40, data_dir)).session(cookie, 1001.0) is None  # a configured key wins
    assert Signer(key).session(cookie, 1000.0 + 3601) is None  # expired
