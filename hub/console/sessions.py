"""Signed session cookies and CSRF tokens for the console.

The cookie is `<payload>.<HMAC-SHA256>` over a base64 JSON payload (expiry, a random session id).
Written here with `hmac` rather than itsdangerous/Starlette's SessionMiddleware: that package is not
a hookhub dependency, the whole format is these few lines, and the console needs no session data
beyond an expiry. The CSRF token is an HMAC of the session id, so it needs no storage either and
is different for every login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from hub.spool.files import ensure_private_file

KEY_FILE = "console.key"
SESSION_COOKIE = "hookhub_session"
LOGIN_COOKIE = "hookhub_login"


@dataclass(frozen=True)
class Session:
    sid: str
    expires_at: float


def load_key(configured: str | None, data_dir: Path) -> bytes:
    """admin.secret_key if set, else a random key generated once into the data dir (mode 0600).

    A key in the data dir keeps sessions valid across restarts without the admin inventing one.
    """
    if configured:
        return configured.encode("utf-8")
    path = data_dir / KEY_FILE
    ensure_private_file(path)  # created empty with 0600 before the key is written into it
    existing = path.read_bytes().strip()
    if len(existing) >= 32:
        return existing
    key = secrets.token_urlsafe(48).encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


class Signer:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def new_session(self, now: float, hours: float) -> tuple[Session, str]:
        session = Session(secrets.token_urlsafe(18), now + hours * 3600)
        payload = _b64(json.dumps({"sid": session.sid, "exp": session.expires_at}).encode())
        return session, f"{payload}.{self._mac('session', payload)}"

    def session(self, cookie: str | None, now: float) -> Session | None:
        """The session a cookie carries, or None if it is missing, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        payload, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(str(data["sid"]), float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires_at > now else None

    def csrf_token(self, sid: str) -> str:
        return self._mac("csrf", sid)

    def csrf_ok(self, sid: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(sid))

    def _mac(self, purpose: str, text: str) -> str:
        digest = hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).digest()
        return _b64(digest)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
