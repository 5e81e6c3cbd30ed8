"""Configured secrets, and text with each of them replaced: the console never shows one.

A secret is any configured string under a key that names a credential, wherever it is in the
config (sources' signing secrets, destinations' tokens and webhook URLs, the status token, the
admin's own settings). The raw request is stored with the source's credential headers and query
values already left out (hub/receiver/app.py); this also catches a secret echoed in a body, an
error text or a destination's answer.
"""

from __future__ import annotations

import re
from typing import Any

from hub.config.models import HubConfig

_SECRET_KEY = re.compile(r"secret|token|password|passwd|key|webhook_url|auth|credential|dsn|private", re.I)
_MIN_LENGTH = 6  # shorter values (e.g. 'true') would blank out ordinary words
MASK = "[redacted]"


def secrets_of(config: HubConfig) -> list[str]:
    found: set[str] = set()
    _walk(config.model_dump(mode="json", by_alias=True), False, found)
    return sorted(found, key=len, reverse=True)  # longest first: one secret may contain another


def scrub(text: str | None, secrets: list[str]) -> str:
    if not text:
        return text or ""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class Scrubber:
    """`scrub` with the config's secrets, remembering each text it saw: dead letters repeat a
    few reasons thousands of times, and each check is one substring search per secret."""

    def __init__(self, config: HubConfig) -> None:
        self.secrets = secrets_of(config)
        self._seen: dict[str, str] = {}

    def __call__(self, text: str | None) -> str:
        if not text:
            return ""
        if text not in self._seen:
            self._seen[text] = scrub(text, self.secrets)
        return self._seen[text]


def _walk(value: Any, secret_key: bool, found: set[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _walk(item, secret_key or bool(_SECRET_KEY.search(str(key))), found)
    elif isinstance(value, list):
        for item in value:
            _walk(item, secret_key, found)
    elif isinstance(value, str) and secret_key and len(value) >= _MIN_LENGTH:
        found.add(value)
