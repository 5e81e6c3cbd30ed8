"""The console's routes: mounted under /admin on the hub's app, plus GET /submissions/<id>.

`/submissions/<id>` is the "View in hookhub" link every Slack message and e-mail carries; it
redirects to the console's page of that submission (through the login when there is no session).
Pages run in worker threads (they read SQLite), never on the event loop the receiver shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from hub.console.context import Console
from hub.console.guard import View, guarded, off_response
from hub.console.views import auth, deadletters, destinations, erase, overview, submission, submissions

if TYPE_CHECKING:
    from hub.receiver.app import Receiver

PREFIX = "/admin"
LOGIN = "/login"
"""The one page served without a session."""


def console_app(console: Console, here: bool = False) -> Starlette:
    """`here`: the app on the console's own address (serve --admin-port), which always serves."""

    def page(path: str, view: View, method: str = "GET", public: bool = False) -> Route:
        return Route(path, guarded(console, view, public, here), methods=[method])

    routes = [
        page("/", overview.page),
        page(LOGIN, auth.login_page, public=True),
        page(LOGIN, auth.login, "POST", public=True),
        page("/logout", auth.logout, "POST"),
        page("/submissions", submissions.page),
        page("/submissions/{id}", submission.page),
        page("/submissions/{id}/replay", submission.replay, "POST"),
        page("/submissions/{id}/resend", submission.resend, "POST"),
        page("/submissions/{id}/erase", erase.erase_person, "POST"),
        page("/deadletters", deadletters.page),
        page("/deadletters/replay", deadletters.replay, "POST"),
        page("/destinations", destinations.page),
        page("/destinations/{name}/{action}", destinations.act, "POST"),
    ]
    return Starlette(routes=routes)


_consoles: dict[int, Console] = {}
"""One Console per receiver (by id: one hub per process, tests a few), shared by the hub's app
and a separate admin server, so both see one login throttle and where the console is served."""


def console_for(receiver: Receiver) -> Console:
    key = id(receiver)
    if key not in _consoles:
        _consoles[key] = Console(receiver.config, receiver.spool.location, health=lambda: receiver.health)
    return _consoles[key]


def console_routes(receiver: Receiver) -> list[BaseRoute]:
    """What the hub's app adds: the console under /admin and the message links' redirect."""
    return routes_for(console_for(receiver))


def routes_for(console: Console, here: bool = False) -> list[BaseRoute]:

    async def submission_link(request: Request) -> Response:
        if not console.admin.enabled or (console.elsewhere and not here):
            return off_response(console.elsewhere)
        return RedirectResponse(f"{PREFIX}/submissions/{request.path_params['id']}", status_code=303)

    return [
        Mount(PREFIX, app=console_app(console, here)),
        Route("/submissions/{id}", submission_link, methods=["GET"]),
    ]
