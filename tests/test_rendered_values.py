"""Values from respondents never become structure (issue 11, item 6).

With the `to:` template the e-mail docs show, the answer `attacker@evil.example, sales` used to
send the mail to the attacker too. Each `{{ }}` value in a recipient template must now stay within
one address: separators, brackets, quotes, white space and control characters in it make the item
a dead letter, and nothing is sent to anyone for it. `allowed_recipient_domains` closes the rest.
Also here: header values stay one line, a Slack channel is never a template, and a Salesforce
external id cannot climb out of its URL.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from aiosmtpd.controller import Controller
from pydantic import ValidationError

from flows.destinations import get_destination
from flows.destinations.base import DeliveryContext, DeliveryItem, Outcome
from flows.destinations.slack import SlackConfig
from hub.submission import Answer, Submission
from tests.destination_helpers import fake_pacer
from tests.httpx_senders import httpx_sender

DEPARTMENT_TO = "{{ answers['Department'] | lower }}@example.com"
"""The recipient template of docs/destinations/email.md."""
ATTACK = "attacker@evil.example, sales"


def submission(n: int, department: str = "Sales", **changes: Any) -> Submission:
    data: dict[str, Any] = {
        "id": f"sub_{n:04d}",
        "source": "contact-form",
        "provider": "typeform",
        "form_id": "frm",
        "form_title": "Contact us",
        "event_id": f"evt_{n}",
        "submitted_at": "2026-11-23T10:15:00Z",
        "email": f"p{n}@example.org",
        "name": f"Person {n}",
        "answers": [
            Answer(key="q1", label="Department", type="short_text", value=department),
            Answer(key="q2", label="Topic", type="short_text", value="Tickets"),
        ],
    }
    data.update(changes)
    return Submission.model_validate(data)


def item(n: int, department: str = "Sales", **changes: Any) -> DeliveryItem:
    return DeliveryItem(key=f"dlv_{n}", submission=submission(n, department), route="r", **changes)


# --- smtp, against a real local SMTP server ---------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 Ok: queued"

    def messages(self) -> list[EmailMessage]:
        return [
            message_from_bytes(e.content, policy=policy.default)  # type: ignore[misc]
            for e in self.envelopes
        ]


@contextmanager
def smtp_server() -> Iterator[tuple[int, _Inbox]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def _no_request(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no HTTP request was expected, got {request.method} {request.url}")


async def deliver(
    dest_type: str,
    settings: dict[str, Any],
    items: list[DeliveryItem],
    answer: Callable[[httpx.Request], httpx.Response] | None = None,
) -> list[Outcome]:
    destination = get_destination(dest_type)
    sender = {"from": "forms@example.com"} if dest_type in ("smtp", "sendgrid", "postmark") else {}
    config = destination.Config.model_validate({"type": dest_type, **sender, **settings})

    http = httpx_sender(answer or _no_request)
    context = DeliveryContext(http=http, pacer=fake_pacer()[0], destination_id="sales-mail")
    return await destination.deliver(items, config, context)


async def smtp_deliver(items: list[DeliveryItem], **settings: Any) -> tuple[list[Outcome], _Inbox]:
    with smtp_server() as (port, inbox):
        outcomes = await deliver(
            "smtp",
            {"host": "127.0.0.1", "port": port, "security": "none", "to": [DEPARTMENT_TO], **settings},
            items,
        )
    return outcomes, inbox


@pytest.mark.anyio
async def test_smtp_an_answer_with_a_second_address_is_a_dead_letter_and_no_one_gets_it() -> None:
    outcomes, inbox = await smtp_deliver([item(1, ATTACK), item(2, "Sales")])
    assert [o.status for o in outcomes] == ["failed", "delivered"]
    assert outcomes[0].reason == (
        "to[0]: the value 'attacker@evil.example, sales' from the submission holds a comma; a value from "
        "a submission must stay within one address, so nothing was sent"
    )
    [envelope] = inbox.envelopes  # only the good item's mail, to the one address it names
    assert envelope.rcpt_tos == ["sales@example.com"]
    assert "evil.example" not in envelope.content.decode()


BAD_VALUES = {
    "attacker@evil.example;sales": "a semicolon",
    "Sales <attacker@evil.example>": "white space",
    "<attacker@evil.example>": "an angle bracket",
    '"sales" attacker': "a double quote",
    "sales\r\nBcc: attacker@evil.example": "a line break or other white space",
    "sales\tattacker@evil.example": "white space",
    "list: attacker@evil.example;": "a colon",
    "sales(attacker@evil.example)": "a parenthesis",
    "sales\x00": "a control character",
    "sales\u200b": "a control character",
}


@pytest.mark.anyio
@pytest.mark.parametrize("value", sorted(BAD_VALUES))
async def test_smtp_any_structure_in_a_value_is_refused(value: str) -> None:
    outcomes, inbox = await smtp_deliver([item(1, value)])
    assert outcomes[0].status == "failed"
    assert f"holds {BAD_VALUES[value]};" in (outcomes[0].reason or "")
    assert inbox.envelopes == []


@pytest.mark.anyio
async def test_smtp_values_that_stay_within_one_address_are_sent() -> None:
    # o'neil is a valid local part; a whole address from the submission is fine; the admin's own
    # separators (outside {{ }}) still list several recipients.
    both = "boss@example.com, {{ answers['Department'] | lower }}@example.com"
    items = [
        item(1, "O'Neil"),
        item(2, "Sales", mapping={"to": "{{ email }}"}),
        item(3, "Support", mapping={"to": both}),
    ]
    outcomes, inbox = await smtp_deliver(items)
    assert [o.status for o in outcomes] == ["delivered"] * 3
    assert [e.rcpt_tos for e in inbox.envelopes] == [
        ["o'neil@example.com"],
        ["p2@example.org"],
        ["boss@example.com", "support@example.com"],
    ]


@pytest.mark.anyio
async def test_smtp_allowed_recipient_domains_dead_letters_a_rendered_recipient_elsewhere() -> None:
    items = [item(1, "Sales", mapping={"to": "{{ email }}"}), item(2, "Sales")]
    outcomes, inbox = await smtp_deliver(items, allowed_recipient_domains=["Example.com"])
    assert [o.status for o in outcomes] == ["failed", "delivered"]
    assert outcomes[0].reason == (
        "map.to: p1@example.org is outside allowed_recipient_domains (example.com), so nothing was sent"
    )
    assert [e.rcpt_tos for e in inbox.envelopes] == [["sales@example.com"]]


@pytest.mark.anyio
async def test_smtp_cr_lf_in_subject_and_reply_to_name_stays_one_header_line() -> None:
    evil = "Hi\r\nBcc: victim@evil.example\r\nX-Evil: 1"
    items = [
        DeliveryItem(
            key="dlv_1",
            submission=submission(1, name=evil),
            route="r",
            mapping={"subject": "{{ answers['Topic'] }}: {{ name }}"},
        )
    ]
    outcomes, inbox = await smtp_deliver(items)
    assert outcomes[0].status == "delivered"
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["sales@example.com"]
    [message] = inbox.messages()
    assert message["Subject"] == "Tickets: Hi Bcc: victim@evil.example X-Evil: 1"
    assert message["X-Evil"] is None and message["Bcc"] is None
    assert message["Reply-To"].addresses[0].display_name == "Hi Bcc: victim@evil.example X-Evil: 1"


# --- sendgrid and postmark: the same rule, no API call for the item ---------------------------------


def _recording(
    answer: httpx.Response | Callable[[httpx.Request], httpx.Response],
) -> tuple[Callable[[httpx.Request], httpx.Response], list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request) if callable(answer) else answer

    return handler, seen


API_CASES = {
    "sendgrid": ({"api_key": "SG.key"}, httpx.Response(202)),
    "postmark": ({"server_token": "pm-token"}, httpx.Response(200, json={"ErrorCode": 0, "MessageID": "m"})),
}


@pytest.mark.anyio
@pytest.mark.parametrize("dest_type", sorted(API_CASES))
async def test_api_an_answer_with_a_second_address_is_a_dead_letter_and_not_sent(dest_type: str) -> None:
    settings, ok = API_CASES[dest_type]
    handler, seen = _recording(ok)
    outcomes = await deliver(
        dest_type, {**settings, "to": [DEPARTMENT_TO]}, [item(1, ATTACK), item(2)], handler
    )
    by_key = {o.key: o for o in outcomes}
    assert by_key["dlv_1"].status == "failed" and by_key["dlv_2"].status == "delivered"
    assert "to[0]: the value 'attacker@evil.example, sales' from the submission holds a comma" in (
        by_key["dlv_1"].reason or ""
    )
    [request] = seen
    assert "evil.example" not in request.content.decode()
    assert "sales@example.com" in request.content.decode()


@pytest.mark.anyio
@pytest.mark.parametrize("dest_type", sorted(API_CASES))
async def test_api_allowed_recipient_domains(dest_type: str) -> None:
    settings, ok = API_CASES[dest_type]
    handler, seen = _recording(ok)
    elsewhere = submission(2, email="x@elsewhere.example")
    items = [item(1), DeliveryItem(key="dlv_2", submission=elsewhere, route="r")]
    settings = {**settings, "to": ["{{ email }}"], "allowed_recipient_domains": ["example.org"]}
    outcomes = await deliver(dest_type, settings, items, handler)
    by_key = {o.key: o for o in outcomes}
    assert by_key["dlv_1"].status == "delivered" and by_key["dlv_2"].status == "failed"
    assert "x@elsewhere.example is outside allowed_recipient_domains" in (by_key["dlv_2"].reason or "")
    [request] = seen
    assert "p1@example.org" in request.content.decode() and "elsewhere" not in request.content.decode()


@pytest.mark.parametrize("dest_type", ["smtp", "sendgrid", "postmark"])
def test_allowed_recipient_domains_is_checked_against_literal_recipients_at_load(dest_type: str) -> None:
    config = get_destination(dest_type).Config
    base = {
        "type": dest_type,
        "from": "forms@example.com",
        "host": "smtp.example.com",
        "api_key": "SG.key",
        "server_token": "tok",
    }
    base = {k: v for k, v in base.items() if k in config.model_fields or k in ("type", "from")}
    good = config.model_validate(
        {**base, "to": ["sales@example.com", DEPARTMENT_TO], "allowed_recipient_domains": ["@Example.COM."]}
    )
    assert good.allowed_recipient_domains == ["example.com"]
    with pytest.raises(ValidationError, match="cc: boss@corp.example is outside allowed_recipient_domains"):
        config.model_validate(
            {
                **base,
                "to": ["sales@example.com"],
                "cc": ["boss@corp.example"],
                "allowed_recipient_domains": ["example.com"],
            }
        )
    with pytest.raises(ValidationError, match="is not a domain such as example.com"):
        config.model_validate(
            {**base, "to": ["sales@example.com"], "allowed_recipient_domains": ["exa mple.com"]}
        )


# --- Slack channel, Salesforce record id -------------------------------------------------------------


def test_a_slack_channel_is_never_a_template() -> None:
    with pytest.raises(ValidationError, match="is not a template"):
        SlackConfig.model_validate(
            {
                "type": "slack",
                "token": "xoxb-0000000000-SECRETbot",
                "channel": "#{{ answers['Department'] | lower }}",
            }
        )


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["..", "."])
async def test_a_salesforce_external_id_cannot_climb_out_of_its_url(value: str) -> None:
    handler, seen = _recording(
        httpx.Response(201, json={"id": "00Q000000000001AAA", "success": True, "errors": [], "created": True})
    )
    settings = {
        "instance_url": "https://acme.my.salesforce.com",
        "access_token": "tok",
        "external_id_field": "Ref__c",
        "external_id": "{{ answers['Department'] }}",
    }
    destination = get_destination("salesforce")
    config = destination.Config.model_validate({"type": "salesforce", **settings})

    http = httpx_sender(handler)
    context = DeliveryContext(http=http, pacer=fake_pacer()[0], destination_id="crm")
    outcomes = await destination.deliver([item(1, value), item(2, "a/b?c")], config, context)
    assert [o.status for o in outcomes] == ["failed", "delivered"]
    assert outcomes[0].reason == f"external_id: rendered {value!r}, which cannot name a record in a URL"
    [request] = seen
    assert request.url.raw_path.decode() == "/services/data/v62.0/sobjects/Lead/Ref__c/a%2Fb%3Fc"
    assert json.loads(request.content)["Email"] == "p2@example.org"


# --- CRM fields that name another record: one id, or nothing is sent -------------------------------

CRM_CASES = {
    # type: (settings, map naming another record from an answer, what the dead letter names)
    "hubspot": (
        {"token": "pat-na1-token"},
        {"email": "{{ email }}", "hubspot_owner_id": "{{ answers['Department'] }}"},
        "map.hubspot_owner_id",
    ),
    "pipedrive": (
        {"api_token": "pd-token"},
        {"name": "{{ name }}", "email": "{{ email }}", "owner_id": "{{ answers['Department'] }}"},
        "map.owner_id",
    ),
    "salesforce": (
        {
            "instance_url": "https://acme.my.salesforce.com",
            "access_token": "tok",
            "external_id_field": "Ref__c",
        },
        {"LastName": "{{ name }}", "Email": "{{ email }}", "OwnerId": "{{ answers['Department'] }}"},
        "map.OwnerId",
    ),
}
GOOD_ID = {"hubspot": "51209", "pipedrive": "42", "salesforce": "005000000000001AAA"}


@pytest.mark.anyio
@pytest.mark.parametrize("dest_type", sorted(CRM_CASES))
@pytest.mark.parametrize("value", ["12, 13", "12 OR 1=1", "005000000000001AAA/../x"])
async def test_a_crm_owner_id_from_an_answer_must_be_one_id(dest_type: str, value: str) -> None:
    settings, mapping, field = CRM_CASES[dest_type]
    # Search finds no one, creates answer an id: what matters is what was sent at all.
    handler, seen = _recording(httpx.Response(200, json={"success": True, "data": {"id": 7, "items": []}}))
    items = [item(1, value, mapping=mapping), item(2, GOOD_ID[dest_type], mapping=mapping)]
    outcomes = await deliver(dest_type, settings, items, handler)
    by_key = {o.key: o for o in outcomes}
    assert by_key["dlv_1"].status == "failed"
    assert (by_key["dlv_1"].reason or "").startswith(f"{field}: rendered {value!r}, which is not one ")
    sent = " ".join(f"{unquote(str(r.url))} {r.content.decode()}" for r in seen)
    assert "p1@example.org" not in sent and value not in sent
    assert "p2@example.org" in sent and GOOD_ID[dest_type] in sent


def test_values_are_told_from_the_admins_text_however_the_template_is_built() -> None:
    from flows.mapping import render_marked

    value = "attacker@evil.example, sales"
    templates = [
        "{{ answers['Department'] }}",
        "{% set d = answers['Department'] %}{{ d | lower }}",
        "{% set d %}x{{ answers['Department'] }}{% endset %}{{ d }}",
        "{% macro m() %}{{ answers['Department'] }}{% endmacro %}{{ m() }}",
        "{% filter lower %}{{ answers['Department'] }}{% endfilter %}",
        "{% filter truncate(12, True, '') %}{{ answers['Department'] }}{% endfilter %}",
    ]
    for template in templates:
        rendered = render_marked(template, submission(1, value), field="to[0]")
        assert any("," in v or "attacker" in v for v in rendered.values), (template, rendered)
        assert "\ue000" not in rendered.text and "\ue001" not in rendered.text
    literal = render_marked("a@example.com, b@example.com", submission(1), field="to[0]")
    assert literal.values == () and literal.text == "a@example.com, b@example.com"
