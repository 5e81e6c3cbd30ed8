"""Roles on a shared PostgreSQL store (issue 15): receivers and workers as real processes.

`hookhub serve --no-dispatch` twice and `hookhub worker` once on one scratch schema deliver
every signed submission once; `worker` refuses the SQLite store; the maintenance lease is held
by one of two workers and taken over when its holder dies; `store:` and HOOKHUB_STORE choose
the store, and no message shows the URL's password.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from hub.config.check import check_file
from hub.config.loader import load_config
from hub.store.location import PostgresStore, SqliteStore, store_from_setting
from tests.cluster import Role, hookhub, spawn
from tests.fake_destination import FakeDestination, by_webhook_id
from tests.harness import PROVIDER_FIXTURES, free_socket, load_fixture, wait_for
from tests.postgres import URL, scratch_schema

FIXTURE = load_fixture(PROVIDER_FIXTURES / "typeform" / "full_event_registration.json")
SECRET = str(FIXTURE["secret"])
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LEASE = 3.0
SUBMISSIONS = 12


def _config(path: Path, destination_url: str, extra: str = "") -> Path:
    path.write_text(
        f"""
sources:
  contact-form: {{provider: typeform, secret: {SECRET}}}
destinations:
  crm: {{type: webhook, url: "{destination_url}", secret: {WHSEC}}}
