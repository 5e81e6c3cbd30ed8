"""A stored request as the admin may see it: credentials and signatures replaced by [redacted].

The receiver already drops credential headers and URL tokens before storing (hub/runtime.py);
this is the second line, for what storage keeps on purpose (signature headers, which a
re-verification needs, and body fields such as Wufoo's or Formstack's `HandshakeKey`) and for
anything else whose name says it is a credential. Names come from the connector's own
declarations first (`credential_headers`, `credential_query`, `stored_headers`), then a pattern.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel

from connectors.base import Connector
from hub.runtime import CREDENTIAL_HEADERS, CREDENTIAL_QUERY, STORED_HEADERS

REDACTED = "[redacted]"
_CREDENTIAL_NAME = re.compile(
    r"secret|token|passw|signature|handshake|api[-_]?key|authorization|^auth$|credential|cookie|hmac|sig$",
    re.IGNORECASE,
)
BODY_SHOWN = 64 * 1024
"""Bytes of a raw body shown; the rest is counted, not printed."""


class RawRequest(BaseModel):
    method: str
    url: str
    headers: dict[str, str]
    body: str
    """UTF-8 text (undecodable bytes replaced), credential fields redacted, cut at BODY_SHOWN."""
    body_bytes: int
    redacted: list[str]
    """Where something was replaced: 'header x', 'query token', 'body HandshakeKey'."""


def _is_credential(name: str, declared: frozenset[str]) -> bool:
    return name.lower() in declared or bool(_CREDENTIAL_NAME.search(name))


def raw_request(
    method: str, url: str, headers: dict[str, str], body: bytes, connector: Connector | None
) -> RawRequest:
    redacted: list[str] = []
    # A connector's own stored headers beyond the common ones are its id/timestamp/signature
    # headers: the signature ones match the pattern, the ids and timestamps stay readable.
    header_names = CREDENTIAL_HEADERS | (connector.credential_headers if connector else frozenset())
    shown_headers = {}
    for name, value in sorted(headers.items()):
        if name.lower() not in STORED_HEADERS and _is_credential(name, header_names):
            shown_headers[name] = REDACTED
            redacted.append(f"header {name}")
        else:
            shown_headers[name] = value
    query_names = CREDENTIAL_QUERY | (connector.credential_query if connector else frozenset())
    shown_url = _url(url, query_names, redacted)
    text = body[:BODY_SHOWN].decode("utf-8", "replace")
    if len(body) <= BODY_SHOWN:
        text = _body(text, headers.get("content-type", ""), query_names, redacted)
    return RawRequest(
        method=method,
        url=shown_url,
        headers=shown_headers,
        body=text,
        body_bytes=len(body),
        redacted=redacted,
    )


def _url(url: str, names: frozenset[str], redacted: list[str]) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if _is_credential(key, names):
            redacted.append(f"query {key}")
            value = REDACTED
        pairs.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(pairs, safe="[]")))


def _body(text: str, content_type: str, names: frozenset[str], redacted: list[str]) -> str:
    """The body as received, or re-encoded with its credential fields replaced if it had any."""
    before = len(redacted)
    if "x-www-form-urlencoded" in content_type:
        pairs = parse_qsl(text, keep_blank_values=True)
        cleaned = [(k, _field(k, v, names, redacted)) for k, v in pairs]
        return urlencode(cleaned, safe="[]") if len(redacted) > before else text
    try:
        data = json.loads(text)
    except ValueError:
        return text
    cleaned_data = _walk(data, names, redacted)
    return json.dumps(cleaned_data, ensure_ascii=False) if len(redacted) > before else text


def _field(key: str, value: Any, names: frozenset[str], redacted: list[str]) -> Any:
    if _is_credential(key, names):
        redacted.append(f"body {key}")
        return REDACTED
    return value


def _walk(value: Any, names: frozenset[str], redacted: list[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: _field(k, v, names, redacted) if isinstance(v, (str, int)) else _walk(v, names, redacted)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_walk(v, names, redacted) for v in value]
    return value
