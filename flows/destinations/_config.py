"""Validation rules shared by destination settings (a helper, not a destination type)."""

from __future__ import annotations

from pydantic import SecretStr


def one_word_secret(value: SecretStr, problem: str) -> SecretStr:
    """`value` stripped, or ValueError(`problem`) when it is empty or has white space inside.

    A token pasted with a line break, or an unset environment variable, would otherwise only fail
    at the first delivery; `problem` never quotes the value, which is a credential.
    """
    text = value.get_secret_value().strip()
    if not text or any(char.isspace() for char in text):
        raise ValueError(problem)
    return SecretStr(text)


def api_credential(value: SecretStr, what: str) -> SecretStr:
    """`one_word_secret` for a credential pasted from a service's console (`what`: "token", "API key")."""
    return one_word_secret(
        value, f"must be the {what} itself: one word, no spaces (is the environment variable set?)"
    )