routes:
  - {{name: crm, from: [contact-form], to: [crm]}}
{extra}
""",
        encoding="utf-8",
    )
    return path


def _signed(n: int) -> tuple[bytes, dict[str, str]]:
    """The Typeform fixture as a new submission (its own event id and token), signed as Typeform does."""
    payload = json.loads(FIXTURE["body"])
    payload["event_id"] = f"roles-{n}-{time.time_ns()}"
    payload["form_response"]["token"] = f"token-{n}-{time.time_ns()}"
    body = json.dumps(payload).encode()
    digest = base64.b64encode(hmac.digest(SECRET.encode(), body, hashlib.sha256)).decode()
    return body, {"content-type": "application/json", "typeform-signature": f"sha256={digest}"}


def _env(tmp_path: Path, store: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOOKHUB_", "PREFECT_API_URL"))}
    env.update({"PREFECT_HOME": str(tmp_path / "prefect"), **extra})
    if store is not None:
        env["HOOKHUB_STORE"] = store
    return env


def _alive(role: Role) -> bool:
    assert role.running(), f"{role.name} exited {role.proc.returncode}:\n{role.text()[-3000:]}"
    return True


def _healthy(role: Role) -> bool:
    _alive(role)
    try:
        return httpx.get(f"{role.url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def _processes() -> Iterator[list[Role]]:
    started: list[Role] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.stop()


def _hookhub(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A `hookhub` command run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _port() -> int:
    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def _receiver(tmp_path: Path, config: Path, url: str, name: str) -> Role:
    port = _port()
    args = ["serve", "--no-dispatch", "--config", str(config), "--data-dir", str(tmp_path / name)]
    return spawn(
        name, hookhub(*args, "--port", str(port)), _env(tmp_path, url), tmp_path / f"{name}.log", port
    )


def _worker(tmp_path: Path, config: Path, url: str, name: str, **env: str) -> Role:
    args = ["worker", "--config", str(config), "--data-dir", str(tmp_path / name), "--lease", f"{LEASE:g}"]
    return spawn(name, hookhub(*args), _env(tmp_path, url, **env), tmp_path / f"{name}.log")


def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    """The rows `sql` reads; none while the first process has not created the schema yet."""
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            return list(conn.execute(sql).fetchall())
        except psycopg.errors.UndefinedTable:
            return []


def _owner_of(url: str, worker: Role) -> str | None:
    found = _rows(url, f"SELECT owner FROM leases WHERE pid = {worker.proc.pid}")
    return str(found[0][0]) if found else None


@pytest.mark.timeout(240)
def test_two_receivers_and_a_worker_deliver_every_submission_once(tmp_path: Path) -> None:
    fake = FakeDestination().start()
    try:
        with scratch_schema("roles_e2e") as url, _processes() as procs:
            config = _config(tmp_path / "connectors.yaml", fake.url("/hook"))
            receivers = [_receiver(tmp_path, config, url, f"receiver{n}") for n in (1, 2)]
            procs.extend(receivers)
            wait_for(lambda: all(_healthy(r) for r in receivers), timeout=60, what="both receivers' /healthz")
            worker = _worker(tmp_path, config, url, "worker")
            procs.append(worker)
            ids = []
            for n in range(SUBMISSIONS):
                body, headers = _signed(n)
                answer = httpx.post(
                    f"{receivers[n % 2].url}/hooks/contact-form",
                    content=body,
                    headers=headers,
                    timeout=30,
                )
                assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text
                ids.append(answer.json()["id"])
            delivered = "SELECT count(*) FROM deliveries WHERE status = 'delivered'"
            wait_for(
                lambda: _alive(worker) and _rows(url, delivered) == [(SUBMISSIONS,)],
                timeout=150,
                what="every submission delivered and recorded",
            )
            owner = _owner_of(url, worker)
            settled = _rows(url, "SELECT inbox_id, status, claimed_by FROM deliveries ORDER BY inbox_id")
            shown = _hookhub(
                ["status", "--data-dir", str(tmp_path), "--config", str(config)], _env(tmp_path, url)
            )
        copies = by_webhook_id(fake.received("/hook"))
    finally:
        fake.stop()
    assert sorted(copies.values()) == [1] * SUBMISSIONS  # each once on the wire
    assert sorted(str(inbox_id) for inbox_id, _, _ in settled) == sorted(ids)
    assert {status for _, status, _ in settled} == {"delivered"}
    assert owner is not None and owner.startswith(f"{os.uname().nodename}-{worker.proc.pid}-")
    assert shown.returncode == 0, shown.stderr
    assert f"{SUBMISSIONS} webhooks stored in postgresql://127.0.0.1:5432/" in shown.stdout
    assert f"worker     {os.uname().nodename} pid {worker.proc.pid}" in shown.stdout  # its live lease
    assert "hub        not running" not in shown.stdout
    log = worker.text()
    assert f"worker {owner} delivering from " in log and "postgresql://127.0.0.1" in log


def _cut_connections(*roles: Role) -> int:
    """Terminate every PostgreSQL backend serving `roles` (found by the pid in their connections'
    application_name), as a server restart does to its clients; returns how many were cut."""
    pids = "|".join(str(role.proc.pid) for role in roles)
    with psycopg.connect(URL, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name ~ %s AND pid <> pg_backend_pid()",
            (f"^hookhub.* pid ({pids})$",),
        ).fetchall()
    return len(rows)


def _post(receiver: Role, body: bytes, headers: dict[str, str]) -> str | None:
    """One signed submission; its id if acknowledged (a provider would retry anything else)."""
    try:
        answer = httpx.post(f"{receiver.url}/hooks/contact-form", content=body, headers=headers, timeout=30)
    except httpx.HTTPError:
        return None
    return str(answer.json()["id"]) if answer.status_code == 200 else None


@pytest.mark.timeout(240)
def test_a_receiver_and_a_worker_carry_on_after_their_database_connections_are_cut(tmp_path: Path) -> None:
    fake = FakeDestination().start()
    try:
        with scratch_schema("roles_cut") as url, _processes() as procs:
            config = _config(tmp_path / "connectors.yaml", fake.url("/hook"))
            receiver = _receiver(tmp_path, config, url, "receiver")
            procs.append(receiver)
            wait_for(lambda: _healthy(receiver), timeout=60, what="the receiver's /healthz")
            worker = _worker(tmp_path, config, url, "worker")
            procs.append(worker)
            delivered = "SELECT count(*) FROM deliveries WHERE status = 'delivered'"
            acked = [i for i in (_post(receiver, *_signed(n)) for n in range(4)) if i is not None]
            assert len(acked) == 4
            wait_for(lambda: _alive(worker) and _rows(url, delivered) == [(4,)], timeout=120, what="4 sent")

            # Every connection of both processes cut at once: pooled ones, the writer's, the lease
            # keeper's and the LISTEN connection.
            assert _cut_connections(receiver, worker) >= 3
            for n in range(4, 12):  # as a provider retries: the same request until acknowledged
                request, deadline = _signed(n), time.monotonic() + 30
                while (submission := _post(receiver, *request)) is None:
                    assert time.monotonic() < deadline, f"submission {n} never acknowledged after the cut"
                    time.sleep(0.2)
                acked.append(submission)
            wait_for(
                lambda: _alive(worker) and _rows(url, delivered) == [(12,)],
                timeout=120,
                what="every submission acknowledged after the cut delivered",
            )
            settled = _rows(url, "SELECT inbox_id, status FROM deliveries ORDER BY inbox_id")
            assert _alive(receiver) and _alive(worker)
        copies = by_webhook_id(fake.received("/hook"))
    finally:
        fake.stop()
    assert sorted(str(i) for i, _ in settled) == sorted(acked)
    assert sorted(copies.values()) == [1] * 12


def test_worker_refuses_the_sqlite_store(tmp_path: Path) -> None:
    config = _config(tmp_path / "connectors.yaml", "http://127.0.0.1:9/hook")
    done = _hookhub(
        ["worker", "--config", str(config), "--data-dir", str(tmp_path / "d")], _env(tmp_path, None)
    )
    assert done.returncode == 2, done.stderr
    assert "the store is SQLite" in done.stderr and "run `hookhub serve`" in done.stderr


def test_an_unreachable_store_is_one_line_without_the_password(tmp_path: Path) -> None:
    config = _config(tmp_path / "connectors.yaml", "http://127.0.0.1:9/hook")
    closed = _port()
    url = f"postgresql://hookhub:hunter2@127.0.0.1:{closed}/hub"
    for command in (["worker"], ["serve", "--port", str(_port())]):
        args = [*command, "--config", str(config), "--data-dir", str(tmp_path / "d")]
        done = _hookhub(args, _env(tmp_path, url))
        assert done.returncode == 1, done.stderr
        assert f"cannot reach the store postgresql://127.0.0.1:{closed}/hub: " in done.stderr
        assert "check HOOKHUB_STORE / store:" in done.stderr and "hunter2" not in done.stderr


@pytest.mark.timeout(180)
def test_one_of_two_workers_holds_the_maintenance_lease_and_the_other_takes_it_over(tmp_path: Path) -> None:
    config = _config(tmp_path / "connectors.yaml", "http://127.0.0.1:9/hook")
    # Prefect away: nothing is claimed, but the leases are kept (and no Prefect server starts).
    away = {"PREFECT_API_URL": f"http://127.0.0.1:{_port()}/api"}
    with scratch_schema("roles_maintenance") as url, _processes() as procs:
        workers = [_worker(tmp_path, config, url, f"worker{n}", **away) for n in (1, 2)]
        procs.extend(workers)
        wait_for(
            lambda: all(_alive(w) and _owner_of(url, w) for w in workers),
            timeout=60,
            what="both workers' leases",
        )
        owners = {w.name: _owner_of(url, w) for w in workers}

        def holder() -> str | None:
            found = _rows(url, "SELECT holder FROM role_leases WHERE name = 'maintenance'")
            return str(found[0][0]) if found else None

        wait_for(lambda: holder() is not None, timeout=10, what="a maintenance holder")
        first = holder()
        assert first in {f"maintenance:{o}" for o in owners.values()}
        # Renewed by its holder through several turns of both keepers, never taken by the other.
        time.sleep(LEASE * 1.5)  # a span of renewals to observe, not a wait for a condition
        assert holder() == first
        held, other = workers if first == f"maintenance:{owners['worker1']}" else workers[::-1]
        assert '"role_taken"' in held.text() and '"role_taken"' not in other.text()

        # Frozen past its lease, the other worker loses it (the holder's keeper drops it); thawed,
        # it says so and goes on under a new owner id.
        other.signal(signal.SIGSTOP)
        try:
            wait_for(
                lambda: _owner_of(url, other) is None,
                timeout=LEASE * 3,
                what="the frozen worker's lease dropped",
            )
        finally:
            other.signal(signal.SIGCONT)
        wait_for(
            lambda: '"lease_lost"' in other.text(), timeout=LEASE * 2, what="the thawed worker's lease_lost"
        )
        wait_for(
            lambda: _owner_of(url, other) not in (None, owners[other.name]), timeout=5, what="its new lease"
        )
        renamed = _owner_of(url, other)

        held.kill()  # no clean stop: its lease must run out
        killed_at = time.monotonic()
        wait_for(
            lambda: holder() == f"maintenance:{renamed}",
            timeout=LEASE * 3,
            what="the other worker to take the maintenance lease over",
        )
        assert time.monotonic() - killed_at <= LEASE + LEASE / 3 + 2
        wait_for(lambda: '"role_taken"' in other.text(), timeout=5, what="the new holder's role_taken line")


def test_store_comes_from_the_config_or_hookhub_store_which_wins(tmp_path: Path) -> None:
    config = _config(tmp_path / "connectors.yaml", "http://127.0.0.1:9/hook", "store: ${DB_URL}")
    loaded = load_config(config, {"DB_URL": "postgresql://hub:hunter2@db.internal:5432/hookhub"})
    from_config = store_from_setting(loaded.store, tmp_path, environ={})
    assert (
        isinstance(from_config, PostgresStore) and from_config.key == "postgresql://db.internal:5432/hookhub"
    )
    overridden = store_from_setting(loaded.store, tmp_path, {"HOOKHUB_STORE": "postgresql://other/db"})
    assert overridden.key == "postgresql://other/db"
    assert store_from_setting(None, tmp_path, environ={}) == SqliteStore(tmp_path / "spool.db")

    code, text = check_file(config, {"DB_URL": "postgresql://hub:hunter2@db.internal:5432/hookhub"})
    assert code == 0 and "store: postgresql://db.internal:5432/hookhub" in text and "hunter2" not in text
    code, text = check_file(config, {"DB_URL": "mysql://hub:hunter2@db.internal/hookhub"})
    assert code == 1 and "store: store 'mysql://db.internal/hookhub': expected 'sqlite'" in text
    assert "hunter2" not in text
