"""`smtp` destination: real mail to a real local SMTP server (aiosmtpd on 127.0.0.1), reply
classes, session handling, test-route injection, pacing on virtual time, mapping, config.

No SMTP answers are recorded in tests/fixtures (a local aiosmtpd server stands in for the mail
server), so the server's replies are produced by aiosmtpd handlers here; the classes follow
RFC 5321 §4.2.1 (https://www.rfc-editor.org/rfc/rfc5321#section-4.2.1: 4yz transient, 5yz permanent).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from flows.delivery import deliver_chunk
from flows.destinations import get_destination
from flows.destinations._http import account_key
from flows.destinations.base import DeliveryContext, DeliveryItem, Outcome
from flows.destinations.smtp import BUSY_PAUSE, SmtpConfig, SmtpDestination
from flows.pacing import Pacer
from hub.config.loader import ConfigError, load_config
from tests.destination_helpers import captured_logs, dumped, fake_pacer
from tests.email_destination_cases import (
    CONFIG,
    EXPECTED_HTML,
    EXPECTED_SUBJECT,
    EXPECTED_TEXT,
    MESSAGE_ID,
    NOW,
    PERSONAL,
    email_context,
    item,
    make_submission,
    message_id_of,
)
from tests.httpx_senders import respx_sender

PASSWORD = "s3cret-Pa55word-xyz"
USER = "forms-mailer"


# --- a real local SMTP server ---------------------------------------------------------------------


class Mailbox:
    """aiosmtpd handler: records every message; `rcpt_reply`/`data_reply` script refusals."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.rcpt_reply: dict[str, str] = {}
        self.data_replies: list[str] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.rcpt_reply:
            return self.rcpt_reply[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        self.envelopes.append(envelope)
        return "250 2.0.0 Ok: queued"

    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(e.content, policy=policy.default) for e in self.envelopes]  # type: ignore[misc]


class Logins:
    def __init__(self) -> None:
        self.attempts = 0

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        self.attempts += 1
        ok = data.login == USER.encode() and data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 / localhost, and the server's TLS context."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = folder / "cert.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = folder / "key.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return cert_path, context


@contextmanager
def smtp_server(**options: Any) -> Iterator[tuple[int, Mailbox]]:
    """aiosmtpd on 127.0.0.1, started and stopped here."""
    handler = Mailbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port, handler
    finally:
        controller.stop()


def config(port: int = 25, **extra: Any) -> SmtpConfig:
    data = {"type": "smtp", "host": "127.0.0.1", "port": port, "security": "none", **CONFIG, **extra}
    return SmtpConfig.model_validate(data)


async def deliver(
    items: list[DeliveryItem],
    cfg: SmtpConfig,
    pacer: Pacer | None = None,
    extra: dict[str, Any] | None = None,
) -> list[Outcome]:
    context = email_context(pacer, extra)
    return await deliver_chunk(SmtpDestination(wall_clock=lambda: NOW), items, cfg, context)


def bodies(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    # On the wire lines end in CRLF (SMTP); compare the text itself.
    return text.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


# --- real delivery --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_real_mail_over_starttls_with_auth_same_message_id_on_every_attempt(
    certificate: tuple[Path, ssl.SSLContext],
) -> None:
    cert_path, tls = certificate
    logins = Logins()
    with smtp_server(tls_context=tls, require_starttls=True, auth_required=True, authenticator=logins) as (
        port,
        mailbox,
    ):
        cfg = config(port, security="starttls", username=USER, password=PASSWORD, tls_ca_file=str(cert_path))
        first = await deliver([item()], cfg)
        second = await deliver([item()], cfg)  # a second attempt of the same delivery
    assert [o.status for o in first + second] == ["delivered", "delivered"], first + second
    assert first[0].remote_id == second[0].remote_id == MESSAGE_ID
    assert len(mailbox.envelopes) == 2
    envelope = mailbox.envelopes[0]
    assert envelope.mail_from == "forms@hookhub.example"
    assert envelope.rcpt_tos == ["sales@example.com", "support@example.com", "audit@example.com"]
    one, two = mailbox.messages()
    for message in (one, two):
        assert message["From"] == "Forms <forms@hookhub.example>"
        assert message["To"] == "sales@example.com"
        assert message["Cc"] == "Support Team <support@example.com>"
        assert message["Bcc"] is None  # blind copies stay blind
        assert message["Reply-To"] == "Ada Lovelace <ada@example.com>"
        assert message["Subject"] == EXPECTED_SUBJECT
        assert message["Message-ID"] == MESSAGE_ID
        assert message["Date"] == "Mon, 23 Nov 2026 10:15:05 +0000"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["X-Hookhub-Submission"] == "sub_01JD4X3T0M9R8Q"
        assert message.get_content_type() == "multipart/alternative"
        assert bodies(message) == (EXPECTED_TEXT, EXPECTED_HTML)
    assert logins.attempts == 2  # one login per deliver call


