"""What an anonymous caller may learn: details go to loopback callers or a status token holder.

"Loopback" is `scope["client"]` as uvicorn gives it: with its default `proxy_headers`, a request
from a reverse proxy on 127.0.0.1 carries the client's address from `X-Forwarded-For`, so it is
not loopback; a same-host proxy that does not send that header makes every caller loopback
(docs/security.md says so, and `server.status_token` is the alternative).
"""

from __future__ import annotations

import functools
import hmac
import ipaddress

from starlette.types import Scope

UNVERIFIED_DETAIL = "the request could not be verified for this URL; the hub's log says why"
STATUS_FORBIDDEN_DETAIL = "served to loopback callers, or with 'Authorization: Bearer <server.status_token>'"


def is_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    return client is not None and _is_loopback_host(client[0])


@functools.lru_cache(maxsize=256)
def _is_loopback_host(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # not an address (a test client's name, a unix socket path)
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def bearer_matches(authorization: str | None, token: str | None) -> bool:
    """True if `Authorization: Bearer <token>` carries the configured token (constant time)."""
    if not token or not authorization:
        return False
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8"), token.encode("utf-8"))
