"""A template that raises for one submission fails that item only (issue 11, item 7).

Any exception while rendering one item (`{{ answers['Tickets'] + 1 }}` on an empty answer is a
TypeError, not a Jinja TemplateError) makes that item a dead letter naming the field and the
exception; the other items of the chunk are rendered and sent once. An unexpected exception while
sending one item or sub-batch records an outcome for those only, so what the same call already
sent is reported delivered and never sent again. The sandbox bounds what a template may make it
do, and `hookhub test-route` reports any of it without a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from flows.destinations import get_destination
from flows.destinations.base import DeliveryContext, DeliveryItem, Outcome
from flows.mapping import MappingError, render
from hub.cli import main as cli
from hub.submission import Answer, Submission
from tests.destination_helpers import fake_pacer, loopback_server
from tests.harness import PROVIDER_FIXTURES
from tests.httpx_senders import httpx_sender, respx_sender

BROKEN = "{{ answers['Tickets'] + 1 }}"
"""The probe's template: an empty answer is "", and "" + 1 raises TypeError inside Jinja."""


def submission(n: int, tickets: Any = "") -> Submission:
    return Submission.model_validate(
        {
            "id": f"sub_{n:04d}",
            "source": "contact-form",
            "provider": "typeform",
            "form_id": "frm",
            "form_title": "Contact us",
            "event_id": f"evt_{n}",
            "submitted_at": "2026-11-23T10:15:00Z",
            "email": f"p{n}@example.com",
            "name": f"Person Number{n}",
            "answers": [Answer(key="q1", label="Tickets", type="number", value=tickets)],
        }
    )


async def deliver(
    dest_type: str,
    settings: dict[str, Any],
    items: list[DeliveryItem],
    answer: Callable[[httpx.Request], httpx.Response],
    extra: dict[str, Any] | None = None,
) -> list[Outcome]:
    destination = get_destination(dest_type)
    config = destination.Config.model_validate({"type": dest_type, **settings})

    http = httpx_sender(answer)
    context = DeliveryContext(http=http, pacer=fake_pacer()[0], destination_id="dest", extra=extra or {})
    return await destination.deliver(items, config, context)


# --- ten Slack messages, one template error: a real loopback server --------------------------------


class _Slack(BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:  # the name http.server dispatches to
        self.received.append(self.rfile.read(int(self.headers.get("content-length", "0"))))
        self.send_response(200)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.anyio
async def test_ten_slack_items_one_type_error_nine_posts_one_dead_letter_no_duplicates() -> None:
    template = "Tickets for {{ name }}: {{ answers['Tickets'] + 1 }}"
    items = [
        DeliveryItem(
            key=f"dlv_{n}", submission=submission(n, "" if n == 4 else n), route="r", template=template
        )
        for n in range(10)
    ]
    _Slack.received = []
    final: dict[str, Outcome] = {}
    with loopback_server(_Slack) as port:
        # A task posts the turns that fit in INLINE_TURNS_SECONDS and hands the rest back
        # (deferred, not attempted); the ledger gives them to a later task, as here.
        pending = items
        while pending:
            outcomes = await deliver_over_loopback(pending, f"http://127.0.0.1:{port}/services/T/B/x")
            final.update((o.key, o) for o in outcomes)
            assert any(not o.deferred for o in outcomes), "every task gets at least one turn"
            pending = [i for i in pending if final[i.key].deferred]
    texts = [json.loads(body)["text"] for body in _Slack.received]
    assert len(texts) == 9 and len(set(texts)) == 9
    assert "Person Number4" not in " ".join(texts)
    assert [o.status for o in final.values()].count("delivered") == 9
    [dead] = [o for o in final.values() if o.status == "failed"]
    assert dead.key == "dlv_4"
    assert dead.reason is not None and dead.reason.startswith("template: cannot render: TypeError: ")


async def deliver_over_loopback(items: list[DeliveryItem], webhook_url: str) -> list[Outcome]:
    config = get_destination("slack").Config.model_validate({"type": "slack", "webhook_url": webhook_url})

    http = respx_sender()
    context = DeliveryContext(http=http, pacer=fake_pacer()[0], destination_id="team-slack")
    return await get_destination("slack").deliver(items, config, context)


# --- every destination that renders: one broken item, the others sent --------------------------------

MAIL = {"from": "forms@example.com", "to": ["sales@example.com"]}
EMAIL_BROKEN = {"subject": BROKEN}
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # type: (settings, what the broken item's route sets: template or map)
    "slack": ({"webhook_url": "https://hooks.slack.com/services/T0/B0/x"}, {"template": BROKEN}),
    "smtp": ({**MAIL, "host": "smtp.example.com"}, {"mapping": EMAIL_BROKEN}),
    "sendgrid": ({**MAIL, "api_key": "SG.key"}, {"mapping": EMAIL_BROKEN}),
    "postmark": ({**MAIL, "server_token": "pm-token"}, {"mapping": EMAIL_BROKEN}),
    "hubspot": ({"token": "pat-na1-token"}, {"mapping": {"email": "{{ email }}", "firstname": BROKEN}}),
    "salesforce": (
        {
            "instance_url": "https://acme.my.salesforce.com",
            "access_token": "tok",
            "external_id_field": "Hookhub_Id__c",
        },
        {"mapping": {"LastName": BROKEN, "Email": "{{ email }}"}},
    ),
    "pipedrive": ({"api_token": "pd-token"}, {"mapping": {"name": BROKEN, "email": "{{ email }}"}}),
}


