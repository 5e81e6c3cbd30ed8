"""What every connector promises beyond its fixtures, and the shared scheme/answer helpers.

Covers: send-test samples verify and normalize; tampering, wrong secrets, rotation, missing
signatures and stale timestamps (as far as each connector's scheme has them); non-submission
events; the published Standard Webhooks test vector; answer helpers.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ValidationError

from connectors import _answers, all_connectors, get_connector
from connectors._schemes import hmac_digest, sign_standard_webhooks, verify_standard_webhooks
from connectors.base import (
    Connector,
    InboundRequest,
    NoOptions,
    NormalizeContext,
    UnsupportedPayload,
    VerificationFailed,
)
from hub.spool.ids import encode_time
from tests.harness import PROVIDER_FIXTURES

NOW = 1_795_183_408.0
TOLERANCE = 300
URL = "https://hooks.example.com/hooks/test"
# From the fixtures README "Schemes" table, so the contract also fits connectors added later:
# schemes whose signature covers the raw body, and those that reject a timestamp outside the window.
BODY_SIGNED = {
    "typeform-hmac-sha256",
    "tally-hmac-sha256",
    "standard-webhooks",
    "webflow-hmac-sha256",
    "hubspot-signature-v3",
    "formstack-hmac-sha256",
    "surveymonkey-hmac-sha1",
}
TIMESTAMPED = {"standard-webhooks", "webflow-hmac-sha256", "hubspot-signature-v3"}
CONNECTORS = all_connectors()


@dataclass(frozen=True)
class Source:
    secrets: list[str]
    tolerance: int = TOLERANCE
    public_url: str | None = URL
    options: BaseModel = field(default_factory=NoOptions)


def source(connector: Connector, secrets: list[str]) -> Source:
    try:
        options = connector.Options.model_validate({})
    except ValidationError:
        pytest.skip(f"{connector.provider} needs options beyond a secret; its fixtures cover it")
    return Source(secrets=secrets, options=options)


def new_secret() -> str:
    # whsec_ form suits every scheme: HMAC schemes take any string, Standard Webhooks needs base64.
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def sample(connector: Connector, secret: str) -> InboundRequest:
    return connector.sample_request(source(connector, [secret]), URL, NOW)


def with_body(request: InboundRequest, body: bytes) -> InboundRequest:
    return replace(request, body=body)


def context() -> NormalizeContext:
    return NormalizeContext(
        submission_id="sub_1", source="test", received_at=datetime.fromtimestamp(NOW, UTC)
    )


def require(connector: Connector, schemes: set[str], why: str) -> None:
    if connector.scheme not in schemes:
        pytest.skip(f"{connector.scheme} {why}")


by_provider = pytest.mark.parametrize("connector", CONNECTORS, ids=lambda c: c.provider)


@by_provider
def test_class_attributes(connector: Connector) -> None:
    assert connector.provider == type(connector).__module__.rsplit(".", 1)[-1]
    assert connector.title and connector.scheme and connector.content_types
    assert all(h == h.lower() for h in connector.credential_headers)


@by_provider
def test_sample_request_verifies_and_normalizes(connector: Connector) -> None:
    secret = new_secret()
    request = sample(connector, secret)
    assert all(name == name.lower() for name in request.headers)
    assert request.media_type in connector.content_types
    connector.verify(request, source(connector, [secret]), NOW)

    envelope = connector.envelope(request)
    assert envelope.kind == "submission"
    submission = connector.normalize(request, context())
    assert submission.event_id == envelope.event_id
    assert submission.form_id == envelope.form_id
    assert submission.provider == connector.provider
    assert submission.id == "sub_1" and submission.source == "test"


@by_provider
def test_a_reconcilable_provider_names_the_response_of_each_submission(connector: Connector) -> None:
    """Reconciliation finds a webhook's response by `Envelope.response_id` (connectors/reconciling.py):
    a provider with a reconciler must set it on every submission, and only on submissions."""
    if connector.reconciler is None:
        pytest.skip(f"{connector.provider} has no reconciler")
    request = sample(connector, new_secret())
    first = connector.envelope(request)
    if connector.fetches and first.response_id is None:
        pytest.skip("a notification that stands for responses fetched later, which carry the identity")
    assert first.kind == "submission" and first.response_id
    assert connector.envelope(sample(connector, new_secret())).response_id != first.response_id
    checked = 0
    for path in sorted((PROVIDER_FIXTURES / connector.provider).glob("*.json")):
        fixture = json.loads(path.read_text(encoding="utf-8"))
        headers = {name.lower(): value for name, value in fixture["headers"].items()}
        request = InboundRequest(fixture["method"], fixture["url"], headers, fixture["body"].encode("utf-8"))
        try:
            envelope = connector.envelope(request)
        except UnsupportedPayload:
            continue  # a refused body (tests/test_provider_fixtures.py covers it)
        if envelope.kind == "submission":
            assert envelope.response_id, f"{path.name}: a submission without a response id"
            checked += 1
        else:
            assert envelope.response_id is None, f"{path.name}: a {envelope.kind} event with a response id"
    assert checked, f"no submission fixture of {connector.provider} was checked"


@by_provider
def test_sample_requests_have_fresh_event_ids(connector: Connector) -> None:
    secret = new_secret()
    first, second = (connector.envelope(sample(connector, secret)) for _ in range(2))
    assert first.event_id != second.event_id


def test_typeform_samples_carry_ulid_event_ids_like_typeform() -> None:
    """Typeform's event ids are ULIDs (providers.md); samples follow, so send-test and the
    benchmarks store time-ordered keys as real traffic does."""
    connector = get_connector("typeform")
    first = connector.envelope(sample(connector, "s")).event_id
    later = connector.envelope(connector.sample_request(source(connector, ["s"]), URL, NOW + 1)).event_id
    crockford = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert len(first) == 26 and set(first) <= crockford
    assert first[:10] == encode_time(int(NOW * 1000)) and first < later


@by_provider
def test_tampered_body_fails(connector: Connector) -> None:
    require(connector, BODY_SIGNED, "does not sign the body")
    secret = new_secret()
    request = sample(connector, secret)
    tampered = with_body(request, request.body[:-1] + bytes([request.body[-1] ^ 1]))
    with pytest.raises(VerificationFailed):
        connector.verify(tampered, source(connector, [secret]), NOW)


@by_provider
def test_wrong_secret_fails(connector: Connector) -> None:
    request = sample(connector, new_secret())
    with pytest.raises(VerificationFailed):
        connector.verify(request, source(connector, [new_secret()]), NOW)


@by_provider
def test_rotated_secrets_accept_either(connector: Connector) -> None:
    old, new = new_secret(), new_secret()
    connector.verify(sample(connector, new), source(connector, [old, new]), NOW)
    connector.verify(sample(connector, old), source(connector, [old, new]), NOW)


@by_provider
def test_no_secret_configured_fails(connector: Connector) -> None:
    if not connector.requires_secret:
        pytest.skip(f"{connector.provider} does not use a secret")
    with pytest.raises(VerificationFailed):
        connector.verify(sample(connector, new_secret()), source(connector, []), NOW)


@by_provider
def test_missing_signature_fails(connector: Connector) -> None:
    require(connector, BODY_SIGNED, "does not sign the body")
    secret = new_secret()
    request = sample(connector, secret)
    # Whatever header carries the signature, a request with only its content type must fail.
    bare = replace(request, headers={"content-type": request.headers["content-type"]})
    with pytest.raises(VerificationFailed, match="missing"):
        connector.verify(bare, source(connector, [secret]), NOW)


@by_provider
@pytest.mark.parametrize("skew", [TOLERANCE + 1, -(TOLERANCE + 1)])
def test_timestamp_window(connector: Connector, skew: int) -> None:
    secret = new_secret()
    request = sample(connector, secret)
    settings = source(connector, [secret])
    if connector.scheme in TIMESTAMPED:
        with pytest.raises(VerificationFailed, match="timestamp"):
            connector.verify(request, settings, NOW + skew)
        connector.verify(request, settings, NOW + (TOLERANCE if skew > 0 else -TOLERANCE))
    elif connector.scheme in BODY_SIGNED:
        # No timestamp in the scheme: only dedupe on the event id protects against replays.
        connector.verify(request, settings, NOW + skew)
    else:
        pytest.skip(f"{connector.scheme}: window not known to this test")


@by_provider
@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_non_json_bodies_are_unsupported(connector: Connector, body: bytes) -> None:
    if connector.content_types != {"application/json"}:
        pytest.skip(f"{connector.provider} also accepts {sorted(connector.content_types)}")
    request = with_body(sample(connector, new_secret()), body)
    with pytest.raises(UnsupportedPayload):
        connector.envelope(request)
    with pytest.raises(UnsupportedPayload):
        connector.normalize(request, context())


OWN_PROVIDERS = ["typeform", "tally", "standard_webhooks", "google_forms_apps_script"]


@pytest.mark.parametrize("provider", OWN_PROVIDERS)
@pytest.mark.parametrize("body", [b"{}", b'{"data": 3}', b'{"event_id": "x", "form_response": []}'])
def test_json_of_another_shape_is_unsupported(provider: str, body: bytes) -> None:
    connector = get_connector(provider)
    request = with_body(sample(connector, new_secret()), body)
    with pytest.raises(UnsupportedPayload):
        connector.envelope(request)
    with pytest.raises(UnsupportedPayload):
        connector.normalize(request, context())


NON_SUBMISSIONS = {
    # provider: (key of the event type, value, expected kind)
    "typeform": [("event_type", "form_response_partial", "ignored")],
    "tally": [("eventType", "FORM_UPDATED", "ignored")],
    "standard_webhooks": [("type", "hookhub.ping", "test"), ("type", "form.deleted", "ignored")],
    "google_forms_apps_script": [("type", "hookhub.ping", "test"), ("type", "form.edited", "ignored")],
}


@pytest.mark.parametrize(
    ("provider", "key", "value", "kind"),
    [(p, *case) for p, cases in NON_SUBMISSIONS.items() for case in cases],
)
def test_non_submission_events_are_acknowledged_not_routed(
    provider: str, key: str, value: str, kind: str
) -> None:
    connector = get_connector(provider)
    request = sample(connector, new_secret())
    body = json.loads(request.body)
    body[key] = value
    envelope = connector.envelope(with_body(request, json.dumps(body).encode()))
    assert envelope.kind == kind
    assert envelope.note and envelope.event_id


# --- _schemes -----------------------------------------------------------------------------------

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def vector_request(**headers: str) -> InboundRequest:
    base = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    merged = {k: v for k, v in {**base, **headers}.items() if v}
    return InboundRequest(method="POST", url="https://x.example/hooks/a", headers=merged, body=VECTOR_BODY)


def test_hmac_digest_known_value() -> None:
    digest = hmac_digest(b"key", b"The quick brown fox jumps over the lazy dog")
    assert digest.hex() == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"


def test_standard_webhooks_published_vector_signs() -> None:
    headers = sign_standard_webhooks(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    assert headers == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": VECTOR_SIGNATURE,
    }


def test_standard_webhooks_published_vector_verifies() -> None:
    verify_standard_webhooks(vector_request(), [VECTOR_SECRET], TOLERANCE, VECTOR_TS)
    # Any matching entry of a space-separated list passes (rotation on the sender's side).
    several = vector_request(**{"webhook-signature": f"v1,AAAA v1a,BBBB {VECTOR_SIGNATURE}"})
    verify_standard_webhooks(several, [new_secret(), VECTOR_SECRET], TOLERANCE, VECTOR_TS)


@pytest.mark.parametrize(
    ("headers", "now", "reason"),
    [
        ({"webhook-signature": ""}, VECTOR_TS, "missing webhook-signature header"),
        ({"webhook-id": ""}, VECTOR_TS, "missing webhook-id header"),
        ({"webhook-timestamp": ""}, VECTOR_TS, "missing webhook-timestamp header"),
        ({"webhook-timestamp": "16142653.30"}, VECTOR_TS, "invalid webhook-timestamp"),
        ({}, VECTOR_TS + TOLERANCE + 1, "timestamp outside tolerance"),
        ({}, VECTOR_TS - TOLERANCE - 1, "timestamp outside tolerance"),
        (
            {"webhook-signature": "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
            VECTOR_TS,
            "no v1 signature",
        ),
        (
            {"webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF="},
            VECTOR_TS,
            "signature mismatch",
        ),
        ({"webhook-signature": "v1,ünïcode"}, VECTOR_TS, "signature mismatch"),
        ({"webhook-id": "msg_other"}, VECTOR_TS, "signature mismatch"),
    ],
)
def test_standard_webhooks_rejections(headers: dict[str, str], now: int, reason: str) -> None:
    with pytest.raises(VerificationFailed, match=reason) as info:
        verify_standard_webhooks(vector_request(**headers), [VECTOR_SECRET], TOLERANCE, now)
    message = str(info.value)
    assert VECTOR_SECRET.removeprefix("whsec_") not in message and "g0hM9" not in message


def test_standard_webhooks_bad_configured_secret_is_a_verification_failure() -> None:
    with pytest.raises(VerificationFailed, match="whsec_"):
        verify_standard_webhooks(vector_request(), ["whsec_not base64!"], TOLERANCE, VECTOR_TS)
    with pytest.raises(VerificationFailed, match="no secret"):
        verify_standard_webhooks(vector_request(), [], TOLERANCE, VECTOR_TS)


# --- _answers -----------------------------------------------------------------------------------


def test_answer_omits_empty_values_and_keeps_json_types() -> None:
    assert [_answers.answer("k", "L", "t", v) for v in (None, "", [], {})] == [None] * 4
    kept = _answers.collect(
        [
            _answers.answer("a", "A", "NUMBER", 3),
            _answers.answer("b", "B", "text", "3"),
            None,
            _answers.answer("c", "C", "bool", False),
            _answers.answer("d", "D", "multi", ["x", None, 2]),
        ]
    )
    assert [(a.type, a.value) for a in kept] == [
        ("number", 3),
        ("text", "3"),
        ("bool", False),
        ("multi", ["x", "2"]),
    ]
    assert type(kept[0].value) is int and type(kept[2].value) is bool


def test_file_value_is_string_for_one_file_and_list_for_several() -> None:
    assert _answers.file_value(["https://f/1"]) == "https://f/1"
    assert _answers.file_value(["https://f/1", "https://f/2"]) == ["https://f/1", "https://f/2"]


def test_pick_email_order() -> None:
    answers = _answers.collect(
        [
            _answers.answer("n", "Note", "text", "contact me at typed@example.org"),
            _answers.answer("x", "Other", "text", "loose@example.org"),
            _answers.answer("e", "Work email", "input_email", "typed@example.org"),
        ]
    )
    assert _answers.pick_email("respondent@example.org", answers) == "respondent@example.org"
    assert _answers.pick_email(None, answers) == "typed@example.org"
    assert _answers.pick_email(None, answers[:2]) == "loose@example.org"
    assert _answers.pick_email(None, answers[:1]) is None


def test_pick_name() -> None:
    assert (
        _answers.pick_name(
            _answers.collect(
                [
                    _answers.answer("1", "Email", "email", "a@b.co"),
                    _answers.answer("2", "Your Name:", "text", "Ada"),
                ]
            )
        )
        == "Ada"
    )
    assert _answers.pick_name(_answers.collect([_answers.answer("1", "Who?", "name", "Grace")])) == "Grace"
    assert (
        _answers.pick_name(_answers.collect([_answers.answer("1", "Company name", "text", "ACME")])) is None
    )
    # A provider's own name type wins over an earlier name-like label, and is kept as sent.
    labelled_first = _answers.collect(
        [_answers.answer("1", "Name", "text", "Ada"), _answers.answer("2", "Who?", "shortname", " Grace ")]
    )
    assert _answers.pick_name(labelled_first) == "Ada"
    assert _answers.pick_name(labelled_first, frozenset({"shortname"})) == " Grace "


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "expected an object"),
        (b"\xff", "not UTF-8"),
        (b"3", "expected an object"),
    ],
)
def test_parse_json_object_reasons(body: bytes, reason: str) -> None:
    with pytest.raises(UnsupportedPayload, match=reason):
        _answers.parse_json_object(body)
