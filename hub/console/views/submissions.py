"""Submissions: search by e-mail, name, event id, source, form, status and time; newest first, paged."""

from __future__ import annotations

from urllib.parse import urlencode

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from hub.console.context import Console
from hub.console.search import Filters
from hub.console.sessions import Session
from hub.console.views.common import render
from hub.spool.schema import INBOX_STATES
from hub.spool.search import SearchPage, search


def page(console: Console, request: Request, session: Session | None) -> Response:
    error = None
    filters = Filters.model_validate(dict(request.query_params))
    try:
        query = filters.query()
    except ValueError as exc:
        found, error = SearchPage(items=[], next=None), f"Cannot search: {_first_line(exc)}"
    else:
        with console.db() as conn:
            found = search(conn, query)
    next_query = None
    if found.next is not None:
        kept = {k: v for k, v in filters.model_dump().items() if v and k != "after"}
        next_query = urlencode({**kept, "after": found.next.encode()})
    return HTMLResponse(
        render(
            console,
            request,
            session,
            "submissions.html",
            filters=filters,
            rows=found.items,
            next_query=next_query,
            error=error,
            states=INBOX_STATES,
            sources=sorted(console.config.current.sources),
        )
    )


def _first_line(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "search"
        return f"{where}: {first['msg']}"
    return str(exc).splitlines()[0][:200]
