"""Destinations: state and counts; pause, resume, and re-enable one a 410 disabled."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from hub.console import queries
from hub.console.context import Console
from hub.console.guard import refused
from hub.console.sessions import Session
from hub.console.views.common import done, render
from hub.spool import actions


def page(console: Console, request: Request, session: Session | None) -> Response:
    config = console.config.current
    with console.db() as conn:
        snap = queries.snapshot(conn, console.spool_path, console.clock())
        lines = queries.destinations(conn, config, snap)
    return HTMLResponse(render(console, request, session, "destinations.html", destinations=lines))


FLASH = {"pause": "paused", "resume": "resumed", "enable": "enabled"}


def act(console: Console, request: Request, session: Session | None) -> Response:
    name, action = request.path_params["name"], request.path_params["action"]
    if name not in console.config.current.destinations:
        return refused(404, "no destination of this name is configured")
    if action not in FLASH:
        return refused(404, "unknown action: pause, resume or enable")
    with console.db() as conn:
        if action == "pause":
            actions.pause(conn, name, console.clock(), "paused from the console")
        else:  # resume also enables a destination a 410 disabled
            actions.resume(conn, name)
    return done(request, "/destinations", FLASH[action])