@pytest.mark.anyio
async def test_one_connection_carries_the_whole_batch() -> None:
    connections: list[str] = []

    class Counting(Mailbox):
        async def handle_EHLO(
            self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
        ) -> list[str]:
            connections.append(hostname)
            session.host_name = hostname  # aiosmtpd leaves this to an EHLO hook
            return responses

    handler = Counting()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        outcomes = await deliver([item(1), item(2), item(3)], config(port))
    finally:
        controller.stop()
    assert [o.status for o in outcomes] == ["delivered"] * 3
    assert len(handler.envelopes) == 3
    assert len(connections) == 1
    ids = [m["Message-ID"] for m in handler.messages()]
    assert ids == [message_id_of(f"sub_{n:04d}.sales-mail") for n in (1, 2, 3)]


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_implicit_tls(certificate: tuple[Path, ssl.SSLContext]) -> None:
    cert_path, tls = certificate
    # aiosmtpd only knows STARTTLS as "TLS" for AUTH, so AUTH over implicit TLS needs this switch.
    with smtp_server(
        ssl_context=tls,
        server_hostname="127.0.0.1",
        auth_require_tls=False,
        authenticator=Logins(),
        auth_required=True,
    ) as (port, mailbox):
        cfg = config(port, security="tls", username=USER, password=PASSWORD, tls_ca_file=str(cert_path))
        [outcome] = await deliver([item()], cfg)
    assert outcome.status == "delivered", outcome.reason
    assert mailbox.messages()[0]["Message-ID"] == MESSAGE_ID


@pytest.mark.anyio
async def test_untrusted_certificate_is_a_connect_error_and_retried(
    certificate: tuple[Path, ssl.SSLContext],
) -> None:
    _, tls = certificate
    with smtp_server(tls_context=tls, require_starttls=True) as (port, mailbox):
        outcomes = await deliver([item(1), item(2)], config(port, security="starttls"))
    assert [o.status for o in outcomes] == ["retry", "retry"]
    assert "CERTIFICATE_VERIFY_FAILED" in (outcomes[0].reason or "")
    assert (outcomes[1].reason or "").startswith("not sent: ")
    assert mailbox.envelopes == []


@pytest.mark.anyio
async def test_starttls_required_but_not_offered_fails() -> None:
    with smtp_server() as (port, mailbox):
        [outcome] = await deliver([item()], config(port, security="starttls"))
    assert outcome.status == "failed"
    assert "STARTTLS" in (outcome.reason or "") and "check security" in (outcome.reason or "")
    assert mailbox.envelopes == []


@pytest.mark.anyio
async def test_wrong_password_fails_once_not_once_per_message(
    certificate: tuple[Path, ssl.SSLContext],
) -> None:
    cert_path, tls = certificate
    logins = Logins()
    with smtp_server(tls_context=tls, require_starttls=True, auth_required=True, authenticator=logins) as (
        port,
        mailbox,
    ):
        cfg = config(
            port, security="starttls", username=USER, password="wrong-password", tls_ca_file=str(cert_path)
        )
        outcomes = await deliver([item(1), item(2), item(3)], cfg)
    assert [(o.status, o.status_code) for o in outcomes] == [("failed", 535)] * 3
    assert "check username and password" in (outcomes[0].reason or "")
    assert all((o.reason or "").startswith("not sent: ") for o in outcomes[1:])
    assert logins.attempts <= 2  # one connection's AUTH (aiosmtplib tries PLAIN, then LOGIN)
    assert mailbox.envelopes == []
    assert "wrong-password" not in " ".join(o.reason or "" for o in outcomes)


@pytest.mark.anyio
async def test_nothing_listening_is_retried_without_hammering() -> None:
    outcomes = await deliver([item(1), item(2)], config(free_port()))
    assert [o.status for o in outcomes] == ["retry", "retry"]
    assert "could not connect" in (outcomes[0].reason or "")
    assert (outcomes[1].reason or "").startswith("not sent: could not connect")


