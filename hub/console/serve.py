"""`hookhub serve --admin-host H --admin-port P`: the console on an address of its own.

For admins who keep it off the public interface: the hub's own port then answers 404 under
/admin (the message links' /submissions/<id> still redirect there, so a link opened on the
admin's machine through an SSH tunnel or a VPN address works when public_base_url points at
the admin address). The second server runs in the hub's event loop as one of its background
tasks, so it starts and stops with the hub; it never sees the webhook endpoint.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette

from hub.console.app import console_for, routes_for

log = logging.getLogger("hookhub.console")

if TYPE_CHECKING:
    from hub.server import Hub


def serve_separately(hub: Hub, host: str, port: int) -> bool:
    """Bind host:port now (False, with the reason on stderr, if that fails) and serve the console
    there once the hub runs."""
    from hub.server import listen, uvicorn_config

    try:
        sock = listen(host, port)
    except OSError as exc:
        print(
            f"hookhub: not starting: cannot listen on {host}:{port} for the console: {exc}", file=sys.stderr
        )
        return False
    console = console_for(hub.receiver)
    console.elsewhere = f"http://{host}:{port}/admin/"
    app = Starlette(routes=routes_for(console, here=True))
    config = uvicorn_config(app, host, port, lifespan="off")

    async def admin_server(_: Hub) -> None:
        # Not Server.serve(): that installs signal handlers, which belong to the hub's own server.
        server = uvicorn.Server(config)
        config.load()
        server.lifespan = config.lifespan_class(config)
        try:
            await server.startup(sockets=[sock])
        except Exception:
            log.exception("admin console server failed to start", extra={"event": "console_failed"})
            raise
        try:
            await server.main_loop()
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await server.shutdown(sockets=[sock])

    hub.background.append(admin_server)
    return True
