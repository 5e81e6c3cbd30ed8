"""Shared test helpers: a real hub on a real loopback socket, fixture loading, waiting.

Servers run uvicorn in a thread of the test process so a test can inject the clock
(fixtures are verified at their own `received_at`) while still talking HTTP over a
real socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from hub.runtime import ConfigHolder
from hub.server import Hub, uvicorn_config

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
# The fixtures live in the repository (tests/fixtures/README.md); HOOKHUB_FIXTURES may point the
# provider tests at another folder of the same format, e.g. a newer upstream copy, never required.
PROVIDER_FIXTURES = Path(os.environ.get("HOOKHUB_FIXTURES") or FIXTURES / "providers")
DESTINATION_FIXTURES = FIXTURES / "destinations"


def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll `condition` until truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class FakeClock:
    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


@dataclass
class RunningServer:
    server: uvicorn.Server
    thread: threading.Thread
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "server did not stop"


def serve_app(app: Any, **overrides: Any) -> RunningServer:
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn_config(app, "127.0.0.1", port, **overrides)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout=30, what="uvicorn to start")
    if not server.started:
        raise RuntimeError("uvicorn failed to start")
    return RunningServer(server=server, thread=thread, port=port)


def start_hub(
    config_path: Path,
    data_dir: Path,
    clock: Callable[[], float] | None = None,
    environ: dict[str, str] | None = None,
    dispatch: bool = False,
    **hub_args: Any,
) -> tuple[Hub, RunningServer]:
    holder = ConfigHolder(config_path, environ=environ)
    hub = Hub(config=holder, data_dir=data_dir, clock=clock or time.time, watch_config=False, **hub_args)
    if dispatch:
        from hub.dispatch import attach_dispatcher

        attach_dispatcher(hub)
    return hub, serve_app(hub.app())


def load_fixture(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def fixture_files(provider: str | None = None) -> Iterator[Path]:
    pattern = f"{provider}/*.json" if provider else "*/*.json"
    yield from sorted(PROVIDER_FIXTURES.glob(pattern))


def epoch(iso: str) -> float:
    from hub.submission import parse_instant

    return parse_instant(iso).timestamp()


def serve_command(config: Path, data_dir: Path, port: int, *extra: str) -> list[str]:
    """The `hookhub serve` command line the subprocess tests run (the module, not the script)."""
    serve = ["serve", "--config", str(config), "--data-dir", str(data_dir), "--port", str(port)]
    return [sys.executable, "-m", "hub.cli", *serve, *extra]


class ServeProcess:
    """`hookhub serve` as a real subprocess in its own process group (with its Prefect server)."""

    def __init__(self, config: Path, data_dir: Path, prefect_home: Path, log: Path, *extra: str) -> None:
        sock = free_socket()
        self.port = sock.getsockname()[1]
        sock.close()
        env = {**os.environ, "PREFECT_HOME": str(prefect_home)}
        self.log = log
        self.proc = subprocess.Popen(
            serve_command(config, data_dir, self.port, *extra),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("ab"),
            start_new_session=True,
        )
        wait_for(self._healthy, timeout=60, what="hookhub serve to answer /healthz")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, f"hookhub serve exited: {self.log.read_text(errors='replace')}"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def signal_hub(self, signum: int) -> None:
        """Signal the hub's process alone, not its group (as `kill <pid>` does)."""
        os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self) -> int:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of the group


def descendants(pid: int) -> set[int]:
    """Every process below `pid` now, from /proc (psutil is not a dependency)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # The command name is in parentheses and may hold spaces: the fields after its end.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def flow_run_states(prefect_home: Path) -> dict[str, int]:
    """Flow run state names in `prefect_home`'s database, read through Prefect's client in a
    process of its own (this one's Prefect is bound to the test session's home)."""
    script = (
        "import asyncio, collections, json\n"
        "from prefect.client.orchestration import get_client\n"
        "async def main():\n"
        "    async with get_client() as client:\n"
        "        runs = await client.read_flow_runs()\n"
        "    print(json.dumps(collections.Counter(r.state.name for r in runs if r.state)))\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PREFECT_HOME": str(prefect_home)}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180, check=True
    )
    states: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return states