# --- reply classes (RFC 5321 §4.2.1) --------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("rcpt", "data", "expected", "code"),
    [
        (
            {
                "sales@example.com": "450 4.2.1 Mailbox busy",
                "support@example.com": "450 4.2.1 Busy",
                "audit@example.com": "451 4.3.0 Later",
            },
            None,
            "retry",
            450,
        ),
        (
            {
                "sales@example.com": "550 5.1.1 No such user",
                "support@example.com": "550 5.1.1 No such user",
                "audit@example.com": "553 5.1.3 Bad address",
            },
            None,
            "failed",
            550,
        ),
        (
            {
                "sales@example.com": "550 5.1.1 No such user",
                "support@example.com": "451 4.3.0 Later",
                "audit@example.com": "550 5.1.1 No such user",
            },
            None,
            "retry",
            451,
        ),
        ({}, "451 4.3.0 Temporary local problem", "retry", 451),
        ({}, "452 4.3.1 Insufficient system storage", "retry", 452),
        ({}, "554 5.7.1 Rejected as spam", "failed", 554),
        ({}, "552 5.3.4 Message too big", "failed", 552),
    ],
)
async def test_server_replies_are_classified(
    rcpt: dict[str, str], data: str | None, expected: str, code: int
) -> None:
    with smtp_server() as (port, mailbox):
        mailbox.rcpt_reply = rcpt
        mailbox.data_replies = [data] if data else []
        [outcome] = await deliver([item()], config(port))
    assert (outcome.status, outcome.status_code) == (expected, code), outcome.reason
    assert str(code) in (outcome.reason or "")


@pytest.mark.anyio
async def test_some_recipients_refused_is_delivered_to_the_rest() -> None:
    with smtp_server() as (port, mailbox):
        mailbox.rcpt_reply = {"audit@example.com": "550 5.1.1 No such user"}
        [outcome] = await deliver([item()], config(port))
    # Retrying would send the accepted recipients a second copy.
    assert outcome.status == "delivered"
    assert outcome.reason == "accepted, but 1 of 3 recipients refused (550)"
    assert mailbox.envelopes[0].rcpt_tos == ["sales@example.com", "support@example.com"]


@pytest.mark.anyio
async def test_a_refusal_mid_batch_reconnects_for_the_next_message() -> None:
    with smtp_server() as (port, mailbox):
        mailbox.data_replies = ["554 5.7.1 Rejected"]
        outcomes = await deliver([item(1), item(2)], config(port))
    assert [o.status for o in outcomes] == ["failed", "delivered"]
    assert [m["X-Hookhub-Submission"] for m in mailbox.messages()] == ["sub_0002"]


# --- test-route injection and exceptions without a server -----------------------------------------


