"""What the receiver takes from an ASGI request: its headers, the URL a provider signed, and the
parts of it that are stored (the source's allow-listed headers, the URL with credentials redacted)."""

from __future__ import annotations

import functools
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.datastructures import URL
from starlette.types import Scope

from hub.runtime import PreparedSource


def request_headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (as the server gives them); repeats joined with ", "."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name in headers:
            return _joined_headers(scope["headers"])
        headers[name] = raw_value.decode("latin-1")
    return headers


def _joined_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    # Each name's values are joined once at the end: joining per repeat was quadratic
    # (400,000 repeats of one header took 190 s with the event loop stopped).
    values: dict[str, list[str]] = {}
    for raw_name, raw_value in raw:
        values.setdefault(raw_name.decode("latin-1").lower(), []).append(raw_value.decode("latin-1"))
    return {name: ", ".join(parts) for name, parts in values.items()}


def stored_headers(headers: dict[str, str], names: frozenset[str]) -> dict[str, str]:
    """The headers kept with a stored request: only the source's allow-list (see hub.runtime)."""
    return {name: value for name in names if (value := headers.get(name)) is not None}


def verification_url(scope: Scope, headers: dict[str, str], source: PreparedSource) -> str:
    """The URL the provider signed: the configured public URL (behind proxies the Host differs).

    The query always comes from the request itself: it can carry the credential (URL-token
    schemes), so a query written into `public_url` must never stand in for the real one.
    """
    public = source.config.public_url
    if not public:
        return _request_url(scope, headers)
    base = public.split("?", 1)[0]
    query = URL(scope=scope).query if scope.get("query_string") else ""
    return f"{base}?{query}" if query else base


def _request_url(scope: Scope, headers: dict[str, str]) -> str:
    """`str(request.url)`, as Starlette builds it; remembered, as it costs more than the HMAC."""
    host = headers.get("host")
    if host is not None and "," in host:  # repeated Host headers: Starlette takes the first
        return str(URL(scope=scope))
    server = scope.get("server")
    return _url_from_parts(
        scope.get("scheme", "http"),
        host,
        tuple(server) if server else None,
        scope["path"],
        scope.get("query_string", b""),
    )


@functools.lru_cache(maxsize=1024)
def _url_from_parts(
    scheme: str, host: str | None, server: tuple[str, int] | None, path: str, query_string: bytes
) -> str:
    headers = [] if host is None else [(b"host", host.encode("latin-1"))]
    scope = {
        "scheme": scheme,
        "server": server,
        "path": path,
        "query_string": query_string,
        "headers": headers,
    }
    return str(URL(scope=scope))


def redacted_url(url: str, names: frozenset[str]) -> str:
    if "?" not in url:
        return url
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [
        (k, "REDACTED" if k.lower() in names else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(pairs)))