def _ok_answer(request: httpx.Request) -> httpx.Response:
    """A plausible success for any of the APIs; what matters here is which items were sent at all."""
    if request.url.path.endswith("/email/batch"):
        count = len(json.loads(request.content))
        return httpx.Response(200, json=[{"ErrorCode": 0, "MessageID": f"m{i}"} for i in range(count)])
    if request.url.path.endswith("/v3/mail/send"):
        return httpx.Response(202)
    if "hooks.slack.com" in request.url.host:
        return httpx.Response(200, text="ok")
    return httpx.Response(
        200,
        json={
            "ErrorCode": 0,
            "MessageID": "m",
            "success": True,
            "data": {"id": 7, "items": []},
            "id": "a0X",
            "results": [],
        },
    )


@pytest.mark.anyio
@pytest.mark.parametrize("dest_type", sorted(CASES))
async def test_a_template_exception_fails_only_its_item_in_every_rendering_destination(
    dest_type: str,
) -> None:
    settings, broken = CASES[dest_type]
    items = [
        DeliveryItem(key=f"dlv_{n}", submission=submission(n), route="r", **(broken if n == 1 else {}))
        for n in range(3)
    ]
    requests: list[httpx.Request] = []
    mails: list[EmailMessage] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return _ok_answer(request)

    outcomes = await deliver(dest_type, settings, items, answer, extra={"smtp_send": mails.append})
    by_key = {o.key: o for o in outcomes}
    assert sorted(by_key) == ["dlv_0", "dlv_1", "dlv_2"]
    assert by_key["dlv_1"].status == "failed"
    assert "cannot render: TypeError: " in (by_key["dlv_1"].reason or ""), by_key["dlv_1"].reason
    sent = " ".join(f"{r.url} {r.content.decode()}" for r in requests)
    sent += " ".join(m.as_string() for m in mails)
    assert "p0@example.com" in sent and "p2@example.com" in sent
    assert "p1@example.com" not in sent  # nothing of the broken item went anywhere
    for key in ("dlv_0", "dlv_2"):
        assert "TypeError" not in (by_key[key].reason or "")


# --- an exception while sending: what went out stays delivered ------------------------------------


