"""Wufoo's Handshake Key is read from the raw body without parsing the form (connectors/wufoo/__init__.py).

Verification runs for every caller, signed or not, so it must not parse a 10 MiB form first;
what it reads must still be exactly what the form parser reads, or a real key would be refused
(or a wrong one taken).
"""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors._answers import parse_form_urlencoded
from connectors.base import UnsupportedPayload, VerificationFailed
from connectors.wufoo import _handshake_key

NAMES = st.sampled_from(["HandshakeKey", "Field1", "xHandshakeKey", "HandshakeKeyx", "EntryId", ""])
VALUES = st.text(max_size=12)


def _pair(name: str, value: str) -> str:
    return f"{quote_plus(name)}={quote_plus(value)}"


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=8))
def test_reads_what_the_form_parser_reads(pairs: list[tuple[str, str]]) -> None:
    body = "&".join(_pair(name, value) for name, value in pairs).encode()
    assert _handshake_key(body) == parse_form_urlencoded(body).get("HandshakeKey")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"HandshakeKey=a+b%21", "a b!"),
        (b"Field1=1&HandshakeKey=first&HandshakeKey=last", "last"),
        (b"xHandshakeKey=forged&Field1=1", None),
        (b"HandshakeKey=real&xHandshakeKey=forged", "real"),
        (b"Field1=HandshakeKey=inside", None),
        (b"", None),
    ],
)
def test_edge_cases(body: bytes, expected: str | None) -> None:
    assert _handshake_key(body) == expected


@pytest.mark.parametrize("body", [b"HandshakeKey=%FF", b"HandshakeKey=\xff"])
def test_a_key_that_is_not_utf8_is_refused_not_a_crash(body: bytes) -> None:
    with pytest.raises(VerificationFailed, match="not form-encoded UTF-8"):
        _handshake_key(body)
    with pytest.raises(UnsupportedPayload):
        parse_form_urlencoded(body)
