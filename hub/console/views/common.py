"""What the pages share: the page frame's values (nav, CSRF token) and the flash after an action."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse

from hub.console.context import Console
from hub.console.guard import base
from hub.console.sessions import Session


def render(console: Console, request: Request, session: Session | None, template: str, **values: Any) -> str:
    csrf = console.signer.csrf_token(session.sid) if session else ""
    return console.render(
        template,
        base=base(request),
        csrf=csrf,
        path=request.url.path,
        flash=_flash(request),
        **values,
    )


# What an action did, named in the redirect by key: the page shows only these texts, so a crafted
# link cannot put words of its own on a console page.
FLASHES = {
    "replayed": "{n} dead letter(s) put back in the queue.",
    "resent": "{n} delivery(ies) queued to be sent again.",
    "paused": "Paused: deliveries wait, no attempts are made.",
    "resumed": "Resumed.",
    "enabled": "Re-enabled.",
    "nothing": "Nothing to do: no row matched.",
}


def done(request: Request, path: str, flash: str, n: int = 0) -> RedirectResponse:
    """Back to a page after a POST (303: a reload does not repeat the action), with what happened."""
    return RedirectResponse(f"{base(request)}{path}?{urlencode({'flash': flash, 'n': n})}", status_code=303)


def _flash(request: Request) -> str | None:
    text = FLASHES.get(request.query_params.get("flash", ""))
    if text is None:
        return None
    count = request.query_params.get("n", "0")
    return text.format(n=int(count) if count.isdigit() else 0)


def form_text(request: Request, name: str) -> str:
    value = request.state.form.get(name)
    return value.strip() if isinstance(value, str) else ""
