"""The body of a `mapped` send-test request: sample answers placed where the source's mapping reads them.

The sample must pass the source's own mapping, so it is written through the same paths (`put`) and any
test_when / ignore_when condition it would match is undone (`unmatch`).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from connectors.mapped.conditions import conditions, unmatch
from connectors.mapped.options import MappedOptions
from connectors.mapped.paths import compile_path, put
from connectors.mapped.payload import FORM, JSON
from hub.submission import iso_utc


def sample_body(options: MappedOptions, now: float) -> tuple[bytes, str]:
    """(body, content type) of a sample submission for a source configured with `options`."""
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
                    put(item, compile_path(text), part)
            items.append(item)
        put(root, compile_path(a.list_), items)
    else:
        fields = {key: value for key, _, _, value in samples if key not in a.exclude}
        put(root, compile_path(a.object_ or "$"), fields)
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
            put(root, compile_path(getattr(options, key)), value)
    for text in options.metadata.values():
        put(root, compile_path(text), "hookhub-send-test")
    for condition in [*conditions(options.test_when), *conditions(options.ignore_when)]:
        unmatch(root, condition)

    if form:
        pairs: list[tuple[str, str]] = []
        for key, value in root.items():
            if isinstance(value, list):  # `name[]` keeps a one-item list a list
                pairs.extend((f"{key}[]", form_text(item)) for item in value)
            else:
                pairs.append((key, form_text(value)))
        body = urlencode(pairs).encode("ascii")
        content_type = FORM
    else:
        body = json.dumps(root, ensure_ascii=False).encode("utf-8")
        content_type = JSON
    return body, content_type


def form_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
