"""The console's pages over HTTP on bench/console.py's spool: `measure_pages(ctx)`.

A real uvicorn server on loopback serves hub/console's routes for that spool (authenticated with
the admin bearer token, so no login round trip is timed); each page is fetched alone over a
kept-alive connection and timed from request to the last byte, beside the data-layer rows of the
same run (their baselines).
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx
import uvicorn
from starlette.applications import Starlette

from hub.console.app import routes_for
from hub.console.context import Console
from hub.runtime import ConfigHolder

if TYPE_CHECKING:
    from bench.console import BenchContext, Timing


@contextmanager
def _served(ctx: BenchContext, token: str) -> Iterator[str]:
    config = ctx.config.with_name("console-pages-bench.yaml")
    config.write_text(ctx.config.read_text() + f"admin: {{token: {token}}}\n")
    console = Console(ConfigHolder(config), ctx.spool)
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = Starlette(routes=routes_for(console))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the console's bench server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def measure_pages(ctx: BenchContext) -> list[Timing]:
    from bench.console import measure

    token = secrets.token_urlsafe(24)
    with (
        _served(ctx, token) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client,
    ):

        def get(path: str, params: dict[str, str] | None = None) -> object:
            answer = client.get(path, params=params)
            if answer.status_code != 200:
                raise RuntimeError(f"GET {path} answered {answer.status_code}: {answer.text[:200]}")
            return answer

        few = max(20, ctx.samples // 10)
        return [
            measure(
                "page: list, first page",
                [None] * ctx.samples,
                lambda _: get("/admin/submissions"),
                "list, first page",
            ),
            measure(
                "page: list, page at a random row",
                ctx.cursors,
                lambda c: get("/admin/submissions", {"after": c.encode()}),
                "list, page at a random row",
            ),
            measure(
                "page: search by e-mail",
                ctx.emails,
                lambda e: get("/admin/submissions", {"email": e.upper()}),
                "search by e-mail",
            ),
            measure("page: one submission", ctx.ids, lambda i: get(f"/admin/submissions/{i}"), "detail"),
            measure("page: overview", [None] * few, lambda _: get("/admin/")),
            measure("page: dead letters", [None] * few, lambda _: get("/admin/deadletters")),
            measure("page: destinations", [None] * few, lambda _: get("/admin/destinations")),
        ]
