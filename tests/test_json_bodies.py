"""JSON webhook bodies: the fast parser accepts and rejects exactly what json does, with json's messages."""

from __future__ import annotations

import json

import pytest

from connectors._answers import has_long_digit_run, parse_json_object
from connectors.base import UnsupportedPayload


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1, "b": [true, null, "\\u00e9"], "c": {"d": 1.5}}',
        '{"name": "Zoë", "emoji": "😀"}'.encode(),
        b'{"big": 123456789012345678901234567890}',  # beyond 64 bits: exact, as json parses it
        b'{"big": -18446744073709551616, "s": "12345678901234567890123"}',
        b'{"below_int64": -9223372036854775809}',
        '{"utf16": "text"}'.encode("utf-16"),  # json detects UTF-16/32 byte order marks
        b'  {"padded": true}\n',
        b'{"dup": 1, "dup": 2, "f": 0.1, "e": 1e-7, "z": -0.0}',
    ],
)
def test_same_result_as_json(body: bytes) -> None:
    parsed = parse_json_object(body)
    expected = json.loads(body)
    assert json.dumps(parsed, sort_keys=True) == json.dumps(expected, sort_keys=True)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"a": ', "body is not valid JSON (Expecting value at position 6)"),
        (b'{"a": "\xff"}', "body is not UTF-8 text"),
        (b"[1, 2]", "JSON body is list, expected an object"),
        (b'"text"', "JSON body is str, expected an object"),
        (b"", "body is not valid JSON (Expecting value at position 0)"),
    ],
)
def test_errors_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(UnsupportedPayload) as raised:
        parse_json_object(body)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"n": 123456789012345678}', False),  # 18 digits: within int64, orjson's exact path
        (b'{"n": 1234567890123456789}', True),
        (b'{"a": 123456789, "b": 1234567890}', False),  # short runs never add up
        (b'{"s": "0000000000000000000"}', True),  # any run counts, strings too: json is exact anyway
        (
            (
                '{"s": "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660'
                '\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"}'
            ).encode(),
            False,
        ),
    ],
)
def test_long_digit_runs_are_found(body: bytes, expected: bool) -> None:
    assert has_long_digit_run(body) is expected
