"""Overview: sources, destinations, the queue, delivery health and recent alerts."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from hub.console import queries
from hub.console.context import Console
from hub.console.sessions import Session
from hub.console.views.common import render


def page(console: Console, request: Request, session: Session | None) -> Response:
    now = console.clock()
    config = console.config.current
    with console.db() as conn:
        snap = queries.snapshot(conn, console.spool_path, now)
        values = {
            "sources": queries.sources(conn, config, now),
            "destinations": queries.destinations(conn, config, snap),
            "alerts": queries.recent_alerts(conn),
        }
    health = console.health()
    pending = sum(n for state, n in snap.submissions.items() if state in ("pending", "claimed"))
    return HTMLResponse(
        render(
            console,
            request,
            session,
            "overview.html",
            now=now,
            pending=pending,
            oldest_age=snap.oldest_pending_age() if snap.oldest_pending_at else None,
            health=health,
            dispatcher_alive=health.dispatcher_alive(now) if health else None,
            **values,
        )
    )
