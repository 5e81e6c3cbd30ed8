"""A hookhub cluster on one machine: Prefect's server on PostgreSQL, receivers and workers as processes.

Everything here is started in a process group of its own and always stopped, also when a test
fails: `Cluster` is a context manager whose exit stops every role (SIGTERM to the group, SIGKILL
after a deadline), then Prefect's server, then drops the scratch database and schema. Every
process gets HOOKHUB_CLUSTER=<token> in its environment, so a process that left its group (a
server starting its own session) is still found and killed at the end.

    with Cluster(tmp_path, config_text) as cluster:
        cluster.start(receivers=2, workers=2)
        ids = cluster.sender().send(20)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from bench.procs import with_environ
from tests.harness import free_socket, wait_for
from tests.postgres import URL, require_postgres, scratch_schema

PREFECT_START_SECONDS = 120.0
"""Prefect 3.9 migrates an empty database and answers /api/health in ~10-25 s here (shared cores)."""
STOP_SECONDS = 20.0
"""A role gets this long to stop on SIGTERM before its whole group is killed."""
MARK = "HOOKHUB_CLUSTER"


def free_port() -> int:
    sock = free_socket()
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


@contextmanager
def scratch_database(label: str) -> Iterator[str]:
    """A new empty database on the test server (Prefect wants one of its own); dropped after."""
    require_postgres()
    name = f"hookhub_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def asyncpg_url(database: str) -> str:
    """The test server's URL for SQLAlchemy's asyncpg driver (what Prefect's server speaks)."""
    parts = urlsplit(URL)
    return urlunsplit(("postgresql+asyncpg", parts.netloc, f"/{database}", "", ""))


@dataclass
class Role:
    """One process of the cluster, the leader of its own process group, its output in `log`."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        """To the whole group: a worker's delivery processes die (or freeze) with it, as on a lost host."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_SECONDS)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL to what is left of the group after the deadline; the exit code."""
        if self.running():
            self.signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_SECONDS)
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_SECONDS)
        return self.proc.returncode


def spawn(name: str, argv: list[str], env: dict[str, str], log: Path, port: int | None = None) -> Role:
    out = log.open("ab")
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        out.close()  # the child holds its own copy
    return Role(name, proc, log, port)


def hookhub(*args: str) -> list[str]:
    return [sys.executable, "-m", "hub.cli", *args]


@dataclass
class Cluster:
    """A scratch schema for the ledger, a scratch database for Prefect, and the roles started on them."""

    root: Path
    config_text: str
    lease: float = 5.0
    log_level: str = "info"
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    receivers: list[Role] = field(default_factory=list)
    workers: list[Role] = field(default_factory=list)
    store_url: str = ""
    api_url: str = ""
    prefect: Role | None = None
    _stack: ExitStack = field(default_factory=ExitStack)

    def __enter__(self) -> Cluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = self.root / "connectors.yaml"
        self.config.write_text(self.config_text, encoding="utf-8")
        try:
            self.store_url = self._stack.enter_context(scratch_schema("cluster"))
            database = self._stack.enter_context(scratch_database("prefect"))
            self._stack.callback(self._sweep)
            self._start_prefect(database)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            for role in [*self.workers, *self.receivers]:
                role.stop()
            if self.prefect is not None:
                self.prefect.stop()
        finally:
            self._stack.close()

    def _sweep(self) -> None:
        """Kill whatever still carries this cluster's mark (it left its process group)."""
        for proc in with_environ(MARK, self.token):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)

    def env(self, name: str) -> dict[str, str]:
        home = self.root / "prefect-home" / name
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HOOKHUB_"))}
        return {
            **env,
            MARK: self.token,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "HOOKHUB_LOG_FORMAT": "json",
        }

    def _start_prefect(self, database: str) -> None:
        port = free_port()
        env = {
            **self.env("server"),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": asyncpg_url(database),
            "PREFECT_UI_ENABLED": "false",
        }
        argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
        argv += ["--port", str(port)]
        self.prefect = spawn("prefect", argv, env, self.root / "prefect.log", port)
        self.api_url = f"http://127.0.0.1:{port}/api"
        prefect = self.prefect
        wait_for(
            lambda: _answers(f"{self.api_url}/health", prefect),
            timeout=PREFECT_START_SECONDS,
            interval=0.25,
            what="Prefect's server on PostgreSQL to answer /api/health",
        )

    def hub_env(self, name: str) -> dict[str, str]:
        return {**self.env(name), "HOOKHUB_STORE": self.store_url, "PREFECT_API_URL": self.api_url}

    def add_receiver(self) -> Role:
        name = f"receiver{len(self.receivers) + 1}"
        port = free_port()
        argv = hookhub(
            "serve", "--no-dispatch", "--port", str(port), "--config", str(self.config),
            "--data-dir", str(self.root / name), "--log-level", self.log_level,
        )  # fmt: skip
        role = spawn(name, argv, self.hub_env(name), self.root / f"{name}.log", port)
        self.receivers.append(role)
        wait_for(lambda: _answers(f"{role.url}/healthz", role), timeout=60, what=f"{name} /healthz")
        return role

    def add_worker(self) -> Role:
        return self.add_workers(1)[0]

    def add_workers(self, count: int, config: Path | None = None) -> list[Role]:
        """`count` workers started together (on `config`, else the cluster's), returned once each
        holds its lease in the ledger."""
        started = []
        for _ in range(count):
            name = f"worker{len(self.workers) + 1}"
            argv = hookhub(
                "worker", "--config", str(config or self.config), "--data-dir", str(self.root / name),
                "--lease", f"{self.lease:g}", "--log-level", self.log_level,
            )  # fmt: skip
            role = spawn(name, argv, self.hub_env(name), self.root / f"{name}.log")
            self.workers.append(role)
            started.append(role)
        for role in started:
            wait_for(lambda: self.owner_of(role), timeout=90, what=f"{role.name} to hold a lease")  # noqa: B023
        return started

    def start(self, receivers: int, workers: int) -> None:
        for _ in range(receivers):
            self.add_receiver()
        self.add_workers(workers)

    def ledger(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.store_url, autocommit=True)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.ledger() as conn:
            return list(conn.execute(sql, params).fetchall())

    def counts(self) -> dict[str, int]:
        """Submissions by state and deliveries by status (with owner), for failure messages."""
        rows = self.query(
            "SELECT 'inbox ' || state, count(*) FROM inbox GROUP BY state UNION ALL"
            " SELECT 'delivery ' || status || ' ' || coalesce(claimed_by, '-'), count(*)"
            " FROM deliveries GROUP BY status, claimed_by"
        )
        return {str(name): int(n) for name, n in rows}

    def owner_of(self, role: Role) -> str | None:
        """The owner id a worker's claims carry (its lease row names its pid)."""
        assert role.running(), f"{role.name} exited: {role.text()[-4000:]}"
        with contextlib.suppress(psycopg.Error):
            rows = self.query("SELECT owner FROM leases WHERE pid = %s", (role.pid,))
            return str(rows[0][0]) if rows else None
        return None

    def logs(self) -> str:
        """Every role's log, for an assertion message."""
        roles = [r for r in [self.prefect, *self.receivers, *self.workers] if r is not None]
        return "\n".join(f"--- {r.name}\n{r.text()[-3000:]}" for r in roles)


