"""Validation rules shared by destination settings (a helper, not a destination type)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, SecretStr

from flows.destinations import _http


def one_word_secret(value: SecretStr, problem: str) -> SecretStr:
    """`value` stripped, or ValueError(`problem`) when it is empty or has white space inside.

    A token pasted with a line break, or an unset environment variable, would otherwise only fail
    at the first delivery; `problem` never quotes the value, which is a credential.
    """
    text = value.get_secret_value().strip()
    if not text or any(char.isspace() for char in text):
        raise ValueError(problem)
    return SecretStr(text)


def api_credential(what: str) -> AfterValidator:
    """`one_word_secret` for a credential pasted from a service's console (`what`: "token", "API key"),
    as the validator of an `Annotated[SecretStr, ...]` field."""
    problem = f"must be the {what} itself: one word, no spaces (is the environment variable set?)"
    return AfterValidator(lambda value: one_word_secret(value, problem))


def _api_root(value: str) -> str:
    return _http.check_url(value, allow_http=False).rstrip("/")


def _plain_token(value: SecretStr) -> SecretStr:
    return one_word_secret(value, "must be a non-empty token without spaces or line breaks")


ApiRoot = Annotated[str, AfterValidator(_api_root)]
"""An HTTPS API root (http only to a loopback host: tests' local servers), without a trailing slash."""

PlainToken = Annotated[SecretStr, AfterValidator(_plain_token)]
"""A bearer token: stripped, one word."""