def _crash_on(
    call: int, answer: Callable[[httpx.Request], httpx.Response]
) -> tuple[Callable[[httpx.Request], httpx.Response], list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == call:
            raise RuntimeError("a bug below the destination")  # not a transport error: nothing catches it
        return answer(request)

    return handler, seen


@pytest.mark.anyio
async def test_a_crash_in_the_second_postmark_batch_keeps_the_first_batch_delivered() -> None:
    items = [DeliveryItem(key=f"dlv_{n}", submission=submission(n), route="r") for n in range(150)]
    handler, seen = _crash_on(2, _ok_answer)
    outcomes = await deliver("postmark", CASES["postmark"][0], items, handler)
    assert len(seen) == 2  # 100, then 50: nothing sent again
    assert len(outcomes) == 150 and len({o.key for o in outcomes}) == 150
    statuses = {o.key: o.status for o in outcomes}
    assert [statuses[f"dlv_{n}"] for n in range(100)] == ["delivered"] * 100
    assert {statuses[f"dlv_{n}"] for n in range(100, 150)} == {"failed"}
    crashed = next(o for o in outcomes if o.key == "dlv_149")
    assert crashed.reason is not None
    assert crashed.reason.startswith(
        "hookhub failed while sending (RuntimeError: a bug below the destination)"
    )


@pytest.mark.anyio
@pytest.mark.parametrize("dest_type", ["slack", "sendgrid", "pipedrive"])
async def test_a_crash_while_sending_one_item_keeps_the_others(dest_type: str) -> None:
    items = [DeliveryItem(key=f"dlv_{n}", submission=submission(n), route="r") for n in range(3)]
    handler, seen = _crash_on(1, _ok_answer)
    outcomes = await deliver(dest_type, CASES[dest_type][0], items, handler)
    by_key = {o.key: o for o in outcomes}
    assert sorted(by_key) == ["dlv_0", "dlv_1", "dlv_2"]
    crashed = [
        o for o in outcomes if (o.reason or "").startswith("hookhub failed while sending (RuntimeError")
    ]
    assert len(crashed) == 1 and crashed[0].status == "failed"
    if dest_type in ("slack", "sendgrid"):
        assert [o.status for o in outcomes].count("delivered") == 2


@pytest.mark.anyio
async def test_a_crash_in_one_salesforce_chunk_keeps_the_chunk_before_it() -> None:
    settings = {**CASES["salesforce"][0], "batch_size": 1}

    def upserted(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            201, json={"id": "00Q000000000001AAA", "success": True, "errors": [], "created": True}
        )

    handler, seen = _crash_on(2, upserted)
    items = [DeliveryItem(key=f"dlv_{n}", submission=submission(n), route="r") for n in range(3)]
    outcomes = await deliver("salesforce", settings, items, handler)
    assert [o.status for o in outcomes] == ["delivered", "failed", "delivered"]
    assert len(seen) == 3


# --- the sandbox's limits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template, limit",
    [
        ("{{ range(1000000) | length }}", "RenderLimit: range() would loop 1,000,000 times"),
        (
            "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
            "RenderLimit: range()",
        ),
        ("{{ 'x' * 1000000000 }}", "RenderLimit: '*' would build 1,000,000,000 items"),
        ("{{ [1, 2] * 10000000 }}", "RenderLimit: '*'"),
        ("{{ 10 ** 100000000 }}", "RenderLimit: '**'"),
    ],
)
def test_templates_cannot_make_a_rendering_unbounded(template: str, limit: str) -> None:
    with pytest.raises(MappingError) as raised:
        render(template, submission(0), field="template")
    assert str(raised.value).startswith("template: cannot render"), raised.value
    assert limit in str(raised.value)


def test_the_range_budget_is_per_rendering_not_per_process() -> None:
    template = "{% for i in range(60000) %}{% endfor %}{{ range(30000) | length }}"
    for _ in range(3):  # 90,000 each time: under the budget every time
        assert render(template, submission(0)) == "30000"
    assert render("{{ 'ab' * 3 }}{{ 2 ** 10 }}", submission(0)) == "ababab1024"


# --- hookhub test-route: a clean error, never a traceback --------------------------------------------

FIXTURE = PROVIDER_FIXTURES / "typeform" / "full_event_registration.json"


@pytest.mark.parametrize(
    "template, shown",
    [
        ("{{ range(1000000) | length }}", "RenderLimit: range() would loop 1,000,000 times"),
        ("{{ answers['Dietary preference'] + 1 }}", "TypeError: can only concatenate str"),
        ("{{ 'x' * 1000000000 }}", "RenderLimit: '*' would build"),
    ],
)
def test_test_route_prints_a_failing_template_cleanly_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], template: str, shown: str
) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(
        f"""
sources:
  contact-form: {{provider: typeform, secret: x}}
destinations:
  team: {{type: slack, webhook_url: "https://hooks.slack.com/services/T000/B000/SECRETXYZ"}}
  mail: {{type: smtp, host: smtp.example.com, from: hub@example.com, to: [sales@example.com]}}
routes:
  - name: leads
    from: [contact-form]
    to:
      - destination: team
        template: "{template}"
      - mail
""",
        encoding="utf-8",
    )
    assert cli(["test-route", "leads", "--fixture", str(FIXTURE), "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    team = captured.out.split("=== team (slack) — not sent\n", 1)[1].split("=== mail", 1)[0]
    assert team.startswith(f"would not send: template: cannot render: {shown}"), team
    assert "=== mail (smtp) — not sent" in captured.out  # the others are still shown
    assert "Subject:" in captured.out
    assert captured.err.strip() == "hookhub test-route: team would not send this submission"


@pytest.mark.anyio
async def test_a_crash_while_sending_one_webhook_keeps_the_others() -> None:
    items = [DeliveryItem(key=f"dlv_{n}", submission=submission(n), route="r") for n in range(3)]
    handler, seen = _crash_on(2, lambda request: httpx.Response(200, json={"id": "x"}))
    settings = {
        "url": "https://crm.example.com/in",
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "concurrency": 1,
    }
    outcomes = await deliver("webhook", settings, items, handler)
    assert [o.status for o in outcomes] == ["delivered", "failed", "delivered"]
    assert len(seen) == 3
