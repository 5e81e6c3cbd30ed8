"""Prefect's ephemeral server, started so that the hub decides when it stops, and it never outlives the hub.

Prefect starts it as a plain subprocess (`SubprocessASGIServer`, prefect/server/api/server.py)
in the hub's process group, which had two effects: Ctrl-C or a service manager's SIGTERM to the
group stopped it at the same moment as the hub, so runs under way could no longer report their
end (left `Running`, with tracebacks of clients that lost it), and a `kill -9` of the hub left it
running (~200 MB each time). This subclass, registered as the ephemeral server before Prefect
asks for one, starts it
- in a session of its own: signals to the hub's group do not reach it; the hub stops it (at
  exit, through Prefect's own atexit hook) after cancelled runs have reported;
- with a pipe on its stdin that only the hub holds: when the hub dies, however it dies, the
  kernel closes it and the server stops itself on the EOF.
The pipe rather than prctl(PR_SET_PDEATHSIG): that signal follows the *thread* that started the
child, and Prefect starts the server from whichever thread first needs a client (the
dispatcher's, or a worker thread of Prefect's that may end while the hub runs on).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

EXIT_GRACE = 5.0
"""Seconds the server gets to stop on its own once the hub is gone, before it exits hard."""
STOP_SECONDS = 2.0
"""Seconds the hub waits at its exit for the server to stop before killing it (Prefect waits 5);
by then every run has reported its end, and its SQLite database survives a kill."""


def _server_class() -> type[Any]:
    from prefect.server.api.server import SubprocessASGIServer

    class HubPrefectServer(SubprocessASGIServer):
        def stop(self) -> None:
            process = self.server_process
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
            super().stop()  # reaps it and forgets the instance, as Prefect does

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            import prefect
            from prefect.settings import get_current_settings

            # The arguments and environment of Prefect 3's own `_run_uvicorn_command` (pinned in
            # pyproject.toml), run through this module's watchdog.
            server_env = {
                "PREFECT_UI_ENABLED": "0",
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
            }
            return subprocess.Popen(
                args=[
                    sys.executable,
                    "-m",
                    "flows.prefect_server",
                    "--app-dir",
                    str(prefect.__module_path__.parent),
                    "--factory",
                    "prefect.server.api.server:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "error",
                    "--lifespan",
                    "on",
                ],
                env={
                    # Not the store's URL: it may hold a password, and Prefect's server has no use for it.
                    **{k: v for k, v in os.environ.items() if k != "HOOKHUB_STORE"},
                    **server_env,
                    **get_current_settings().to_environment_variables(exclude_unset=True),
                },
                stdin=subprocess.PIPE,
                start_new_session=True,
            )

    return HubPrefectServer


def install() -> None:
    """Make the hub's server Prefect's ephemeral one; a no-op with PREFECT_API_URL set or one running."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    existing = SubprocessASGIServer._instances.get(None)
    if existing is not None and (existing.running or type(existing) is not SubprocessASGIServer):
        return
    SubprocessASGIServer._instances.pop(None, None)
    _server_class()()  # registers itself as the instance Prefect's clients start and reuse


def _stop_when_the_hub_is_gone() -> None:
    """In the server's process: stdin reaches EOF when the hub exits or is killed."""
    while sys.stdin.buffer.read(65536):
        pass
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful stop
    time.sleep(EXIT_GRACE)
    os._exit(1)


def main() -> None:
    threading.Thread(target=_stop_when_the_hub_is_gone, name="hub-watch", daemon=True).start()
    from uvicorn.main import main as uvicorn_main

    uvicorn_main()  # reads sys.argv; exits 3 if the port is taken, which Prefect's start handles


if __name__ == "__main__":
    main()
