"""Lone UTF-16 surrogates: stored and sent as U+FFFD, in every string of a Submission.

`"Ren\\ud83d"` is what JavaScript's JSON.stringify writes when a length limit cuts an emoji in
half. Python's json decodes it into a str that orjson, pydantic's JSON encoder and SQLite all
refuse; one such answer used to fail its whole batch, forever.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import orjson
import pytest
from pydantic_core import PydanticSerializationError

from connectors import get_connector
from connectors.base import InboundRequest, NormalizeContext
from hub.config.models import HubConfig
from hub.routing.process import plan_batch
from hub.submission import Answer, Submission, well_formed, well_formed_json

LONE = "Ren\ud83d"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ren\ud83d", "Ren\ufffd"),  # a high half at the end (the cut emoji)
        ("\ude00Ren", "\ufffdRen"),  # a low half alone
        ("a\ud83d\ude00b", "a\U0001f600b"),  # both halves, as two code points: the emoji they spell
        ("\ud83d\ud83d", "\ufffd\ufffd"),
        ("Renée 😀", "Renée 😀"),
        ("plain", "plain"),
    ],
)
def test_each_lone_surrogate_becomes_a_replacement_character(text: str, expected: str) -> None:
    assert well_formed(text) == expected
    well_formed(text).encode("utf-8")  # never raises


def test_well_formed_text_is_returned_as_is() -> None:
    for text in ("plain", "Renée 😀"):
        assert well_formed(text) is text
    value = {"a": ["b", {"c": "Renée"}]}
    assert well_formed_json(value) is value


def test_what_the_encoders_do_with_a_lone_surrogate() -> None:
    # Why it must be fixed before anything encodes: none of these take it.
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(LONE)
    with pytest.raises(UnicodeEncodeError):
        LONE.encode("utf-8")
    with pytest.raises(PydanticSerializationError):
        _submission(name=LONE).model_dump_json()
    # orjson will not even parse the escape; the connectors' parser falls back to json, which does.
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(b'"Ren\\ud83d"')
    assert json.loads(b'"Ren\\ud83d"') == LONE


def _submission(**fields: object) -> Submission:
    base: dict[str, object] = {
        "id": "S1",
        "source": "forms",
        "provider": "typeform",
        "event_id": "E1",
        "submitted_at": datetime(2026, 12, 1, tzinfo=UTC),
    }
    return Submission(**{**base, **fields})  # type: ignore[arg-type]


def test_to_json_replaces_lone_surrogates_in_every_string() -> None:
    submission = _submission(
        id="S\ud800",
        form_id="F\ud800",
        form_title="T\ud800",
        email="e\ud800@example.org",
        name=LONE,
        answers=[
            Answer(key="k\udc00", label="L\ud83d", type="short_text", value=LONE),
            Answer(key="k2", label="Choices", type="multiple_choice", value=["a\ud83d", "b"]),
        ],
        hidden={"utm\ud800": LONE},
        metadata={"nested": {"list": [LONE, 1, None]}, "n": 2},
    )
    stored, data = submission.to_json()
    assert "\\ud8" not in data and "\\udc" not in data
    parsed = json.loads(data)
    assert parsed["name"] == "Ren\ufffd" and parsed["id"] == "S\ufffd"
    assert parsed["email"] == "e\ufffd@example.org"
    assert parsed["form_id"] == "F\ufffd" and parsed["form_title"] == "T\ufffd"
    assert parsed["answers"][0] == {
        "key": "k\ufffd",
        "label": "L\ufffd",
        "type": "short_text",
        "value": "Ren\ufffd",
    }
    assert parsed["answers"][1]["value"] == ["a\ufffd", "b"]
    assert parsed["hidden"] == {"utm\ufffd": "Ren\ufffd"}
    assert parsed["metadata"] == {"nested": {"list": ["Ren\ufffd", 1, None]}, "n": 2}
    assert Submission.model_validate_json(data) == stored  # what is stored reads back as what routes saw


def test_to_json_of_well_formed_text_is_the_plain_encoding_of_the_same_object() -> None:
    submission = _submission(name="Renée 😀", answers=[Answer(key="k", label="L", type="t", value="x")])
    stored, data = submission.to_json()
    assert stored is submission and data == submission.model_dump_json()


def _typeform_request(name: str, secret: str = "s3cret") -> InboundRequest:
    payload = {
        "event_id": "01KVG79GJE6RRHM8TEPJ283Y60",
        "event_type": "form_response",
        "form_response": {
            "form_id": "F1",
            "token": "t",
            "submitted_at": "2026-12-01T10:00:00Z",
            "definition": {
                "id": "F1",
                "title": "Form",
                "fields": [{"id": "n", "ref": "full_name", "type": "short_text", "title": "Full name"}],
            },
            "answers": [
                {"type": "text", "text": name, "field": {"id": "n", "type": "short_text", "ref": "full_name"}}
            ],
        },
    }
    body = json.dumps(payload).encode("ascii")  # ensure_ascii: the lone half is written as `\ud83d`
    assert b"Ren\\ud83d" in body
    signature = "sha256=" + base64.b64encode(hmac.digest(secret.encode(), body, hashlib.sha256)).decode()
    return InboundRequest(
        method="POST",
        url="http://127.0.0.1/hooks/forms",
        headers={"content-type": "application/json", "typeform-signature": signature},
        body=body,
    )


def test_a_typeform_answer_cut_in_an_emoji_is_routed_with_a_replacement_character() -> None:
    config = HubConfig.model_validate(
        {
            "sources": {"forms": {"provider": "typeform", "secret": "s3cret"}},
            "destinations": {"out": {"type": "file", "path": "out.jsonl"}},
            "routes": [{"name": "cut", "from": ["forms"], "when": "name endswith 'n\ufffd'", "to": ["out"]}],
        }
    )
    context = NormalizeContext(
        submission_id="S1", source="forms", received_at=datetime(2026, 12, 1, tzinfo=UTC)
    )
    submission = get_connector("typeform").normalize(_typeform_request(LONE), context)
    assert submission.name == LONE  # normalizing keeps what was sent; storing is what must not fail
    failed: dict[str, str] = {}
    routed = plan_batch(config, {"S1": submission}, failed).routed
    assert failed == {}
    data, planned = routed["S1"]
    # `when` saw the stored text: the route matched on the replacement character.
    assert [p.destination for p in planned] == ["out"]
    assert json.loads(data)["name"] == "Ren\ufffd"
