"""Erase a person (hub/spool/erase.py): a dry run listing what would go and where their data was
sent, then, confirmed, the erasure and the same list as a record of where else to erase."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from hub.console.context import Console
from hub.console.guard import refused
from hub.console.sessions import Session
from hub.console.views.common import form_text, render
from hub.spool.erase import erase


def erase_person(console: Console, request: Request, session: Session | None) -> Response:
    inbox_id = request.path_params["id"]
    by_email = form_text(request, "by") == "email"
    confirmed = form_text(request, "confirm") == "yes"
    with console.db() as conn:
        row = conn.execute("SELECT submission ->> 'email' FROM inbox WHERE id = ?", (inbox_id,)).fetchone()
        if row is None:
            return refused(404, "no submission has this id (it may have been erased already)")
        email = row[0] if by_email else None
        if by_email and not email:
            return refused(409, "this submission has no e-mail address: erase it by its id")
        report = erase(
            conn,
            email=email,
            submission_id=None if email else inbox_id,
            now=console.clock(),
            dry_run=not confirmed,
        )
    # The address is on the page only as the submission already showed it, never in a URL.
    page = render(
        console, request, session, "erase.html", id=inbox_id, by=form_text(request, "by"), report=report
    )
    return HTMLResponse(page)
