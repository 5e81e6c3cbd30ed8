"""Destinations: state and counts; pause, resume, and re-enable one a 410 disabled."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from hub.console import control, queries
from hub.console.context import Console
from hub.console.guard import refused
from hub.console.sessions import Session
from hub.console.views.common import done, render


def page(console: Console, request: Request, session: Session | None) -> Response:
    config = console.config.current
    with console.db() as conn:
        snap = queries.snapshot(conn, console.spool_path, console.clock())
        lines = queries.destinations(conn, config, snap)
    return HTMLResponse(render(console, request, session, "destinations.html", destinations=lines))


def act(console: Console, request: Request, session: Session | None) -> Response:
    name, action = request.path_params["name"], request.path_params["action"]
    if name not in console.config.current.destinations:
        return refused(404, "no destination of this name is configured")
    apply = control.ACTIONS.get(action)
    if apply is None:
        return refused(404, "unknown action: pause, resume or enable")
    with console.db() as conn:
        apply(conn, name, console.clock())
    return done(
        request, "/destinations", {"pause": "paused", "resume": "resumed", "enable": "enabled"}[action]
    )
