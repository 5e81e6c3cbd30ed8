"""Checks every provider's `reconcile:` settings share, and the webhook-URL comparisons."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, SecretStr, ValidationInfo

from connectors.reconciling.contract import WebhookHealth

# Each provider's Settings keeps its own rules (a token prefix, an id's alphabet, a version suffix
# to drop) and calls these for what every provider checks alike, so that the same mistake gets the
# same answer whichever provider the source is.

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
"""Hosts an `api_base_url` may name over plain http: a test's fake API on this machine."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BEARER = re.compile(r"bearer\s", re.IGNORECASE)


def api_base_url(value: str, example: str, name: str = "api_base_url") -> str:
    """`value` stripped and without its trailing `/`, refused (ValueError naming `example`) unless it
    is a plain http(s) URL with a host: no query, fragment or user:password@, and https unless the
    host is loopback. The API's credentials are sent to it, so a typo must fail at config load, not
    send them in clear or somewhere else."""
    text = value.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        host, _ = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"{name} is not a URL such as {example}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"{name} must be an https URL such as {example}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(
            f"{name} must be a plain URL such as {example}: no query, fragment or user:password@"
        )
    if parts.scheme == "http" and host not in LOOPBACK:
        raise ValueError(
            f"{name} must use https, as in {example}: the credentials are sent to it "
            "(plain http is allowed only to localhost, for tests)"
        )
    return text


def bare_url(url: str) -> str:
    """scheme://host[:port]/path of `url`, lower-case, without a trailing `/` or a default port.

    No user info, query or fragment: a webhook URL's query may hold the source's token, and its
    user info another service's password, so this is the only form of a URL a message may show
    (and then only the hub's own: another service's path can be its secret, see `url_host`)."""
    try:
        parts = urlsplit(url.strip())
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:  # a port that is no number, a broken [IPv6]: compared and shown without them
        parts, host, port = urlsplit(""), "", None
    if ":" in host:
        host = f"[{host}]"
    scheme = parts.scheme.lower()
    shown_port = f":{port}" if port is not None and port != _DEFAULT_PORTS.get(scheme) else ""
    return f"{scheme}://{host}{shown_port}{parts.path.rstrip('/')}"


def same_endpoint(url: str, expected: str) -> bool:
    """Whether a webhook's `url` sends to `expected` (the source's public URL): scheme, host, port and
    path alike; query, fragment and user info are ignored (the query carries the source's token, which
    a provider may show masked or the hub may not know). An empty URL matches nothing."""
    if not url.strip() or not expected.strip():
        return False
    return bare_url(url) == bare_url(expected)


def url_host(url: object) -> str:
    """The host of a webhook URL that is not the hub's, to name it in a message; `?` if there is none.

    Only the host: the path of another service's webhook is often its secret (Zapier's
    /hooks/catch/<id>/<key>/, Make's /<key>), and an alert is read by people who must not get it."""
    if not isinstance(url, str):
        return "?"
    try:
        return (urlsplit(url.strip()).hostname or "?").lower()
    except ValueError:
        return "?"


def secret_text(value: SecretStr | str, name: str, env_hint: str) -> str:
    """A credential from the config, stripped, after the checks every provider makes alike: not
    empty, not an unexpanded `${...}` reference, not prefixed with `Bearer `, one word. A provider
    checks its own shape (a prefix, a length) on what this returns. Messages never quote the value;
    `env_hint` is the variable the docs suggest (`TYPEFORM_TOKEN`), to say where it comes from."""
    text = (value.get_secret_value() if isinstance(value, SecretStr) else value).strip()
    if not text:
        raise ValueError(f"{name} is empty (is its environment variable, e.g. {env_hint}, unset?)")
    if "${" in text:
        raise ValueError(
            f"{name} holds an unexpanded ${{...}} reference: set the environment variable it names "
            f"(e.g. {env_hint}) where hookhub runs"
        )
    if _BEARER.match(text):
        raise ValueError(f"{name} must be the token alone, without 'Bearer '")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(f"{name} must be one line and must not contain spaces or line breaks")
    return text


def id_text(value: object, name: str, shape: re.Pattern[str], hint: str) -> str:
    """A provider's id (form, survey, site) from the config: stripped, a number taken as its digits,
    refused unless it matches `shape` all through, with `hint` saying where to find it ("must be
    <hint>"). A pasted share link then fails at config load rather than as a 404 at the first run."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not shape.fullmatch(text):
        raise ValueError(f"{name} must be {hint}")
    return text


def zone_text(value: str, name: str, example: str) -> str:
    """An IANA time zone name from the config (`timezone`, for an API whose times carry no zone),
    stripped, refused (ValueError naming `example`) unless the zone database knows it."""
    text = value.strip()
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name} must be an IANA time zone such as {example}") from None
    return text


def hosts(urls: Iterable[object]) -> str:
    """The hosts of webhook URLs that are not the hub's, sorted, for a message (see `url_host`)."""
    return ", ".join(sorted({url_host(u) for u in urls})) or "no URL"


def url_health(urls: list[str], expected_url: str | None, where: str, how_to_add: str) -> WebhookHealth:
    """What a provider's list of webhook URLs says where it has no enabled flag (Jotform, Webflow):
    missing, elsewhere or ok. `where` names the form or site, `how_to_add` tells the admin how to
    create the webhook again."""
    urls = [u for u in urls if u.strip()]
    if not urls:
        return WebhookHealth("missing", f"{where} has no webhook: {how_to_add}")
    if expected_url is None:
        return WebhookHealth(
            "ok", f"{where} has {len(urls)} webhook(s) (where they point is not checked: no public URL known)"
        )
    if any(same_endpoint(u, expected_url) for u in urls):
        return WebhookHealth("ok", f"{where} has a webhook to {bare_url(expected_url)}")
    return WebhookHealth(
        "elsewhere",
        f"{where} has no webhook to {bare_url(expected_url)} (its webhooks go to {hosts(urls)})",
    )


# The same checks as validators on a Settings field, `form_id: Annotated[str, checked_id(...)]`,
# under the field's own name, for the settings that need nothing else.


def checked_id(
    shape: re.Pattern[str], hint: str, *, before: bool = False, lower: bool = False
) -> AfterValidator | BeforeValidator:
    """`id_text` on the field (lower-cased if `lower`; None stays None on an optional field). `before`:
    checked before pydantic's `str` check, so that a YAML number (`form_id: 1234`) is taken as its
    digits rather than refused."""

    def check(value: object, info: ValidationInfo) -> str | None:
        if value is None and not before:
            return None
        text = id_text(value, info.field_name or "id", shape, hint)
        return text.lower() if lower else text

    return BeforeValidator(check) if before else AfterValidator(check)


def checked_base_url(example: str, *suffixes: str) -> AfterValidator:
    """`api_base_url` on the field (None stays None), then without `suffixes` in turn (a version path
    the docs write into their server's URL: /v2)."""

    def check(value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        text = api_base_url(value, example, info.field_name or "api_base_url")
        for suffix in suffixes:
            text = text.removesuffix(suffix)
        return text

    return AfterValidator(check)


def checked_zone(example: str) -> AfterValidator:
    """`zone_text` on the field (None stays None)."""

    def check(value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else zone_text(value, info.field_name or "timezone", example)

    return AfterValidator(check)
