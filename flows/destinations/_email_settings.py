"""Config keys and addresses every e-mail destination shares (a helper, not a destination type).

`smtp`, `sendgrid` and `postmark` subclass `EmailSettings`, so `from`, `to`, `subject`, the body
templates and `map` mean the same whatever carries the mail. Rendering is in `_email_render`.
"""

from __future__ import annotations

import re
import unicodedata
from email.utils import getaddresses
from typing import NamedTuple

from pydantic import Field, field_validator, model_validator

from flows.destinations.base import DestinationSettings

MAP_FIELDS = ("to", "cc", "bcc", "subject", "reply_to", "reply_to_name")
"""What a `map:` may set: the message's submission-dependent fields."""

DEFAULT_SUBJECT = "New submission: {{ title }}{% if name %} from {{ name }}{% endif %}"

_ATOM = r"[^\s@<>()\[\],;:\"\\]"
_ADDRESS = re.compile(rf"{_ATOM}+@[^\s@<>()\[\],;:\"\\.]+(\.[^\s@<>()\[\],;:\"\\.]+)+")
_NAME_SPECIALS = re.compile(r"[()<>\[\]:;@\\,.\"]")
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")
_STRUCTURE = {
    ",": "a comma",
    ";": "a semicolon",
    "<": "an angle bracket",
    ">": "an angle bracket",
    '"': "a double quote",
    "(": "a parenthesis",
    ")": "a parenthesis",
    ":": "a colon",
    "[": "a square bracket",
    "]": "a square bracket",
    "\\": "a backslash",
}
"""What would let one value from a submission split into, or wrap, several addresses (RFC 5322
separators, display names, comments, groups). `'` and `@` stay allowed: o'neil@example.com."""


class Mailbox(NamedTuple):
    name: str
    address: str

    def formatted(self) -> str:
        """`Name <address>` as JSON APIs take it; the name quoted when it holds specials."""
        if not self.name:
            return self.address
        name = self.name
        if _NAME_SPECIALS.search(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{self.address}>"


def has_jinja(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def one_line(text: str, limit: int) -> str:
    """A header value: whitespace (CR/LF included) collapsed, so user data cannot add headers."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def address_value_problem(value: str) -> str | None:
    """Why `value`, interpolated from a submission into an address template, could add or reshape
    recipients, or None when it can only be (part of) one address."""
    for char in value:
        if char in _STRUCTURE:
            return _STRUCTURE[char]
        if char.isspace():
            return "white space" if char in " \t" else "a line break or other white space"
        if unicodedata.category(char) in ("Cc", "Cf"):
            return "a control character"
    return None


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def parse_mailboxes(text: str) -> list[Mailbox]:
    """Addresses in `text` (separated by `,` or `;`, `Name <a@b>` allowed); ValueError on a bad one."""
    found: list[Mailbox] = []
    for part in _split_addresses(" ".join(text.split())):
        pairs = getaddresses([part])
        name, address = pairs[0] if len(pairs) == 1 else ("", "")
        if not _ADDRESS.fullmatch(address):
            raise ValueError(f"{one_line(part, 80)!r} is not an e-mail address")
        found.append(Mailbox(one_line(name, 100), address))
    return found


def _split_addresses(text: str) -> list[str]:
    """Split on separators outside quotes and angle brackets (`"Doe, Jane" <j@x>, k@y`)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = angle = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char in "<>" and not quoted:
            angle = char == "<"
        if char in ",;" and not quoted and not angle:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


class EmailSettings(DestinationSettings):
    from_: str = Field(
        alias="from",
        description="sender: forms@example.com or 'Forms <forms@example.com>'",
        examples=["Forms <forms@example.com>"],
    )
    to: list[str] = Field(
        min_length=1,
        description="recipients; each entry addresses or a Jinja template",
        examples=[["sales@example.com"], ["{{ answers['Department'] | lower }}@example.com"]],
    )
    cc: list[str] = Field(
        default_factory=list, description="copy recipients, like `to`", examples=[["team-lead@example.com"]]
    )
    bcc: list[str] = Field(
        default_factory=list,
        description="blind-copy recipients, like `to`",
        examples=[["archive@example.com"]],
    )
    subject: str = Field(default=DEFAULT_SUBJECT, min_length=1, description="Jinja template of the subject")
    text_template: str | None = Field(default=None, description="Jinja template of the plain-text body")
    html_template: str | None = Field(
        default=None, description="Jinja template of the HTML body (autoescaped)"
    )
    html: bool = Field(default=True, description="also send an HTML part")
    map: dict[str, str] | None = Field(
        default=None, description=f"Jinja templates for {', '.join(MAP_FIELDS)}; a route's map replaces it"
    )
    allowed_recipient_domains: list[str] | None = Field(
        default=None,
        min_length=1,
        description="when set, every to/cc/bcc address must be at one of these domains (exact match)",
    )

    @field_validator("from_")
    @classmethod
    def _sender(cls, value: str) -> str:
        try:
            found = parse_mailboxes(value)
        except ValueError:
            found = []
        if len(found) != 1:
            raise ValueError(
                "must be one e-mail address, such as forms@example.com or 'Forms <forms@example.com>'"
            )
        return value.strip()

    @field_validator("to", "cc", "bcc")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        # Literal entries are checked now; templates only once a submission renders them.
        for entry in value:
            if not has_jinja(entry):
                parse_mailboxes(entry)
        return value

    @field_validator("allowed_recipient_domains")
    @classmethod
    def _domains(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        domains = [entry.strip().lower().removeprefix("@").rstrip(".") for entry in value]
        for domain in domains:
            if not _DOMAIN.fullmatch(domain):
                raise ValueError(f"{domain!r} is not a domain such as example.com (IDNs in their xn-- form)")
        return domains

    @model_validator(mode="after")
    def _literal_recipients_allowed(self) -> EmailSettings:
        if self.allowed_recipient_domains is None:
            return self
        for name in ("to", "cc", "bcc"):
            for entry in getattr(self, name):
                if has_jinja(entry):
                    continue
                for mailbox in parse_mailboxes(entry):
                    if domain_of(mailbox.address) not in self.allowed_recipient_domains:
                        raise ValueError(f"{name}: {mailbox.address} is outside allowed_recipient_domains")
        return self

    @field_validator("map")
    @classmethod
    def _map_fields(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        unknown = sorted(set(value or {}) - set(MAP_FIELDS))
        if unknown:
            raise ValueError(f"unknown e-mail field {unknown[0]!r}; known: {', '.join(MAP_FIELDS)}")
        return value

    @property
    def sender(self) -> Mailbox:
        return parse_mailboxes(self.from_)[0]
