"""An alert as an e-mail (smtp, sendgrid, postmark): `Alert.subject()` and `Alert.text()`, from the
destination's `from`, to its fixed addresses.

A recipient written as a template picks its address from a submission's answers; an alert has no
submission, so such entries are left out, and a destination with only those cannot carry alerts
(`hookhub check` says so, hub/alerts/checks.py).
"""

from __future__ import annotations

import hashlib

from flows.destinations._email_render import EmailContent, message_id
from flows.destinations._email_settings import EmailSettings, Mailbox, has_jinja, one_line, parse_mailboxes
from hub.alerts.model import Alert, AlertNotSent

NO_FIXED_RECIPIENT = "has no fixed `to` address (templates need a submission): alerts need one"


def fixed_mailboxes(entries: list[str]) -> list[Mailbox]:
    """The addresses of the entries that are not templates."""
    return [mailbox for entry in entries if not has_jinja(entry) for mailbox in parse_mailboxes(entry)]


def alert_email(settings: EmailSettings, alert: Alert) -> EmailContent:
    to = fixed_mailboxes(settings.to)
    if not to:
        raise AlertNotSent(f"the e-mail destination {NO_FIXED_RECIPIENT}", retry=False)
    sender = parse_mailboxes(settings.from_)[0]
    # One key per alert, the same on every try: the Message-ID a mail system can dedupe on.
    key = "alert_" + hashlib.sha256(alert.model_dump_json().encode("utf-8")).hexdigest()[:32]
    return EmailContent(
        sender=sender,
        to=tuple(to),
        cc=tuple(fixed_mailboxes(settings.cc)),
        bcc=tuple(fixed_mailboxes(settings.bcc)),
        reply_to=None,
        subject=one_line(alert.subject(), 200),
        text=alert.text(),
        html=None,
        message_id=message_id(key, sender),
        submission_id="",
        delivery_key=key,
    )
