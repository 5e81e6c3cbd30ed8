"""Log in (password or token, throttled) and log out."""

from __future__ import annotations

import hmac
import logging
import secrets

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from hub.console import passwords
from hub.console.context import Console
from hub.console.guard import base, client_id, is_https, refused
from hub.console.sessions import LOGIN_COOKIE, SESSION_COOKIE, Session

log = logging.getLogger("hookhub.console")


def login_page(console: Console, request: Request, session: Session | None) -> Response:
    if session is not None:
        return RedirectResponse(_next(request, request.query_params.get("next")), status_code=303)
    return _form(console, request, None, 200)


def login(console: Console, request: Request, session: Session | None) -> Response:
    form = request.state.form
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not console.signer.csrf_ok("login:" + nonce, _field(form, "csrf")):
        return refused(403, "the login form expired: reload the page and try again")
    client = client_id(request)
    wait = console.throttle.retry_after(client)
    if wait is not None:
        log.warning(
            "console login throttled", extra={"event": "console_login_throttled", "retry_after": wait}
        )
        return refused(429, f"too many failed logins: try again in {wait} s", {"Retry-After": str(wait)})
    if not _credential_ok(console, _field(form, "password") or ""):
        console.throttle.failed(client)
        log.warning("console login failed", extra={"event": "console_login_failed"})
        return _form(console, request, "Wrong password.", 401)
    console.throttle.succeeded(client)
    _, cookie = console.signer.new_session(console.clock(), console.admin.session_hours)
    response = RedirectResponse(_next(request, _field(form, "next")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(console.admin.session_hours * 3600),
        path=base(request) or "/",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path=base(request) or "/")
    log.info("console login", extra={"event": "console_login"})
    return response


def logout(console: Console, request: Request, session: Session | None) -> Response:
    response = RedirectResponse(f"{base(request)}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=base(request) or "/")
    return response


def _credential_ok(console: Console, password: str) -> bool:
    admin = console.admin
    if not password:
        return False
    if admin.password_hash and passwords.verify(admin.password_hash, password):
        return True
    return bool(admin.token) and hmac.compare_digest(password.encode(), (admin.token or "").encode())


def _form(console: Console, request: Request, error: str | None, status: int) -> Response:
    nonce = secrets.token_urlsafe(18)
    page = console.render(
        "login.html",
        base=base(request),
        error=error,
        csrf=console.signer.csrf_token("login:" + nonce),
        next=_next(
            request, request.query_params.get("next") or _field(getattr(request.state, "form", {}), "next")
        ),
    )
    response = HTMLResponse(page, status_code=status)
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path=base(request) or "/",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return response


def _next(request: Request, wanted: str | None) -> str:
    """Where to go after login: a console path only (never another site: no open redirect)."""
    prefix = base(request)
    if wanted and wanted.startswith(prefix + "/") and not any(bad in wanted for bad in ("//", "\\", "/..")):
        return wanted
    return prefix + "/"


def _field(form: object, name: str) -> str | None:
    value = form.get(name) if hasattr(form, "get") else None
    return value if isinstance(value, str) else None
