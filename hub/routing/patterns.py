"""Regular expressions of `matches`, run by RE2: time linear in the text, whatever the pattern.

Python's `re` backtracks: `(a+)+$` against 31 characters held the GIL for over two minutes and
froze the whole hub. RE2 never backtracks, so it refuses the features that need it
(backreferences, lookaround, atomic groups, possessive quantifiers, conditionals); `hookhub
check` names the feature. RE2 also releases the GIL while it matches.

Differences from Python's `re` an admin may meet: `\\d`, `\\w`, `\\s` and `\\b` are ASCII only
(`\\pL` or `[[:alpha:]]` for letters of any script, `\\pN` for digits), `\\Z` is spelled `\\z`,
and `(?x)`/`(?a)`/`(?u)` flags do not exist (`(?i)`, `(?m)`, `(?s)` and `(?U)` do).
"""

from __future__ import annotations

import codecs
import functools
import re

import re2

MAX_PATTERN_CHARS = 10_000
"""Longer patterns are refused before RE2 sees them, which bounds what the cache holds."""
CACHED_PATTERNS = 128
# RE2's memory budget per compiled pattern (program and DFA cache). A DFA that outgrows it
# falls back to a slower automaton, still linear; measured on 1 MB of text the default 8 MiB
# and 1 MiB ran alike, and 1 MiB keeps the cache's worst case near 128 MiB instead of 1 GiB.
MAX_MEM = 1 << 20

_UNSUPPORTED = (
    (re.compile(r"invalid escape sequence: \\([1-9]|g|k)"), "backreferences (\\1, \\g<1>, \\k<name>)"),
    (re.compile(r"invalid perl operator: \(\?P(?!<)"), "named backreferences (?P=name)"),
    (re.compile(r"invalid perl operator: \(\?(=|!)"), "lookahead (?=...) and (?!...)"),
    (re.compile(r"invalid perl operator: \(\?<(=|!)"), "lookbehind (?<=...) and (?<!...)"),
    (re.compile(r"invalid perl operator: \(\?>"), "atomic groups (?>...)"),
    (re.compile(r"invalid perl operator: \(\?\("), "conditionals (?(1)...)"),
    (re.compile(r"invalid perl operator: \(\?#"), "comments (?#...)"),
    (re.compile(r"bad repetition operator: .*\+$"), "possessive quantifiers (a++, a*+)"),
)
_WHY_UNSUPPORTED = (
    "'matches' runs RE2, which guarantees linear time and so has no backreferences, "
    "lookaround, atomic groups, possessive quantifiers or conditionals"
)
_ESCAPE_HINTS = {"\\Z": "write \\z for the end of the text"}


def _replace_with_fffd(error: UnicodeError) -> tuple[bytes, int]:
    assert isinstance(error, UnicodeEncodeError)
    # Bytes: the UTF-8 encoder takes only ASCII text from an error handler.
    return "\ufffd".encode() * (error.end - error.start), error.end


# A lone surrogate (half an emoji cut by a length limit) cannot be encoded as UTF-8; RE2 then
# sees U+FFFD in its place, as a replacement character is what such text shows everywhere else.
codecs.register_error("hookhub-fffd", _replace_with_fffd)


class PatternError(ValueError):
    """RE2 cannot run the pattern. `problem` is safe to show for any pattern; `detail` may
    quote the pattern (fine for connectors.yaml, not for a pattern taken from a submission)."""

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem
        self.detail = detail


class Pattern:
    """A compiled `matches` pattern; `search(text)` is True when it matches anywhere in text."""

    __slots__ = ("_regexp", "text")

    def __init__(self, text: str, regexp: re2._Regexp[str]) -> None:  # google-re2's own class name
        self.text = text
        self._regexp = regexp

    def search(self, text: str) -> bool:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            data = text.encode("utf-8", "hookhub-fffd")
        # Bytes in, so RE2 matches the UTF-8 as it is, without mapping offsets back to str.
        return self._regexp.search(data) is not None

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


def compile_pattern(text: str) -> Pattern:
    """The compiled pattern, cached; raises PatternError naming what RE2 does not accept."""
    if len(text) > MAX_PATTERN_CHARS:
        problem = f"pattern longer than {MAX_PATTERN_CHARS} characters"
        raise PatternError(problem, problem)
    return _compile(text)


@functools.lru_cache(maxsize=CACHED_PATTERNS)
def _compile(text: str) -> Pattern:
    options = re2.Options()
    options.max_mem = MAX_MEM
    options.log_errors = False  # RE2 would print the pattern to stderr, outside the JSON logs
    try:
        return Pattern(text, re2.compile(text, options))
    except re2.error as exc:
        raise _explain(exc) from None
    except UnicodeEncodeError:  # RE2 takes UTF-8
        raise PatternError("pattern is not valid text", "pattern holds a lone surrogate") from None


def _explain(exc: re2.error) -> PatternError:
    raw = exc.args[0] if exc.args else ""
    message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    # RE2 says "<what>: <the part of the pattern>"; only <what> is free of the pattern's text.
    problem = message.split(": ", 1)[0] or "invalid regular expression"
    for shape, feature in _UNSUPPORTED:
        if shape.match(message):
            return PatternError(f"{feature} not supported", f"{feature} not supported: {_WHY_UNSUPPORTED}")
    for escape, hint in _ESCAPE_HINTS.items():
        if message == f"invalid escape sequence: {escape}":
            return PatternError(problem, f"{message}: {hint}")
    return PatternError(problem, message)
