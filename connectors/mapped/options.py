"""The `mapped` provider's options (pydantic models): what a source's keys in connectors.yaml may say.

Validation here catches mistakes at config load (paths, conditions, keys that do not fit the chosen
mode or body), so the request path never meets a malformed mapping.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.base import SourceSettings
from connectors.mapped.conditions import Conditions, conditions
from connectors.mapped.paths import Path, PathText, compile_path

DEFAULT_SIGNATURE_HEADER = "X-Signature"
DEFAULT_TOKEN_HEADER = "Authorization"
DEFAULT_TOKEN_PREFIX = "Bearer "
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


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
        default_factory=list,
        description="object: keys of that object that are not answers",
        examples=[["form_id", "entry_id"]],
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


class MappedOptions(BaseModel):
    """The `mapped` provider's keys of a source.

    Paths: `data.id`, `$.data.id`, `items[0].value`, `['a.b']`.
    """

    model_config = ConfigDict(extra="forbid")

    verify: VerifyOptions = Field(
        default_factory=VerifyOptions,
        description="how requests are authenticated (default: hmac, hex HMAC-SHA256 in X-Signature)",
        examples=[{"mode": "hmac", "header": "X-Signature", "prefix": "sha256="}],
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
        default_factory=AnswersOptions,
        description="where the answers are (list or object shape)",
        examples=[{"list": "data.fields", "key": "id", "label": "label", "value": "value"}],
    )
    hidden: PathText | None = Field(
        default=None,
        description="an object of hidden fields / URL parameters: answers typed hidden, and `hidden`",
    )
    metadata: dict[str, PathText] = Field(
        default_factory=dict,
        description="extra values kept in `metadata`: name -> path",
        examples=[{"page_url": "data.page.url"}],
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
            if any(not c.path.flat for c in conditions(getattr(self, key))):
                nested.append(key)
        if nested:
            raise ValueError(
                f"body form: form fields are flat, so these paths must name one field: {', '.join(nested)}"
            )
        return self


def source_options(source: SourceSettings) -> MappedOptions:
    options = source.options
    return options if isinstance(options, MappedOptions) else MappedOptions()
