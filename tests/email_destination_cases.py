"""Shared cases of the e-mail destination tests (smtp, sendgrid, postmark): one submission, the
bodies it must render to (typed out here, independently of the renderer). Virtual time, replay
of recorded answers and log capture are in tests/destination_helpers.py.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flows.destinations.base import DeliveryContext, DeliveryItem
from flows.pacing import Pacer
from hub.submission import Answer, Submission
from tests.destination_helpers import fake_pacer
from tests.httpx_senders import respx_sender

NOW = 1_795_428_905.0
"""Mon, 23 Nov 2026 10:15:05 GMT: the wall clock every destination gets in these tests."""
LINK = "https://hub.example.com/submissions/sub_01JD4X3T0M9R8Q"
KEY = "sub_01JD4X3T0M9R8Q.sales-mail"
MESSAGE_ID = "<3c3eb8b468befa7292d1b93c296e6a94.hookhub@hookhub.example>"
"""sha256(KEY)[:32], computed once by hand: the same on every attempt."""
PERSONAL = ("ada@example.com", "Ada Lovelace", "Engines & Co", "sales@example.com", "Contact us")
"""Strings of the submission and recipients that must never reach a log."""

ANSWERS = [
    Answer(key="q1", label="Company", type="short_text", value="Engines & Co <Ltd>"),
    Answer(key="q2", label="Topics", type="multiple_choice", value=["Sales", "Support"]),
    Answer(key="q3", label="Message", type="long_text", value="Hello,\nplease call me."),
    Answer(key="q4", label="Newsletter", type="yes_no", value=True),
    Answer(key="q5", label="Comments", type="long_text", value=None),
]

EXPECTED_SUBJECT = "New submission: Contact us from Ada Lovelace"
EXPECTED_TEXT = """\
New submission: Contact us

Name: Ada Lovelace
Email: ada@example.com

Company: Engines & Co <Ltd>
Topics: Sales, Support
Message: Hello,
  please call me.
Newsletter: Yes
Comments: (no answer)

--
Submitted 2026-11-23 10:15 UTC · source contact-form
View in hookhub: https://hub.example.com/submissions/sub_01JD4X3T0M9R8Q
"""

_TH = '<th align="left" style="border-top:1px solid #dddddd;padding:6px 8px;vertical-align:top;">'
_TD = '<td style="border-top:1px solid #dddddd;padding:6px 8px;vertical-align:top;white-space:pre-wrap;">'
EXPECTED_HTML = f"""\
<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>Contact us</title></head>
<body style="margin:0;padding:16px;font-family:Helvetica,Arial,sans-serif;color:#1a1a1a;">
<h1 style="font-size:20px;margin:0 0 12px;">Contact us</h1>
<p style="margin:0 0 16px;">Ada Lovelace &middot; <a href="mailto:ada@example.com">ada@example.com</a></p>
<table role="presentation" cellspacing="0" style="border-collapse:collapse;max-width:640px;">
<tr>{_TH}Company</th>{_TD}Engines &amp; Co &lt;Ltd&gt;</td></tr>
<tr>{_TH}Topics</th>{_TD}Sales, Support</td></tr>
<tr>{_TH}Message</th>{_TD}Hello,
please call me.</td></tr>
<tr>{_TH}Newsletter</th>{_TD}Yes</td></tr>
<tr>{_TH}Comments</th>{_TD}(no answer)</td></tr>
</table>
<p style="color:#666666;font-size:12px;margin:16px 0 0;">Submitted 2026-11-23 10:15 UTC &middot; \
source contact-form &middot; \
<a href="https://hub.example.com/submissions/sub_01JD4X3T0M9R8Q">View in hookhub</a></p>
</body>
</html>
"""

CONFIG = {
    "from": "Forms <forms@hookhub.example>",
    "to": ["sales@example.com"],
    "cc": ["Support Team <support@example.com>"],
    "bcc": ["audit@example.com"],
}
"""The e-mail keys of the golden tests (each test adds its transport's own keys)."""


def make_submission(n: int = 0, **changes: Any) -> Submission:
    data: dict[str, Any] = {
        "id": "sub_01JD4X3T0M9R8Q" if n == 0 else f"sub_{n:04d}",
        "source": "contact-form",
        "provider": "typeform",
        "form_id": "frm_contact",
        "form_title": "Contact us",
        "event_id": f"evt_{n}",
        "submitted_at": "2026-11-23T10:15:00Z",
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "answers": ANSWERS,
    }
    data.update(changes)
    return Submission.model_validate(data)


def item(n: int = 0, submission: Submission | None = None, **changes: Any) -> DeliveryItem:
    key = KEY if n == 0 else f"sub_{n:04d}.sales-mail"
    return DeliveryItem(key=key, submission=submission or make_submission(n), route="contact", **changes)


def message_id_of(key: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}.hookhub@hookhub.example>"


def email_context(pacer: Pacer | None = None, extra: dict[str, Any] | None = None) -> DeliveryContext:
    """The context the e-mail destination tests deliver in: answers from respx routes, links to LINK."""
    return DeliveryContext(
        http=respx_sender(),
        pacer=pacer or fake_pacer()[0],
        destination_id="sales-mail",
        record_link=lambda _id: LINK,
        extra=extra or {},
    )
