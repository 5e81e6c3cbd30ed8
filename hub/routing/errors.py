"""The two ways a `when` condition fails: when it is compiled, and when it is evaluated."""

from __future__ import annotations


class WhenSyntaxError(Exception):
    """The condition text is not a valid condition; `col` is 1-based in that text.

    The message already names the column, so `hookhub check` can print it after the
    position of the `when` value in connectors.yaml.
    """

    def __init__(self, message: str, col: int) -> None:
        super().__init__(message)
        self.message = message
        self.col = col


class WhenError(Exception):
    """Evaluating a valid condition failed for one submission (a type mismatch, a bad number).

    Messages name the part of the condition (its text and column) and the types involved,
    never the submission's values: they end up in logs, and answers are personal data.
    """

    def __init__(self, message: str, col: int) -> None:
        super().__init__(message)
        self.message = message
        self.col = col


def syntax_error(problem: str, col: int, detail: str = "") -> WhenSyntaxError:
    """`<problem> at column N (<detail>)`: one shape for every syntax message."""
    return WhenSyntaxError(f"{problem} at column {col}" + (f" ({detail})" if detail else ""), col)
