"""Tokens of the `when` language: strings, numbers, names, keywords and a few operators.

Hand-written rather than borrowed from Python's tokenizer so that nothing but this small
alphabet is ever accepted, and so that every token knows its column for error messages.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from hub.routing.errors import syntax_error

TokenKind = Literal["str", "num", "name", "kw", "op", "end"]

KEYWORDS = frozenset(
    {"and", "or", "not", "in", "contains", "startswith", "endswith", "matches"}
    | {"true", "false", "null", "True", "False", "None"}
)
# Longest first, so `<=` is never read as `<` then `=`.
OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ",", ".", "-")
# Spellings from other languages: named in the error so the admin knows what to write.
_HINTS = {"&&": "use 'and'", "||": "use 'or'", "=": "use '==' to compare", "!": "use 'not' or '!='"}
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_NUMBER = re.compile(r"\d+(\.\d+)?([eE][+-]?\d+)?", re.ASCII)


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    value: str | int | float
    start: int  # 0-based offsets into the condition text
    end: int

    @property
    def col(self) -> int:
        return self.start + 1

    def describe(self) -> str:
        """The token for an error message; literals are not quoted (they may be personal data)."""
        if self.kind == "end":
            return "end of condition"
        if self.kind == "str":
            return "string"
        if self.kind == "num":
            return "number"
        return f"'{self.value}'"


def tokenize(text: str) -> list[Token]:
    """All tokens of `text`, ending with one `end` token; raises WhenSyntaxError."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char.isspace():
            pos += 1
        elif char in "'\"":
            tokens.append(_string(text, pos))
            pos = tokens[-1].end
        elif "0" <= char <= "9":
            tokens.append(_number(text, pos))
            pos = tokens[-1].end
        elif char.isalpha() or char == "_":
            end = pos + 1
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
            word = text[pos:end]
            tokens.append(Token("kw" if word in KEYWORDS else "name", word, pos, end))
            pos = end
        else:
            hint = next((h for h in ("&&", "||") if text.startswith(h, pos)), None)
            op = next((o for o in OPERATORS if text.startswith(o, pos)), None)
            if op is None or hint is not None:
                bad = hint or char
                raise syntax_error(f"unexpected '{bad}'", pos + 1, _HINTS.get(bad, ""))
            tokens.append(Token("op", op, pos, pos + len(op)))
            pos += len(op)
    tokens.append(Token("end", "", len(text), len(text)))
    return tokens


def _string(text: str, start: int) -> Token:
    quote = text[start]
    out: list[str] = []
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == quote:
            return Token("str", "".join(out), start, pos + 1)
        if char == "\\" and pos + 1 < len(text):
            nxt = text[pos + 1]
            if nxt == "u":
                digits = text[pos + 2 : pos + 6]
                if not re.fullmatch(r"[0-9a-fA-F]{4}", digits):
                    raise syntax_error("bad \\u escape", pos + 1, "write \\u and 4 hex digits")
                out.append(chr(int(digits, 16)))
                pos += 6
                continue
            # Unknown escapes keep their backslash, as Python did: `matches '\d+'` means \d+.
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            pos += 2
            continue
        out.append(char)
        pos += 1
    raise syntax_error("unclosed string", start + 1, f"add the closing {quote}")


def _number(text: str, start: int) -> Token:
    match = _NUMBER.match(text, start)
    assert match is not None  # the caller saw a digit
    end = match.end()
    if end < len(text) and (text[end].isalnum() or text[end] in "_."):
        raise syntax_error("invalid number", start + 1)
    literal = match.group()
    try:
        value: int | float = float(literal) if match.group(1) or match.group(2) else int(literal)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        value = math.inf
    if isinstance(value, float) and not math.isfinite(value):
        raise syntax_error("number too large", start + 1)
    return Token("num", value, start, end)
