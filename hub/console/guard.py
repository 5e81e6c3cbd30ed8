"""Who may see a console page: a session cookie (with a CSRF token on every POST) or the bearer token.

The client's address and scheme are what uvicorn gives: it applies X-Forwarded-For and
X-Forwarded-Proto only from the proxies it trusts (`forwarded_allow_ips`, default 127.0.0.1,
environment FORWARDED_ALLOW_IPS), so a reverse proxy on the same machine makes the cookie
Secure and names the client for the login throttle, and nobody else can claim either.
"""

from __future__ import annotations

import hmac
import html
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from hub.console.context import CSS_HASH, Console
from hub.console.sessions import SESSION_COOKIE, Session

View = Callable[[Console, Request, Session | None], Response]
"""A page: runs in a worker thread (it reads SQLite), after the guard let the request in."""
Endpoint = Callable[[Request], Awaitable[Response]]

OFF_TEXT = (
    "The hookhub admin console is off. To turn it on, set admin.password_hash in connectors.yaml"
    " (make one with `hookhub admin hash-password`) or admin.token; see the README, 'Admin console'.\n"
)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{CSS_HASH}'; img-src 'self'; frame-ancestors 'none';"
        " form-action 'self'; base-uri 'none'"
    ),
}


def base(request: Request) -> str:
    """The console's URL prefix ('/admin'), from the mount."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def client_id(request: Request) -> str:
    return request.client.host if request.client else "-"


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def session_of(console: Console, request: Request) -> Session | None:
    return console.signer.session(request.cookies.get(SESSION_COOKIE), console.clock())


def bearer_ok(console: Console, request: Request) -> bool:
    token = console.admin.token
    header = request.headers.get("authorization", "")
    if not token or not header.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


def off_response(elsewhere: str | None = None) -> Response:
    """404: how to turn the console on, or (served on its own address) what any unknown path gets,
    so the public port does not tell where the console is."""
    if elsewhere:
        return JSONResponse({"error": "Not Found"}, status_code=404)
    return PlainTextResponse(OFF_TEXT, status_code=404, headers=SECURITY_HEADERS)


def guarded(console: Console, view: View, public: bool = False, here: bool = False) -> Endpoint:
    """The endpoint for `view`: off (404) without a credential, 401/redirect without a session,
    403 for a POST without the session's CSRF token. `public` pages (login) skip the session check."""

    async def endpoint(request: Request) -> Response:
        if not console.admin.enabled or (console.elsewhere and not here):
            return off_response(console.elsewhere)
        session = session_of(console, request)
        bearer = bearer_ok(console, request)
        if not public and session is None and not bearer:
            if request.method in ("GET", "HEAD"):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(
                    f"{base(request)}/login?next={quote(target, safe='')}", status_code=303
                )
            return refused(401, "log in first")
        if request.method == "POST":
            # Parsed here, on the event loop: the view runs in a worker thread and reads it from state.
            request.state.form = await request.form()
            csrf = _text(request.state.form.get("csrf"))
            if not public and not bearer and not (session and console.signer.csrf_ok(session.sid, csrf)):
                return refused(
                    403, "the form's CSRF token is missing or wrong: reload the page and try again"
                )
        response = await run_in_threadpool(view, console, request, session)
        response.headers.update(SECURITY_HEADERS)
        return response

    return endpoint


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def refused(status: int, why: str, headers: dict[str, str] | None = None) -> Response:
    """A short page for a refused request (`why` may quote a name from the request: escaped)."""
    page = f"<!doctype html><title>{status}</title><p>{html.escape(why)}</p>"
    return HTMLResponse(page, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