def unreachable() -> SmtpConfig:
    return config(host="smtp.invalid", security="starttls", port=587, username=USER, password=PASSWORD)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_injected_sender_receives_the_message_and_nothing_connects(kind: str) -> None:
    sent: list[EmailMessage] = []

    def record(message: EmailMessage) -> None:
        sent.append(message)

    async def record_async(message: EmailMessage) -> None:
        sent.append(message)

    function = record if kind == "sync" else record_async
    [outcome] = await deliver([item()], unreachable(), extra={"smtp_send": function})
    assert outcome.status == "delivered"
    [message] = sent
    assert message["Message-ID"] == MESSAGE_ID
    assert message["Bcc"] == "audit@example.com"  # shown by test-route; aiosmtplib never transmits it
    assert bodies(message) == (EXPECTED_TEXT, EXPECTED_HTML)
    assert PASSWORD not in message.as_string()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("error", "expected", "code", "words"),
    [
        (aiosmtplib.SMTPServerDisconnected("Connection lost"), "retry", None, "may arrive twice"),
        (aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"), "retry", None, "twice"),
        (aiosmtplib.SMTPDataError(451, "4.4.2 Timeout"), "retry", 451, "temporary"),
        (
            aiosmtplib.SMTPSenderRefused(553, "5.7.1 Sender not allowed", "forms@hookhub.example"),
            "failed",
            553,
            "refused the message",
        ),
        (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"), "failed", None, "SMTPUTF8"),
        (aiosmtplib.SMTPResponseException(-1, "Malformed SMTP response line"), "failed", None, "Malformed"),
        (ConnectionResetError("reset by peer"), "retry", None, "twice"),
    ],
)
async def test_send_exceptions_are_outcomes_not_crashes(
    error: Exception, expected: str, code: int | None, words: str
) -> None:
    def fail(message: EmailMessage) -> None:
        raise error

    [outcome] = await deliver([item()], unreachable(), extra={"smtp_send": fail})
    assert (outcome.status, outcome.status_code) == (expected, code), outcome.reason
    assert words in (outcome.reason or "")


def test_test_route_renders_every_email_destination_unsent_and_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.cli import main as cli
    from tests.harness import PROVIDER_FIXTURES

    path = tmp_path / "connectors.yaml"
    path.write_text(
        "sources:\n  contact-form: {provider: typeform, secret: x}\n"
        "destinations:\n"
        f"  mail: {{type: smtp, host: smtp.invalid, username: {USER}, password: {PASSWORD},"
        " from: forms@hookhub.example, to: [sales@example.com]}\n"
        "  sg: {type: sendgrid, api_key: SG.sendgrid-secret-key, from: forms@hookhub.example,"
        " to: [s@example.com]}\n"
        "  pm: {type: postmark, server_token: postmark-secret-token, from: forms@hookhub.example,"
        " to: [s@example.com]}\n"
        "routes:\n  - name: leads\n    from: [contact-form]\n"
        "    to: [mail, sg, {destination: pm, map: {subject: 'Lead: {{ name }}'}}]\n",
        encoding="utf-8",
    )
    fixture = PROVIDER_FIXTURES / "typeform" / "full_event_registration.json"
    assert cli(["test-route", "leads", "--fixture", str(fixture), "--config", str(path)]) == 0
    out = capsys.readouterr().out
    for secret in (PASSWORD, "sendgrid-secret-key", "postmark-secret-token"):
        assert secret not in out
    mail = out.split("=== mail (smtp) — not sent\n", 1)[1].split("=== sg", 1)[0]
    assert f"Message-ID: {message_id_of('test-route.mail')}" in mail
    assert "Content-Type: text/html" in mail and "Content-Type: text/plain" in mail
    assert "POST https://api.sendgrid.com/v3/mail/send" in out
    assert "POST https://api.postmarkapp.com/email" in out and '"Subject": "Lead: Ren' in out


# --- pacing on virtual time --------------------------------------------------------------------


@pytest.mark.anyio
async def test_max_per_minute_spaces_messages_across_deliveries() -> None:
    pacer, vt = fake_pacer()
    sent_at: list[float] = []

    def record(message: EmailMessage) -> None:
        sent_at.append(vt.now)

    cfg = unreachable().model_copy(update={"max_per_minute": 30})

    http = respx_sender()
    context = DeliveryContext(http=http, pacer=pacer, extra={"smtp_send": record})
    dest = SmtpDestination(wall_clock=lambda: NOW)
    # Two tasks sending through the same account at once share its budget: one message every
    # 2 s. The third turn is then 4 s away, more than a task waits for (INLINE_TURNS_SECONDS):
    # that message is handed back, due at that turn, and counts as no attempt.
    first, second = await asyncio.gather(
        dest.deliver([item(1), item(2)], cfg, context), dest.deliver([item(3)], cfg, context)
    )
    assert sorted(sent_at) == [1000.0, 1002.0]
    [handed_back] = [o for o in first + second if o.status != "delivered"]
    assert handed_back.deferred and handed_back.retry_after is not None
    assert handed_back.retry_after == pytest.approx(4.0)  # handed back at 1000: due at 1004


@pytest.mark.anyio
async def test_421_pauses_the_account_and_the_rest_is_handed_back() -> None:
    pacer, vt = fake_pacer()
    calls: list[str] = []

    def busy_then_ok(message: EmailMessage) -> None:
        calls.append(message["X-Hookhub-Submission"])
        if len(calls) == 1:
            raise aiosmtplib.SMTPDataError(421, "4.7.0 Too many messages, slow down")

    cfg = unreachable()
    outcomes = await deliver([item(1), item(2)], cfg, pacer, extra={"smtp_send": busy_then_ok})
    key = account_key("smtp", f"smtp.invalid:587:{USER}")
    assert [o.status for o in outcomes] == ["retry", "retry"]
    assert outcomes[0].status_code == 421
    assert outcomes[1].retry_after == BUSY_PAUSE and "not sent" in (outcomes[1].reason or "")
    assert calls == ["sub_0001"]
    assert pacer.paused_for(key) == BUSY_PAUSE
    vt.now += BUSY_PAUSE
    later = await deliver([item(2)], cfg, pacer, extra={"smtp_send": busy_then_ok})
    assert later[0].status == "delivered"


# --- mapping and templates ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_mapping_error_fails_only_that_item() -> None:
    sent: list[EmailMessage] = []
    broken = item(1, mapping={"subject": "{{ answers['Company'] | nosuchfilter }}"})
    undefined = item(2, template="Hello {{ nobody }}")
    bad_to = item(3, mapping={"to": "{{ answers['Company'] }}"})
    fine = item(4, mapping={"subject": "Lead: {{ answers['Company'] }}", "to": "{{ 'boss@example.com' }}"})
    arithmetic = item(5, mapping={"subject": "{{ answers['Company'] + 1 }}"})
    outcomes = await deliver(
        [broken, undefined, bad_to, fine, arithmetic], unreachable(), extra={"smtp_send": sent.append}
    )
    assert [o.status for o in outcomes] == ["failed", "failed", "failed", "delivered", "failed"]
    assert (outcomes[4].reason or "").startswith("map.subject: cannot render: TypeError: ")
    assert outcomes[0].reason == "map.subject: cannot render line 1: No filter named 'nosuchfilter'."
    assert outcomes[1].reason == "template: cannot render: 'nobody' is undefined"
    assert outcomes[2].reason == (
        "map.to: the value 'Engines & Co <Ltd>' from the submission holds white "
        "space; a value from a submission must stay within one address, so "
        "nothing was sent"
    )
    [message] = sent
    assert message["Subject"] == "Lead: Engines & Co <Ltd>"
    assert message["To"] == "boss@example.com"
    assert message["Cc"] == "Support Team <support@example.com>"  # keys the map leaves out keep the config's


@pytest.mark.anyio
async def test_route_template_replaces_both_bodies_and_stays_escaped_in_html() -> None:
    sent: list[EmailMessage] = []
    route_item = item(template="{{ name }} wrote: {{ answers['Company'] }}\n")
    await deliver([route_item], unreachable(), extra={"smtp_send": sent.append})
    text, html = bodies(sent[0])
    assert text == "Ada Lovelace wrote: Engines & Co <Ltd>\n"
    assert "<pre" in html and "Ada Lovelace wrote: Engines &amp; Co &lt;Ltd&gt;" in html


@pytest.mark.anyio
async def test_header_injection_and_markup_in_answers_are_neutralised() -> None:
    sent: list[EmailMessage] = []
    evil = make_submission(
        name="Eve\r\nBcc: victim@example.com",
        form_title="Hi\nX-Evil: 1",
        answers=[{"key": "k", "label": "<b>x</b>", "type": "t", "value": "<script>alert(1)</script>"}],
    )
    await deliver([item(submission=evil)], unreachable(), extra={"smtp_send": sent.append})
    [message] = sent
    assert message["Subject"] == "New submission: Hi X-Evil: 1 from Eve Bcc: victim@example.com"
    assert message["X-Evil"] is None and message["Bcc"] == "audit@example.com"
    _, html = bodies(message)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>x</b>" not in html


@pytest.mark.anyio
async def test_reply_to_is_left_out_when_the_respondent_gave_no_usable_address() -> None:
    sent: list[EmailMessage] = []
    await deliver(
        [item(submission=make_submission(email="not-an-address"))],
        unreachable(),
        extra={"smtp_send": sent.append},
    )
    assert sent[0]["Reply-To"] is None


# --- config, registry, secrecy ------------------------------------------------------------------


def test_registered_as_smtp() -> None:
    assert isinstance(get_destination("smtp"), SmtpDestination)


def test_defaults() -> None:
    cfg = SmtpConfig.model_validate(
        {
            "type": "smtp",
            "host": "smtp.example.com",
            "from": "f@example.com",
            "to": ["{{ answers['Team'] }}@example.com"],
        }
    )
    assert (cfg.security, cfg.effective_port, cfg.timeout, cfg.html) == ("starttls", 587, 30.0, True)
    assert cfg.model_copy(update={"security": "tls"}).effective_port == 465
    assert get_destination("smtp").check(cfg) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"host": "smtp://mail.example.com"}, "must be a host name"),
        ({"security": "ssl"}, "Input should be 'starttls', 'tls' or 'none'"),
        ({"username": USER}, "username and password go together"),
        (
            {"username": USER, "password": PASSWORD, "security": "none", "host": "mail.example.com"},
            "would send the password in clear",
        ),
        ({"from": "forms"}, "must be one e-mail address"),
        ({"to": ["sales@example.com, ada@"]}, "'ada@' is not an e-mail address"),
        ({"to": []}, "at least 1 item"),
        ({"map": {"firstname": "{{ name }}"}}, "unknown e-mail field 'firstname'"),
        ({"port": 0}, "greater than or equal to 1"),
        ({"passwrd": PASSWORD}, "Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_rejected_without_echoing_secrets(changes: dict[str, Any], message: str) -> None:
    data = {
        "type": "smtp",
        "host": "smtp.example.com",
        "username": USER,
        "password": PASSWORD,
        "from": "forms@example.com",
        "to": ["sales@example.com"],
    }
    data.update(changes)
    if changes.get("username") == USER and "password" not in changes:
        data.pop("password")
    with pytest.raises(ValidationError) as caught:
        SmtpConfig.model_validate(data)
    assert message in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_password_with_none_is_fine_on_loopback_and_hidden_in_repr() -> None:
    cfg = config(username=USER, password=PASSWORD)
    assert PASSWORD not in repr(cfg) and PASSWORD not in str(cfg.model_dump())


def test_loader_reports_config_and_template_problems(tmp_path: Path) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(
        "destinations:\n"
        "  a:\n    type: smtp\n    host: smtp.example.com\n"
        "    from: forms@example.com\n    to: [x@example.com]\n"
        "    subject: '{{ name '\n    html_template: '{% if %}'\n"
        "    map:\n      reply_to: '{{ email | nope }}'\n"
        f"  b:\n    type: smtp\n    host: mail.example.com\n    security: none\n    username: u\n"
        f"    password: {PASSWORD}\n    from: forms@example.com\n    to: [x@example.com]\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    problems = "\n".join(str(p) for p in caught.value.problems)
    assert "destinations.a: subject: unexpected end of template" in problems
    assert "destinations.a: html_template: Expected an expression" in problems
    assert "destinations.a: map.reply_to: No filter named 'nope'" in problems
    assert "destinations.b: security: none would send the password in clear" in problems
    assert PASSWORD not in problems


@pytest.mark.anyio
async def test_route_templates_for_email_pass_hookhub_check(tmp_path: Path) -> None:
    from hub.config.check import check_file

    path = tmp_path / "connectors.yaml"
    path.write_text(
        "sources:\n  a: {provider: typeform, secret: x}\n"
        "destinations:\n"
        "  mail: {type: smtp, host: smtp.example.com, from: f@example.com, to: [t@example.com]}\n"
        "routes:\n  - name: r\n    from: [a]\n    to:\n      - destination: mail\n"
        '        template: "{% for a in answer_list %}{{ a.label }}: '
        '{{ a.text | indent(2) }}\\n{% endfor %}"\n'
        '        map: {subject: "{{ title }}: {{ name | first_name }}"}\n',
        encoding="utf-8",
    )
    code, text = check_file(path)
    assert code == 0, text
    sent: list[EmailMessage] = []
    template = "{% for a in answer_list %}{{ a.label }}: {{ a.text | indent(2) }}\n{% endfor %}"
    await deliver(
        [item(template=template, mapping={"subject": "{{ title }}: {{ name | first_name }}"})],
        unreachable(),
        extra={"smtp_send": sent.append},
    )
    assert sent[0]["Subject"] == "Contact us: Ada"
    assert bodies(sent[0])[0] == (
        "Company: Engines & Co <Ltd>\nTopics: Sales, Support\nMessage: Hello,\n  please call me.\n"
        "Newsletter: Yes\nComments: (no answer)\n"
    )


@pytest.mark.anyio
async def test_logs_carry_facts_but_no_secret_or_personal_data() -> None:
    with (
        smtp_server(auth_require_tls=False, authenticator=Logins()) as (port, mailbox),
        captured_logs("hookhub.destinations.smtp") as records,
    ):
        mailbox.data_replies = ["554 5.7.1 Rejected as spam for ada@example.com"]
        await deliver([item(1), item(2)], config(port, username=USER, password=PASSWORD, security="none"))
    assert records
    text = dumped(records)
    for secret in (PASSWORD, *PERSONAL, "Rejected as spam", EXPECTED_SUBJECT):
        assert secret not in text
    assert [(r.outcome, r.status_code) for r in records if hasattr(r, "outcome")] == [
        ("failed", 554),
        ("delivered", None),
    ]
