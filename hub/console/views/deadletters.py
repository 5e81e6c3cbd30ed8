"""Dead letters: grouped by destination and reason; a filtered set previewed, then replayed at once."""

from __future__ import annotations

from collections import Counter

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from hub.console import queries
from hub.console.context import Console
from hub.console.redact import Scrubber
from hub.console.sessions import Session
from hub.console.views.common import done, form_text, render
from hub.spool import report

NO_DESTINATION = "(before delivery)"
"""The group of submissions that died before any delivery: not normalizable or not routable."""
PREVIEW_ROWS = 200


def _matching(
    letters: list[report.DeadLetter], destination: str, reason: str, scrubbed: Scrubber
) -> list[report.DeadLetter]:
    return [
        letter
        for letter in letters
        if (not destination or (letter.destination or NO_DESTINATION) == destination)
        and (not reason or scrubbed(letter.reason) == reason)
    ]


def page(console: Console, request: Request, session: Session | None) -> Response:
    params = request.query_params
    source, destination, reason = (
        params.get("source", ""),
        params.get("destination", ""),
        params.get("reason", ""),
    )
    scrubbed = Scrubber(console.config.current)
    groups: Counter[tuple[str, str]] = Counter()
    with console.db() as conn:
        for name, why, count in queries.dead_groups(conn, source or None):
            groups[(name or NO_DESTINATION, scrubbed(why))] += count
        filtered = bool(source or destination or reason)
        # The letters themselves only for a preview: one filter's set, not every dead letter.
        letters = report.dead_letters(conn, source=source or None) if filtered else []
    selected = _matching(letters, destination, reason, scrubbed)
    return HTMLResponse(
        render(
            console,
            request,
            session,
            "deadletters.html",
            groups=sorted(groups.items()),
            selected=selected[:PREVIEW_ROWS],
            total=len(selected),
            source=source,
            destination=destination,
            reason=reason,
            scrubbed=scrubbed,
            filtered=filtered,
        )
    )


def replay(console: Console, request: Request, session: Session | None) -> Response:
    """Replay every dead letter matching the form's filter (the set the preview showed)."""
    source = form_text(request, "source")
    scrubbed = Scrubber(console.config.current)
    with console.db() as conn:
        letters = _matching(
            report.dead_letters(conn, source=source or None),
            form_text(request, "destination"),
            form_text(request, "reason"),
            scrubbed,
        )
        count = report.replay(conn, letters, console.clock()) if letters else 0
    return done(request, "/deadletters", "replayed" if count else "nothing", count)
