"""One submission: answers, the raw request (secrets removed), routes, every attempt; its actions."""

from __future__ import annotations

import json

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from hub.console.context import Console
from hub.console.explain import explain
from hub.console.guard import refused
from hub.console.redact import scrub, secrets_of
from hub.console.search import detail
from hub.console.sessions import Session
from hub.console.views.common import done, form_text, render
from hub.spool import report
from hub.submission import Submission


def page(console: Console, request: Request, session: Session | None) -> Response:
    inbox_id = request.path_params["id"]
    with console.db() as conn:
        found = detail(conn, inbox_id)
    if found is None:
        return refused(404, "no submission has this id (it may have been erased or expired)")
    config = console.config.current
    secrets = secrets_of(config)
    inbox = found.inbox
    headers = json.loads(inbox.get("headers") or "{}")
    raw = "\n".join(
        [
            f"{inbox['method'] or 'POST'} {inbox['url'] or ''}",
            *(f"{k}: {v}" for k, v in sorted(headers.items())),
        ]
    )
    body = bytes(inbox["body"] or b"").decode("utf-8", errors="replace")
    verdicts = []
    if found.submission is not None:
        try:
            verdicts = explain(config, Submission.model_validate(found.submission))
        except ValidationError:
            verdicts = []
    for delivery in found.deliveries:
        delivery["last_error"] = scrub(delivery.get("last_error"), secrets)
    for attempts in found.attempts.values():
        for attempt in attempts:
            attempt["error"] = scrub(attempt.get("error"), secrets)
    others = sorted(set(config.destinations) - {d["destination"] for d in found.deliveries})
    return HTMLResponse(
        render(
            console,
            request,
            session,
            "submission.html",
            inbox=inbox,
            error=scrub(inbox.get("error"), secrets),
            submission=found.submission,
            raw=scrub(raw, secrets),
            body=scrub(body, secrets),
            verdicts=verdicts,
            deliveries=found.deliveries,
            attempts=found.attempts,
            others=others,
        )
    )


def replay(console: Console, request: Request, session: Session | None) -> Response:
    """Put this submission's dead letters (all, or the one of the form's destination) back in the queue."""
    inbox_id = request.path_params["id"]
    destination = form_text(request, "destination") or None
    with console.db() as conn:
        letters = [
            letter
            for letter in report.dead_letters(conn, ids=[inbox_id])
            if destination is None or letter.destination == destination
        ]
        count = report.replay(conn, letters, console.clock()) if letters else 0
    return done(request, f"/submissions/{inbox_id}", "replayed" if count else "nothing", count)


def resend(console: Console, request: Request, session: Session | None) -> Response:
    return refused(501, "resend is not available in this version yet: use `hookhub resend` when it lands")
