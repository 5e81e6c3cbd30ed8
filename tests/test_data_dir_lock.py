"""One hub per data dir: a second `hookhub serve` is refused, and only a gone owner's claims go back.

The refusals run the real command; the lease rules run on a real spool file with fixed instants
and an injected "is this process alive" check.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from hub.spool import claiming, lease
from hub.spool.schema import SPOOL_FILE
from hub.spool.transactions import open_spool
from tests.harness import ServeProcess, free_socket, serve_command

NOW = 1_700_000_000.0
CONFIG = """
sources:
  demo: {provider: standard_webhooks, secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}
destinations:
  out: {type: file, path: out.jsonl}
routes:
  - {name: all, from: [demo], to: [out]}
"""


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    return config


def _serve(config: Path, data_dir: Path, port: int) -> subprocess.CompletedProcess[str]:
    command = [*serve_command(config, data_dir, port), "--no-dispatch"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(180)
def test_a_second_serve_on_the_same_data_dir_is_refused_naming_the_first(tmp_path: Path) -> None:
    config, data_dir = _config(tmp_path), tmp_path / "data"
    first = ServeProcess(config, data_dir, tmp_path / "prefect", tmp_path / "first.log")
    try:
        sock = free_socket()
        port = sock.getsockname()[1]
        sock.close()
        second = _serve(config, data_dir, port)
        assert second.returncode == 1
        assert second.stderr.strip() == (
            f"hookhub: not starting: another hub (pid {first.proc.pid}, port {first.port}) owns {data_dir};"
            " stop it first or use another --data-dir"
        )
        assert httpx.get(f"{first.url}/healthz", timeout=5).status_code == 200  # undisturbed
    finally:
        first.kill()
    # The kernel dropped the lock with the killed hub: the data dir is free again at once.
    again = ServeProcess(config, data_dir, tmp_path / "prefect", tmp_path / "again.log")
    assert again.terminate() == 0


@pytest.mark.timeout(120)
def test_a_taken_port_is_one_line_and_exit_1_before_anything_starts(tmp_path: Path) -> None:
    config, data_dir = _config(tmp_path), tmp_path / "data"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        served = _serve(config, data_dir, port)
    assert served.returncode == 1
    assert served.stderr.strip() == (
        f"hookhub: not starting: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert not (data_dir / SPOOL_FILE).exists()  # no spool opened, no "listening" line, no Prefect


def _spool(tmp_path: Path) -> sqlite3.Connection:
    conn = open_spool(tmp_path / SPOOL_FILE)
    for n in range(4):
        conn.execute(
            "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, state, body)"
            " VALUES (?, ?, 'demo', 'standard_webhooks', ?, 'submission', 'pending', x'7b7d')",
            (f"S{n}", NOW + n, f"e{n}"),
        )
    return conn


def _states(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT id, state FROM inbox ORDER BY id").fetchall())


def test_recover_puts_back_only_the_claims_of_owners_that_are_gone(tmp_path: Path) -> None:
    conn = _spool(tmp_path)
    lease.hold(conn, lease.Owner("live", 101, "host-a", 8000), NOW)
    lease.hold(conn, lease.Owner("killed", 102, "host-a", 8001), NOW)
    assert claiming.claim_inbox(conn, NOW, 2, "live") == ["S0", "S1"]
    assert claiming.claim_inbox(conn, NOW, 1, "killed") == ["S2"]
    assert claiming.claim_inbox(conn, NOW, 1, "never-leased") == ["S3"]  # e.g. written before leases

    recovered = lease.recover(conn, NOW + 1, alive=lambda pid, host: pid == 101)

    assert recovered == (2, 0)
    assert _states(conn) == {"S0": "claimed", "S1": "claimed", "S2": "pending", "S3": "pending"}
    assert [r[0] for r in conn.execute("SELECT owner FROM leases")] == ["live"]


def test_an_expired_lease_is_gone_even_if_its_pid_runs_and_renewal_keeps_it(tmp_path: Path) -> None:
    conn = _spool(tmp_path)
    lease.hold(conn, lease.Owner("renewing", 101, "h", None), NOW, ttl=60)
    lease.hold(conn, lease.Owner("frozen", 102, "h", None), NOW, ttl=60)
    claiming.claim_inbox(conn, NOW, 1, "renewing")
    claiming.claim_inbox(conn, NOW, 1, "frozen")
    assert lease.renew(conn, "renewing", NOW + 50, ttl=60)

    assert lease.recover(conn, NOW + 61, alive=lambda pid, host: True) == (1, 0)

    assert _states(conn)["S0"] == "claimed" and _states(conn)["S1"] == "pending"
    assert not lease.renew(conn, "frozen", NOW + 62)  # it must take a lease again before claiming


def test_deliveries_in_sending_carry_their_owner_however_they_got_there(tmp_path: Path) -> None:
    conn = _spool(tmp_path)
    lease.hold(conn, lease.Owner("live", 101, "h", None), NOW)
    claiming.claim_inbox(conn, NOW, 1, "live")
    conn.executemany(
        "INSERT INTO deliveries (inbox_id, destination, route, status, attempts, next_attempt_at,"
        " created_at) VALUES (?, 'out', 'all', 'pending', 0, ?, ?)",
        [("S0", NOW, NOW), ("S1", NOW, NOW)],
    )
    # Routing a claimed submission sends its deliveries at once (no owner in that UPDATE).
    conn.execute("UPDATE deliveries SET status='sending' WHERE inbox_id='S0'")
    assert claiming.claim_due(conn, NOW, 10, "gone") == [("S1", "out")]

    assert lease.recover(conn, NOW + 1, alive=lambda pid, host: True) == (0, 1)

    rows = dict(conn.execute("SELECT inbox_id, status || ':' || coalesce(claimed_by, '') FROM deliveries"))
    assert rows == {"S0": "sending:live", "S1": "pending:"}


def test_process_alive_tells_a_running_pid_from_a_finished_one() -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    here = socket.gethostname()
    assert lease.process_alive(finished.pid, here) is False
    assert lease.process_alive(lease.this_process("me").pid, here) is True
    assert lease.process_alive(finished.pid, "another-host") is True  # only its expiry can tell
