"""One submission: answers, the raw request (secrets removed), routes, every attempt; its actions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from hub.console.context import Console
from hub.console.guard import refused
from hub.console.redact import scrub, secrets_of
from hub.console.sessions import Session
from hub.console.views.common import done, form_text, render
from hub.routing.process import connector_for
from hub.spool import actions, report
from hub.spool.detail import SubmissionDetail, SubmissionNotFound, submission_detail


def _load(console: Console, inbox_id: str) -> SubmissionDetail | None:
    config = console.config.current
    with console.db() as conn:
        try:
            row = conn.execute("SELECT source, provider FROM inbox WHERE id=?", (inbox_id,)).fetchone()
            connector = connector_for(config, row[0], row[1]) if row else None
            return submission_detail(conn, inbox_id, config, connector)
        except (SubmissionNotFound, LookupError):
            return None


def page(console: Console, request: Request, session: Session | None) -> Response:
    found = _load(console, request.path_params["id"])
    if found is None:
        return refused(404, "no submission has this id (it may have been erased or expired)")
    return HTMLResponse(_render(console, request, session, found, "submission.html"))


def _render(
    console: Console,
    request: Request,
    session: Session | None,
    found: SubmissionDetail,
    template: str,
    **extra: object,
) -> str:
    config = console.config.current
    secrets = secrets_of(config)
    # Configured secrets out of everything a sender or a destination wrote (the detail already
    # removed credential fields by name; this catches a secret echoed anywhere else).
    shown = found.model_copy(
        update={
            "error": scrub(found.error, secrets) or None,
            "raw": found.raw.model_copy(
                update={
                    "url": scrub(found.raw.url, secrets),
                    "headers": {k: scrub(v, secrets) for k, v in found.raw.headers.items()},
                    "body": scrub(found.raw.body, secrets),
                }
            ),
            "deliveries": [
                d.model_copy(
                    update={
                        "last_error": scrub(d.last_error, secrets) or None,
                        "history": [
                            a.model_copy(update={"error": scrub(a.error, secrets) or None}) for a in d.history
                        ],
                    }
                )
                for d in found.deliveries
            ],
        }
    )
    others = sorted(set(config.destinations) - {d.destination for d in found.deliveries})
    return render(console, request, session, template, s=shown, others=others, **extra)


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
    """Send again (a delivered pair: a new generation) or to another destination; asks first."""
    inbox_id = request.path_params["id"]
    destination = form_text(request, "destination")
    if form_text(request, "confirm") != "yes":
        found = _load(console, inbox_id)
        if found is None:
            return refused(404, "no submission has this id (it may have been erased or expired)")
        target = next((d for d in found.deliveries if d.destination == destination), None)
        page = _render(console, request, session, found, "resend.html", destination=destination, d=target)
        return HTMLResponse(page)
    config = console.config.current
    with console.db() as conn:
        try:
            sent = actions.resend(
                conn,
                inbox_id,
                console.clock(),
                [destination] if destination else None,
                set(config.destinations),
            )
        except (actions.UnknownName, actions.NothingToResend) as exc:
            return refused(409, str(exc).replace("--destination", "a destination"))
    return done(request, f"/submissions/{inbox_id}", "resent", len(sent))
