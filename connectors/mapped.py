"""Mapped webhooks: any sender of JSON or form fields, described in connectors.yaml, no code.

The admin says where things are (`event_id: data.id`, `answers: {list: data.fields, ...}`)
and how requests are authenticated (`verify: {mode: hmac | token | basic | none, ...}`);
docs/providers/mapped.md is the user's guide, `MappedOptions` the reference. Answer values
follow ../shared/fixtures/providers/README.md ("Value rules common to all").

`envelope` and `normalize` take no source, but what they do depends on the source's
options: they run on `connector.for_source(options)` (a `MappedConnector` holding them). The
module's `connector` holds the defaults (`MappedOptions()`), and its `verify` refuses a
source configured otherwise: a hub that did not bind the connector to its source would
otherwise read every payload with the default mapping, silently wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from python_multipart import FormParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field as MultipartField
from python_multipart.multipart import parse_options_header

from connectors import _answers as A
from connectors._schemes import equal, hmac_digest, matches_any
from connectors._tokens import verify_header_token, verify_query_token
from connectors.base import (
    Connector,
    Envelope,
    InboundRequest,
    Kind,
    NormalizeContext,
    SourceSettings,
    UnsupportedPayload,
    VerificationFailed,
    require_secrets,
)
from hub.submission import Answer, Submission, iso_utc

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
DEFAULT_SIGNATURE_HEADER = "X-Signature"
DEFAULT_TOKEN_HEADER = "Authorization"
DEFAULT_TOKEN_PREFIX = "Bearer "
NO_VERIFICATION_WARNING = (
    "verify.mode is none: anyone who learns this URL can post submissions to it; "
    "use hmac, token or basic if the sender supports any of them"
)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_MISSING: Any = object()
_NOT_A_LITERAL: Any = object()


# --- paths: `data.form.id`, `$.data.id`, `fields[0].value`, `["key with.dots"]` -------------------------


@dataclass(frozen=True)
class Path:
    text: str
    steps: tuple[str | int, ...]

    def get(self, data: Any) -> Any:
        """The value at this path, or `_MISSING`. A bare number also indexes a list (`fields.0`)."""
        node = data
        for step in self.steps:
            if isinstance(node, dict):
                key = str(step)
                if key not in node:
                    return _MISSING
                node = node[key]
            elif isinstance(node, list):
                index = step if isinstance(step, int) else _int(step)
                if index is None or not -len(node) <= index < len(node):
                    return _MISSING
                node = node[index]
            else:
                return _MISSING
        return node

    @property
    def flat(self) -> bool:
        """At most one key, then list indexes: what a form body (flat fields) can hold."""
        keys = [s for s in self.steps if isinstance(s, str) and _int(s) is None]
        return len(keys) <= 1 and (not keys or self.steps[0] == keys[0])


def _int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"-?\d+", text) else None


@lru_cache(maxsize=1024)
def compile_path(text: str) -> Path:
    """Parse a path; raises ValueError saying what is wrong (never echoing the whole path)."""
    s = text.strip()
    if not s:
        raise ValueError("empty path: write `$` for the whole body, or e.g. data.id")
    steps: list[str | int] = []
    i = 0
    if s[0] == "$":
        i = 1
        if i < len(s) and s[i] not in ".[":
            raise ValueError("`$` must be followed by `.` or `[` (e.g. $.data.id)")
        if s[i : i + 1] == ".":
            i += 1
            if i == len(s):
                raise ValueError("nothing after `$.`")
    while i < len(s):
        if s[i] == "[":
            if s[i + 1 : i + 2] in ("'", '"'):
                quote = s[i + 1]
                end = s.find(quote, i + 2)
                if end < 0 or s[end + 1 : end + 2] != "]":
                    raise ValueError(f"unclosed [{quote}...{quote}] at character {i + 1}")
                steps.append(s[i + 2 : end])
                i = end + 2
            else:
                end = s.find("]", i)
                inside = s[i + 1 : end].strip() if end > 0 else ""
                index = _int(inside)
                if end < 0 or index is None:
                    raise ValueError(
                        f"bad [...] at character {i + 1}: use [0] for a list index or ['key'] for a key"
                    )
                steps.append(index)
                i = end + 1
        else:
            end = i
            while end < len(s) and s[end] not in ".[":
                end += 1
            segment = s[i:end]
            if not segment or "]" in segment:
                raise ValueError(f"empty or malformed key at character {i + 1}")
            steps.append(segment)
            i = end
        if i < len(s):
            if s[i] == ".":
                i += 1
                if i == len(s):
                    raise ValueError("path ends with `.`")
            elif s[i] != "[":  # pragma: no cover - the loops above stop only at `.`, `[` or the end
                raise ValueError(f"unexpected {s[i]!r} at character {i + 1}")
    return Path(text=s, steps=tuple(steps))


def _check_path(text: str) -> str:
    compile_path(text)
    return text.strip()


PathText = Annotated[str, AfterValidator(_check_path)]


# --- conditions: `data.type == 'ping'`, `event != "form.submitted"`, `data.test` -------------------------

_COMPARISON = re.compile(r"^(?P<path>.+?)\s*(?P<op>==|!=)\s*(?P<literal>.+)$", re.DOTALL)


@dataclass(frozen=True)
class Condition:
    text: str
    path: Path
    op: Literal["==", "!=", "truthy"]
    literal: Any = None

    def __call__(self, data: Any) -> bool:
        value = self.path.get(data)
        if self.op == "truthy":
            return value is not _MISSING and value not in (None, False, 0, "") and value != [] and value != {}
        same = _same(None if value is _MISSING else value, self.literal)
        return same if self.op == "==" else not same


def _same(value: Any, literal: Any) -> bool:
    if isinstance(value, str) and literal is not None and not isinstance(literal, str):
        # Form fields are text: `test == 1` matches "1", `test == true` matches "true".
        return value == json.dumps(literal)
    if isinstance(value, bool) != isinstance(literal, bool):
        return False  # True == 1 in Python, not in JSON
    return bool(value == literal)


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = _NOT_A_LITERAL
    if value is _NOT_A_LITERAL or isinstance(value, (dict, list)):
        raise ValueError("the right-hand side must be 'text', a number, true, false or null")
    return value


@lru_cache(maxsize=256)
def compile_condition(text: str) -> Condition:
    match = _COMPARISON.match(text.strip())
    if match is None:
        unquoted = re.sub(r"\[(['\"]).*?\1\]", "", text.strip())
        if re.search(r"[=<>!\s]", unquoted):
            raise ValueError("compare with == or != only, e.g. data.type == 'ping'")
        return Condition(text, compile_path(text), "truthy")
    op = match["op"]
    return Condition(
        text, compile_path(match["path"]), "==" if op == "==" else "!=", _literal(match["literal"])
    )


def _check_conditions(value: str | list[str] | None) -> str | list[str] | None:
    for text in [value] if isinstance(value, str) else value or []:
        try:
            compile_condition(text)
        except ValueError as exc:
            raise ValueError(f"invalid condition (PATH == VALUE, PATH != VALUE or PATH): {exc}") from None
    return value


def _conditions(value: str | list[str] | None) -> list[Condition]:
    return [compile_condition(t) for t in ([value] if isinstance(value, str) else value or [])]


# --- options ---------------------------------------------------------------------------------------


class VerifyOptions(BaseModel):
    """How requests are authenticated; keys that do not apply to the chosen `mode` are errors."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["hmac", "token", "basic", "none"] = Field(
        default="hmac",
        description="hmac: signature of the raw body in a header; token: the secret itself in a header or "
        "query parameter; basic: HTTP Basic auth, password = secret; none: no check (hookhub check warns)",
    )
    header: str | None = Field(
        default=None,
        description=f"hmac: header holding the signature (default {DEFAULT_SIGNATURE_HEADER}); token: header "
        f"holding the token (default {DEFAULT_TOKEN_HEADER} with prefix {DEFAULT_TOKEN_PREFIX!r})",
    )
    query: str | None = Field(
        default=None, description="token: URL query parameter holding the token, instead of a header"
    )
    algorithm: Literal["sha1", "sha256", "sha512"] | None = Field(
        default=None, description="hmac: hash function of the HMAC (default sha256)"
    )
    encoding: Literal["hex", "base64", "base64url"] | None = Field(
        default=None, description="hmac: how the digest is written in the header (default hex; any case)"
    )
    prefix: str | None = Field(
        default=None,
        description="hmac: text before the digest, e.g. 'sha256='; token in a header: text before the token, "
        "e.g. 'Bearer ' (both compared case-insensitively)",
    )
    username: str | None = Field(default=None, description="basic: the user name the sender must use")

    @field_validator("header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not _HEADER_NAME.fullmatch(value):
            raise ValueError("not a valid HTTP header name (letters, digits and -, no spaces or colon)")
        return value

    @field_validator("query", "username")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _fits_mode(self) -> VerifyOptions:
        applies = {
            "hmac": {"header", "algorithm", "encoding", "prefix"},
            "token": {"header", "query", "prefix"},
            "basic": {"username"},
            "none": set(),
        }[self.mode]
        stray = [
            k
            for k in ("header", "query", "algorithm", "encoding", "prefix", "username")
            if getattr(self, k) is not None and k not in applies
        ]
        if stray:
            keys = ", ".join(f"`{k}`" for k in stray)
            raise ValueError(f"{keys} {'does' if len(stray) == 1 else 'do'} not apply to mode {self.mode}")
        if self.mode == "token" and self.header is not None and self.query is not None:
            raise ValueError("mode token takes the token from `header` or from `query`, not both")
        if self.mode == "token" and self.query is not None and self.prefix is not None:
            raise ValueError("`prefix` applies to a token in a header, not in the query")
        if self.mode == "basic" and self.username is None:
            raise ValueError("mode basic needs `username` (the password is the source's `secret`)")
        return self

    # Effective settings, defaults applied.
    @property
    def signature_header(self) -> str:
        return self.header or DEFAULT_SIGNATURE_HEADER

    @property
    def token_header(self) -> str | None:
        return None if self.query is not None else self.header or DEFAULT_TOKEN_HEADER

    @property
    def token_prefix(self) -> str:
        if self.prefix is not None:
            return self.prefix
        return DEFAULT_TOKEN_PREFIX if self.header is None and self.query is None else ""


class AnswersOptions(BaseModel):
    """Where the answers are: a list of answer objects (`list`) or one object (`object`, the default)."""

    model_config = ConfigDict(extra="forbid")

    list_: PathText | None = Field(
        default=None, alias="list", description="path to a list of answer objects (the list shape)"
    )
    key: PathText | None = Field(
        default=None, description="list: path inside each item to the question's id (default: its label)"
    )
    label: PathText | None = Field(
        default=None, description="list: path inside each item to the question's text (default: its key)"
    )
    value: PathText | None = Field(default=None, description="list: path inside each item to the answer")
    type_: PathText | None = Field(
        default=None,
        alias="type",
        description="list: path inside each item to the field type (default: text, number, boolean, list "
        "or object, from the value)",
    )
    object_: PathText | None = Field(
        default=None,
        alias="object",
        description="path to an object whose keys are the questions (the object shape; default `$`, the "
        "whole body, which is what form fields are)",
    )
    exclude: list[str] = Field(
        default_factory=list, description="object: keys of that object that are not answers"
    )

    @model_validator(mode="after")
    def _one_shape(self) -> AnswersOptions:
        if self.list_ is not None:
            if self.object_ is not None:
                raise ValueError("use `list` (a list of answer objects) or `object` (one object), not both")
            if self.exclude:
                raise ValueError("`exclude` applies to the object shape; leave it out with `list`")
            if self.value is None:
                raise ValueError("the list shape needs `value`: the path inside each item to the answer")
            if self.key is None and self.label is None:
                raise ValueError("the list shape needs `key` or `label` (or both) to name each answer")
            if not compile_path(self.list_).steps:
                raise ValueError("`list` cannot be `$`: the body is an object; name the list inside it")
        else:
            stray = [
                k
                for k, v in (
                    ("key", self.key),
                    ("label", self.label),
                    ("value", self.value),
                    ("type", self.type_),
                )
                if v is not None
            ]
            if stray:
                keys = ", ".join(f"`{k}`" for k in stray)
                raise ValueError(f"{keys} belong to the list shape: add `list: <path to the list>`")
        return self

    @property
    def container(self) -> Path:
        return compile_path(self.list_ if self.list_ is not None else self.object_ or "$")


Conditions = Annotated[str | list[str] | None, AfterValidator(_check_conditions)]


class MappedOptions(BaseModel):
    """The `mapped` provider's keys of a source. Paths: `data.id`, `$.data.id`, `items[0].value`, `['a.b']`."""

    model_config = ConfigDict(extra="forbid")

    verify: VerifyOptions = Field(
        default_factory=VerifyOptions,
        description="how requests are authenticated (default: hmac, hex HMAC-SHA256 in X-Signature)",
    )
    body: Literal["any", "json", "form"] = Field(
        default="any",
        description="what the sender posts: json, form (urlencoded or multipart fields), or any of them; "
        "send-test posts form fields only with `form`",
    )
    event_id: PathText | None = Field(
        default=None,
        description="the sender's unique id of the event, the dedupe key; required in every submission when "
        "set; unset: sha256 of the raw body",
    )
    form_id: PathText | None = Field(default=None, description="the form's id (optional)")
    form_title: PathText | None = Field(default=None, description="the form's name (optional)")
    submitted_at: PathText | None = Field(
        default=None,
        description="submission time: ISO 8601, or epoch seconds or milliseconds; absent: receive time",
    )
    email: PathText | None = Field(
        default=None,
        description="respondent e-mail; unset or not an address: the first e-mail answer",
    )
    name: PathText | None = Field(
        default=None, description="respondent name; unset: the first answer labelled or typed as a name"
    )
    answers: AnswersOptions = Field(
        default_factory=AnswersOptions, description="where the answers are (list or object shape)"
    )
    hidden: PathText | None = Field(
        default=None,
        description="an object of hidden fields / URL parameters: answers typed hidden, and `hidden`",
    )
    metadata: dict[str, PathText] = Field(
        default_factory=dict, description="extra values kept in `metadata`: name -> path"
    )
    test_when: Conditions = Field(
        default=None,
        description="the sender's test event: `PATH == VALUE`, `PATH != VALUE` or `PATH` (present and not "
        "empty/false/0); a list matches if any does. Acknowledged as test, never routed",
    )
    ignore_when: Conditions = Field(
        default=None,
        description="authentic events that are not submissions (updates, other types), same syntax; "
        "acknowledged as ignored, never routed",
    )

    @model_validator(mode="after")
    def _form_is_flat(self) -> MappedOptions:
        if self.body != "form":
            return self
        if self.answers.list_ is not None or compile_path(self.answers.object_ or "$").steps:
            raise ValueError(
                "body form: form fields are one flat object, so answers are `object: $` (the default)"
            )
        if self.hidden is not None:
            raise ValueError("body form: form fields hold no object, so `hidden` cannot apply")
        named = {
            k: getattr(self, k)
            for k in ("event_id", "form_id", "form_title", "submitted_at", "email", "name")
        }
        named.update({f"metadata.{k}": v for k, v in self.metadata.items()})
        nested = [k for k, v in named.items() if v is not None and not compile_path(v).flat]
        for key in ("test_when", "ignore_when"):
            if any(not c.path.flat for c in _conditions(getattr(self, key))):
                nested.append(key)
        if nested:
            raise ValueError(
                f"body form: form fields are flat, so these paths must name one field: {', '.join(nested)}"
            )
        return self


def _options(source: SourceSettings) -> MappedOptions:
    options = source.options
    return options if isinstance(options, MappedOptions) else MappedOptions()


# --- bodies ----------------------------------------------------------------------------------------------


def _fields(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Form fields as an object: a repeated name, or one ending in `[]` (name kept without it), is a list."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        many = name.endswith("[]")
        if many:
            name = name[:-2]
        if name in out:
            before = out[name]
            out[name] = [*(before if isinstance(before, list) else [before]), value]
        else:
            out[name] = [value] if many else value
    return out


def _urlencoded(body: bytes) -> dict[str, Any]:
    try:
        return _fields(
            parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
        )
    except UnicodeDecodeError:
        raise UnsupportedPayload("form body is not UTF-8 text (after percent-decoding)") from None


def _multipart(body: bytes, content_type: str) -> dict[str, Any]:
    media, params = parse_options_header(content_type)
    if not params.get(b"boundary"):
        raise UnsupportedPayload("multipart body without a boundary in its Content-Type")
    pairs: list[tuple[str, str]] = []

    def on_field(field: MultipartField) -> None:
        if field.field_name is not None:
            pairs.append((field.field_name.decode("utf-8"), (field.value or b"").decode("utf-8")))

    try:
        # Text parts only: an uploaded file has no URL to keep, so file parts are dropped.
        parser = FormParser(
            media.decode("latin-1"), on_field, lambda _file: None, boundary=params[b"boundary"]
        )
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise UnsupportedPayload(f"malformed multipart body ({exc})") from None
    except UnicodeDecodeError:
        raise UnsupportedPayload("a multipart field is not UTF-8 text") from None
    return _fields(pairs)


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object"


def _inferred_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "list"
    return "object" if isinstance(value, dict) else "text"


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None or value is _MISSING:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    return value if isinstance(value, str) and value else None


def _instant(value: Any, where: str, fallback: datetime) -> datetime:
    """ISO 8601, or epoch seconds / milliseconds (a number or digits); absent: `fallback`."""
    if value is _MISSING or value is None or value == "":
        return fallback
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip()):
        value = float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value >= 100_000_000_000 else value  # 1e11 s is the year 5138
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise UnsupportedPayload(f"{where} is not a usable epoch time") from None
    return A.instant(value, where, fallback)


# --- the connector ---------------------------------------------------------------------------------------


class MappedConnector(Connector):
    provider = "mapped"
    title = "Any JSON or form sender, mapped in connectors.yaml"
    scheme = "hmac/token/basic/none"
    content_types = frozenset({JSON, FORM, MULTIPART})
    Options = MappedOptions

    def __init__(self, options: MappedOptions | None = None) -> None:
        self.options = options if options is not None else MappedOptions()
        self.bound = options is not None
        if self.bound:
            # Per source: what the receiver redacts and accepts, and what send-test needs.
            v = self.options.verify
            if v.mode == "token":
                if v.token_header:
                    self.credential_headers = frozenset({v.token_header.lower()})
                else:
                    self.credential_query = frozenset({str(v.query)})
            self.requires_secret = v.mode != "none"
            if self.options.body == "json":
                self.content_types = frozenset({JSON})
            elif self.options.body == "form":
                self.content_types = frozenset({FORM, MULTIPART})

    def for_source(self, options: Any) -> MappedConnector:
        return MappedConnector(options if isinstance(options, MappedOptions) else MappedOptions())

    def needs_secret(self, options: Any) -> bool:
        return not isinstance(options, MappedOptions) or options.verify.mode != "none"

    def warnings(self, options: Any) -> list[str]:
        if isinstance(options, MappedOptions) and options.verify.mode == "none":
            return [NO_VERIFICATION_WARNING]
        return []

    # --- verify ---

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        options = _options(source)
        if not self.bound and options != self.options:
            raise VerificationFailed(
                "hub misconfiguration: the mapped connector was not set up for this source "
                "(Connector.for_source); refusing rather than misreading the payload"
            )
        v = options.verify
        if v.mode == "hmac":
            self._verify_hmac(request, source, v)
        elif v.mode == "token":
            if v.token_header is None:
                verify_query_token(request, source, str(v.query))
            else:
                verify_header_token(request, source, v.token_header, v.token_prefix)
        elif v.mode == "basic":
            self._verify_basic(request, source, str(v.username))

    @staticmethod
    def _verify_hmac(request: InboundRequest, source: SourceSettings, v: VerifyOptions) -> None:
        secrets = require_secrets(source)
        received = (request.header(v.signature_header) or "").strip()
        if not received:
            raise VerificationFailed(f"missing {v.signature_header.lower()} header")
        prefix = v.prefix or ""
        if received[: len(prefix)].lower() != prefix.lower():
            raise VerificationFailed("signature mismatch")
        digest = _decode_digest(received[len(prefix) :].strip(), v.encoding or "hex")
        if digest is None:
            raise VerificationFailed(f"malformed signature (expected {v.encoding or 'hex'})")
        algorithm = v.algorithm or "sha256"
        expected = [hmac_digest(s.encode("utf-8"), request.body, algorithm) for s in secrets]
        if not matches_any([digest], expected):  # type: ignore[list-item]  # bytes compare alike
            raise VerificationFailed("signature mismatch")

    @staticmethod
    def _verify_basic(request: InboundRequest, source: SourceSettings, username: str) -> None:
        secrets = require_secrets(source)
        raw = (request.header("authorization") or "").strip()
        if not raw:
            raise VerificationFailed("missing authorization header")
        scheme, _, encoded = raw.partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise VerificationFailed("authorization header is not Basic credentials")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise VerificationFailed("malformed Basic credentials") from None
        user, colon, password = decoded.partition(":")
        if not colon:
            raise VerificationFailed("malformed Basic credentials")
        # Both compared, in constant time, whatever the first one says.
        user_ok = equal(user, username)
        password_ok = matches_any([password], secrets)
        if not (user_ok and password_ok):
            raise VerificationFailed("wrong username or password")

    # --- envelope and normalize ---

    def _payload(self, request: InboundRequest) -> dict[str, Any]:
        media = request.media_type
        body = self.options.body
        if media in (FORM, MULTIPART):
            if body == "json":
                raise UnsupportedPayload(f"body is {media}; this source is configured for JSON (body: json)")
            if media == FORM:
                return _urlencoded(request.body)
            return _multipart(request.body, request.header("content-type") or "")
        if body == "form":
            raise UnsupportedPayload(
                f"body is {media or 'untyped'}; this source is configured for form fields"
            )
        return A.parse_json_object(request.body)

    def _kind(self, data: dict[str, Any]) -> tuple[Kind, str | None]:
        if any(c(data) for c in _conditions(self.options.test_when)):
            return "test", "test event (matches test_when)"
        if any(c(data) for c in _conditions(self.options.ignore_when)):
            return "ignored", "not a submission (matches ignore_when)"
        return "submission", None

    def _event_id(self, request: InboundRequest, data: dict[str, Any], required: bool) -> str:
        if self.options.event_id is None:
            return f"sha256:{request.body_sha256()}"
        path = compile_path(self.options.event_id)
        value = path.get(data)
        text = _scalar_text(value)
        if text is not None:
            return text
        if not required:
            return f"sha256:{request.body_sha256()}"
        if value is _MISSING or value in (None, ""):
            raise UnsupportedPayload(f"event_id path {path.text} is missing in the payload")
        raise UnsupportedPayload(f"event_id path {path.text} is {_kind_of(value)}, expected text or a number")

    def _optional_text(self, data: dict[str, Any], key: str) -> str | None:
        text = getattr(self.options, key)
        if text is None:
            return None
        path = compile_path(text)
        value = path.get(data)
        if value is _MISSING or value is None or value == "":
            return None
        found = _scalar_text(value)
        if found is None:
            raise UnsupportedPayload(
                f"{key} path {path.text} is {_kind_of(value)}, expected text or a number"
            )
        return found

    def _container(self, data: dict[str, Any]) -> Any:
        answers = self.options.answers
        path = answers.container
        value = path.get(data)
        shape = "list" if answers.list_ is not None else "object"
        where = f"answers.{shape} path {path.text}"
        if value is _MISSING:
            raise UnsupportedPayload(f"{where} is missing in the payload")
        if value is None:
            return [] if shape == "list" else {}
        wanted = list if shape == "list" else dict
        if not isinstance(value, wanted):
            raise UnsupportedPayload(
                f"{where} is {_kind_of(value)}, expected {'a list' if shape == 'list' else 'an object'}"
            )
        return value

    def envelope(self, request: InboundRequest) -> Envelope:
        data = self._payload(request)
        form_id = self._optional_text(data, "form_id")
        kind, note = self._kind(data)
        if kind != "submission":
            return Envelope(
                event_id=self._event_id(request, data, False), kind=kind, form_id=form_id, note=note
            )
        event_id = self._event_id(request, data, True)
        self._container(data)
        return Envelope(event_id=event_id, form_id=form_id)

    def _answers(self, data: dict[str, Any]) -> list[Answer | None]:
        options = self.options.answers
        container = self._container(data)
        if isinstance(container, dict):
            excluded = set(options.exclude)
            return [A.answer(k, k, _inferred_type(v), v) for k, v in container.items() if k not in excluded]
        key_path = compile_path(options.key) if options.key else None
        label_path = compile_path(options.label) if options.label else None
        value_path = compile_path(str(options.value))
        type_path = compile_path(options.type_) if options.type_ else None
        answers: list[Answer | None] = []
        for position, item in enumerate(container):
            if not isinstance(item, dict):
                raise UnsupportedPayload(
                    f"answers.list path {options.container.text}[{position}] is {_kind_of(item)}, expected an object"
                )
            key = _scalar_text(key_path.get(item)) if key_path else None
            label = _scalar_text(label_path.get(item)) if label_path else None
            key = key or label or f"answer_{position + 1}"
            value = value_path.get(item)
            value = None if value is _MISSING else value
            type_ = _scalar_text(type_path.get(item)) if type_path else None
            answers.append(A.answer(key, label or key, type_ or _inferred_type(value), value))
        return answers

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        options = self.options
        data = self._payload(request)
        kind, _ = self._kind(data)
        event_id = self._event_id(request, data, kind == "submission")
        answers = self._answers(data)

        hidden: dict[str, Any] = {}
        if options.hidden is not None:
            path = compile_path(options.hidden)
            value = path.get(data)
            if isinstance(value, dict):
                hidden = dict(value)
            elif value is not _MISSING and value is not None:
                raise UnsupportedPayload(f"hidden path {path.text} is {_kind_of(value)}, expected an object")
        answers.extend(A.answer(k, k, "hidden", v) for k, v in hidden.items())
        collected = A.collect(answers)

        email_value = compile_path(options.email).get(data) if options.email else None
        name_value = compile_path(options.name).get(data) if options.name else None
        name = name_value.strip() if isinstance(name_value, str) and name_value.strip() else None
        when = compile_path(options.submitted_at).get(data) if options.submitted_at else _MISSING
        metadata = {
            key: value
            for key, text in options.metadata.items()
            if (value := compile_path(text).get(data)) is not _MISSING and value is not None
        }

        return Submission(
            id=context.submission_id,
            source=context.source,
            provider=self.provider,
            form_id=self._optional_text(data, "form_id"),
            form_title=self._optional_text(data, "form_title"),
            event_id=event_id,
            submitted_at=_instant(when, f"submitted_at path {options.submitted_at}", context.received_at),
            email=A.pick_email(email_value, collected),
            name=name or A.pick_name(collected),
            answers=collected,
            hidden=hidden,
            metadata=metadata,
        )

    # --- send-test ---

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        options = _options(source)
        form = options.body == "form"
        nonce = uuid.uuid4().hex
        at = iso_utc(datetime.fromtimestamp(now, UTC).replace(microsecond=0))
        samples: list[tuple[str, str, str, Any]] = [  # key, label, type, value
            ("name", "Full name", "text", "Ada Lovelace"),
            ("email", "Email", "email", "ada@example.org"),
            ("tickets", "How many tickets?", "number", "2" if form else 2),
            ("sessions", "Sessions", "multiple_choice", ["Keynote", "Workshop"]),
            ("message", "Message", "textarea", f"Grüße from hookhub send-test ✓ {nonce[:8]}"),
        ]
        root: dict[str, Any] = {}
        a = options.answers
        if a.list_ is not None:
            items = []
            for key, label, type_, value in samples:
                item: dict[str, Any] = {}
                for text, part in ((a.key, key), (a.label, label), (a.type_, type_), (a.value, value)):
                    if text is not None:
                        _put(item, compile_path(text), part)
                items.append(item)
            _put(root, compile_path(a.list_), items)
        else:
            fields = {key: value for key, _, _, value in samples if key not in a.exclude}
            _put(root, compile_path(a.object_ or "$"), fields)
        filled = {
            "event_id": f"hookhub-test-{nonce}",
            "form_id": "hookhub-test-form",
            "form_title": "hookhub test form",
            "submitted_at": at,
            "email": "ada@example.org",
            "name": "Ada Lovelace",
            "hidden": {"utm_source": "hookhub-send-test"},
        }
        for key, value in filled.items():
            if getattr(options, key) is not None:
                _put(root, compile_path(getattr(options, key)), value)
        for text in options.metadata.values():
            _put(root, compile_path(text), "hookhub-send-test")
        for condition in [*_conditions(options.test_when), *_conditions(options.ignore_when)]:
            _unmatch(root, condition)

        if form:
            pairs: list[tuple[str, str]] = []
            for key, value in root.items():
                if isinstance(value, list):  # `name[]` keeps a one-item list a list
                    pairs.extend((f"{key}[]", _form_text(item)) for item in value)
                else:
                    pairs.append((key, _form_text(value)))
            body = urlencode(pairs).encode("ascii")
            content_type = FORM
        else:
            body = json.dumps(root, ensure_ascii=False).encode("utf-8")
            content_type = JSON
        headers = {"content-type": content_type, "user-agent": "hookhub-send-test"}
        v = options.verify
        if v.mode == "hmac":
            digest = hmac_digest(require_secrets(source)[0].encode("utf-8"), body, v.algorithm or "sha256")
            headers[v.signature_header.lower()] = (v.prefix or "") + _encode_digest(
                digest, v.encoding or "hex"
            )
        elif v.mode == "token":
            token = require_secrets(source)[0]
            if v.token_header is None:
                parts = urlsplit(url)
                query = "&".join(q for q in (parts.query, urlencode({str(v.query): token})) if q)
                url = urlunsplit(parts._replace(query=query))
            else:
                headers[v.token_header.lower()] = v.token_prefix + token
        elif v.mode == "basic":
            pair = f"{v.username}:{require_secrets(source)[0]}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return InboundRequest(method="POST", url=url, headers=headers, body=body)


def _decode_digest(text: str, encoding: str) -> bytes | None:
    try:
        if encoding == "hex":
            return bytes.fromhex(text)
        padded = text + "=" * (-len(text) % 4)
        if encoding == "base64url":
            return base64.b64decode(padded, altchars=b"-_", validate=True)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _encode_digest(digest: bytes, encoding: str) -> str:
    if encoding == "hex":
        return digest.hex()
    if encoding == "base64url":
        return base64.urlsafe_b64encode(digest).decode("ascii")
    return base64.b64encode(digest).decode("ascii")


def _put(root: Any, path: Path, value: Any, replace: bool = False) -> None:
    """Set `value` at `path` in a sample payload, creating objects and lists; skip what conflicts."""
    if not path.steps:
        if isinstance(root, dict) and isinstance(value, dict):
            for key, item in value.items():
                if replace or key not in root:
                    root[key] = item
        return
    node = root
    for position, step in enumerate(path.steps):
        last = position == len(path.steps) - 1
        following = None if last else path.steps[position + 1]
        fresh: Any = value if last else ([] if isinstance(following, int) else {})
        if isinstance(node, dict):
            key = str(step)
            if last:
                if replace or key not in node:
                    node[key] = value
                return
            node = node.setdefault(key, fresh)
        elif isinstance(node, list):
            index = step if isinstance(step, int) else _int(step)
            if index is None:
                return
            index = max(index, 0)
            while len(node) <= index:
                node.append(None)
            if last:
                if replace or node[index] is None:
                    node[index] = value
                return
            if node[index] is None:
                node[index] = fresh
            node = node[index]
        else:
            return


def _unmatch(root: dict[str, Any], condition: Condition) -> None:
    """Best effort: make a test_when / ignore_when condition false for the sample submission."""
    if not condition(root):
        return
    if condition.op == "!=":
        _put(root, condition.path, condition.literal, replace=True)
    elif condition.op == "==":
        _put(root, condition.path, "hookhub-send-test", replace=True)
    else:
        _put(root, condition.path, "", replace=True)


def _form_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


connector = MappedConnector()
