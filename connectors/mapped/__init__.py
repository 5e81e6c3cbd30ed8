"""Mapped webhooks: any sender of JSON or form fields, described in connectors.yaml, no code.

The admin says where things are (`event_id: data.id`, `answers: {list: data.fields, ...}`)
and how requests are authenticated (`verify: {mode: hmac | token | basic | none, ...}`);
docs/providers/mapped.md is the user's guide, `MappedOptions` the reference. Answer values
follow tests/fixtures/providers/README.md ("Value rules common to all").

`envelope` and `normalize` take no source, but what they do depends on the source's
options: they run on `connector.for_source(options)` (a `MappedConnector` holding them). The
module's `connector` holds the defaults (`MappedOptions()`), and its `verify` refuses a
source configured otherwise: a hub that did not bind the connector to its source would
otherwise read every payload with the default mapping, silently wrong.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from connectors import _answers
from connectors.base import (
    Connector,
    Envelope,
    InboundRequest,
    Kind,
    NormalizeContext,
    SourceSettings,
    UnsupportedPayload,
    VerificationFailed,
)
from connectors.mapped.conditions import conditions
from connectors.mapped.options import MappedOptions, source_options
from connectors.mapped.paths import MISSING, compile_path
from connectors.mapped.payload import (
    FORM,
    JSON,
    MULTIPART,
    inferred_type,
    instant,
    kind_of,
    multipart,
    scalar_text,
    urlencoded,
)
from connectors.mapped.sample import sample_body
from connectors.mapped.verify import sign_sample, verify_request
from hub.submission import Answer, Submission

_MISSING: Any = MISSING
NO_VERIFICATION_WARNING = (
    "verify.mode is none: anyone who learns this URL can post submissions to it; "
    "use hmac, token or basic if the sender supports any of them"
)


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
            if v.mode == "hmac":
                self.stored_headers = frozenset({v.signature_header.lower()})
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

    def for_source(self, options: BaseModel) -> MappedConnector:
        return MappedConnector(options if isinstance(options, MappedOptions) else MappedOptions())

    def needs_secret(self, options: BaseModel) -> bool:
        return not isinstance(options, MappedOptions) or options.verify.mode != "none"

    def warnings(self, options: BaseModel) -> list[str]:
        if isinstance(options, MappedOptions) and options.verify.mode == "none":
            return [NO_VERIFICATION_WARNING]
        return []

    # --- verify ---

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        options = source_options(source)
        if not self.bound and options != self.options:
            raise VerificationFailed(
                "hub misconfiguration: the mapped connector was not set up for this source "
                "(Connector.for_source); refusing rather than misreading the payload"
            )
        verify_request(request, source, options.verify)

    # --- envelope and normalize ---

    def _payload(self, request: InboundRequest) -> dict[str, Any]:
        media = request.media_type
        body = self.options.body
        if media in (FORM, MULTIPART):
            if body == "json":
                raise UnsupportedPayload(f"body is {media}; this source is configured for JSON (body: json)")
            if media == FORM:
                return urlencoded(request.body)
            return multipart(request.body, request.header("content-type") or "")
        if body == "form":
            raise UnsupportedPayload(
                f"body is {media or 'untyped'}; this source is configured for form fields"
            )
        return _answers.parse_json_object(request.body)

    def _kind(self, data: dict[str, Any]) -> tuple[Kind, str | None]:
        if any(c(data) for c in conditions(self.options.test_when)):
            return "test", "test event (matches test_when)"
        if any(c(data) for c in conditions(self.options.ignore_when)):
            return "ignored", "not a submission (matches ignore_when)"
        return "submission", None

    def _event_id(self, request: InboundRequest, data: dict[str, Any], required: bool) -> str:
        if self.options.event_id is None:
            return f"sha256:{request.body_sha256()}"
        path = compile_path(self.options.event_id)
        value = path.get(data)
        if isinstance(value, float):
            # Parsed, a number with a fraction or exponent is rounded to ~16 digits, so two events
            # could share it: such an event is keyed on its body, as when no event_id is mapped.
            return f"sha256:{request.body_sha256()}"
        text = scalar_text(value)
        if text is not None:
            return text
        if not required:
            return f"sha256:{request.body_sha256()}"
        if value is _MISSING or value in (None, ""):
            raise UnsupportedPayload(f"event_id path {path.text} is missing in the payload")
        raise UnsupportedPayload(f"event_id path {path.text} is {kind_of(value)}, expected text or a number")

    def _optional_text(self, data: dict[str, Any], key: str) -> str | None:
        text = getattr(self.options, key)
        if text is None:
            return None
        path = compile_path(text)
        value = path.get(data)
        if value is _MISSING or value is None or value == "":
            return None
        found = scalar_text(value)
        if found is None:
            raise UnsupportedPayload(f"{key} path {path.text} is {kind_of(value)}, expected text or a number")
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
                f"{where} is {kind_of(value)}, expected {'a list' if shape == 'list' else 'an object'}"
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
            return [
                _answers.answer(k, k, inferred_type(v), v) for k, v in container.items() if k not in excluded
            ]
        key_path = compile_path(options.key) if options.key else None
        label_path = compile_path(options.label) if options.label else None
        value_path = compile_path(str(options.value))
        type_path = compile_path(options.type_) if options.type_ else None
        answers: list[Answer | None] = []
        for position, item in enumerate(container):
            if not isinstance(item, dict):
                raise UnsupportedPayload(
                    f"answers.list path {options.container.text}[{position}] is {kind_of(item)}, "
                    "expected an object"
                )
            key = scalar_text(key_path.get(item)) if key_path else None
            label = scalar_text(label_path.get(item)) if label_path else None
            key = key or label or f"answer_{position + 1}"
            value = value_path.get(item)
            value = None if value is _MISSING else value
            type_ = scalar_text(type_path.get(item)) if type_path else None
            answers.append(_answers.answer(key, label or key, type_ or inferred_type(value), value))
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
                raise UnsupportedPayload(f"hidden path {path.text} is {kind_of(value)}, expected an object")
        answers.extend(_answers.answer(k, k, "hidden", v) for k, v in hidden.items())
        collected = _answers.collect(answers)

        email_value = compile_path(options.email).get(data) if options.email else None
        name_value = compile_path(options.name).get(data) if options.name else None
        name = name_value.strip() if isinstance(name_value, str) and name_value.strip() else None
        when = compile_path(options.submitted_at).get(data) if options.submitted_at else _MISSING
        metadata = {
            key: value
            for key, text in options.metadata.items()
            if (value := compile_path(text).get(data)) is not _MISSING and value is not None
        }

        return _answers.submission(
            self.provider,
            context,
            collected,
            form_id=self._optional_text(data, "form_id"),
            form_title=self._optional_text(data, "form_title"),
            event_id=event_id,
            submitted_at=instant(when, f"submitted_at path {options.submitted_at}", context.received_at),
            respondent_email=email_value,
            name=name or None,
            hidden=hidden,
            metadata=metadata,
        )

    # --- send-test ---

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        options = source_options(source)
        body, content_type = sample_body(options, now)
        headers = {"content-type": content_type, "user-agent": "hookhub-send-test"}
        url = sign_sample(source, options.verify, url, body, headers)
        return InboundRequest(method="POST", url=url, headers=headers, body=body)


connector = MappedConnector()
