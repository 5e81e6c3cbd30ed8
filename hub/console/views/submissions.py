"""Submissions: search by e-mail, name, event id, source, form, status and time; newest first, paged."""

from __future__ import annotations

from urllib.parse import urlencode

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from hub.console.context import Console
from hub.console.search import PAGE, Filters, search
from hub.console.sessions import Session
from hub.console.views.common import render
from hub.spool.schema import INBOX_STATES


def page(console: Console, request: Request, session: Session | None) -> Response:
    error = None
    try:
        filters = Filters.model_validate(dict(request.query_params))
        with console.db() as conn:
            rows = search(conn, filters, PAGE + 1)
    except (ValidationError, ValueError) as exc:
        filters, rows, error = Filters(), [], f"Cannot search: {_first_line(exc)}"
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    next_query = None
    if more:
        kept = {k: v for k, v in filters.model_dump().items() if v and k != "before"}
        next_query = urlencode({**kept, "before": rows[-1].id})
    return HTMLResponse(
        render(
            console,
            request,
            session,
            "submissions.html",
            filters=filters,
            rows=rows,
            next_query=next_query,
            error=error,
            states=INBOX_STATES,
            sources=sorted(console.config.current.sources),
        )
    )


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]