def _answers(url: str, role: Role) -> bool:
    assert role.running(), f"{role.name} exited with {role.proc.returncode}: {role.text()[-4000:]}"
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(condition: Any, seconds: float, what: str, cluster: Cluster | None = None) -> Any:
    """`wait_for` with a coarser poll (the ledger is read over a new connection each time); on a
    timeout, the ledger's counts and the roles' logs say where things stood."""
    try:
        return wait_for(condition, timeout=seconds, interval=0.2, what=what)
    except AssertionError as exc:
        if cluster is None:
            raise
        raise AssertionError(f"{exc}\nledger: {cluster.counts()}\n{cluster.logs()}") from None


class Sender:
    """Real signed webhooks for one source of the cluster's config (its connector signs them, as
    `hookhub send-test` does), posted round robin to the receivers; keeps what each acknowledged."""

    def __init__(self, config: Path, source: str = "contact-form") -> None:
        from hub.config.loader import load_config
        from hub.runtime import prepare_sources

        self.source = prepare_sources(load_config(config))[source]
        self.path = f"/hooks/{source}"
        self.acked: dict[str, float] = {}
        """submission id -> when its 2xx came"""
        self.refused = 0
        self._lock = threading.Lock()

    def post(self, client: httpx.Client, base_url: str) -> str | None:
        request = self.source.connector.sample_request(
            self.source.config, f"http://127.0.0.1{self.path}", time.time()
        )
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        try:
            answer = client.post(f"{base_url}{self.path}", content=request.body, headers=headers)
        except httpx.HTTPError:
            answer = None
        if answer is None or not answer.is_success:
            with self._lock:
                self.refused += 1
            return None
        submission_id = str(answer.json()["id"])
        with self._lock:
            self.acked[submission_id] = time.time()
        return submission_id

    def post_to(self, base_url: str) -> str:
        with httpx.Client(timeout=30) as client:
            submission = self.post(client, base_url)
        assert submission is not None, f"{base_url} did not acknowledge a signed webhook"
        return submission

    def send(
        self, urls: list[str], count: int, threads: int = 4, stop: threading.Event | None = None
    ) -> None:
        """`count` webhooks from `threads` senders, each taking the next receiver in turn."""
        turns = iter(range(count))
        turn_lock = threading.Lock()

        def run() -> None:
            with httpx.Client(timeout=30) as client:
                while stop is None or not stop.is_set():
                    with turn_lock:
                        turn = next(turns, None)
                    if turn is None:
                        return
                    self.post(client, urls[turn % len(urls)])

        pool = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(timeout=300)
