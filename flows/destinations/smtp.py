"""`smtp`: e-mail each submission through an SMTP server (aiosmtplib).

Sources: aiosmtplib's documentation (SMTP with STARTTLS) and RFC 5321 §4.2.1 for the retry
classes (https://www.rfc-editor.org/rfc/rfc5321#section-4.2.1), both in docs/destinations/smtp.md;
dedupe per docs/destinations/email.md, "Duplicates". Content (subject, text and HTML bodies, recipients,
Reply-To) comes from `_email_render`, shared with `sendgrid` and `postmark`.

- One connection per batch (`_smtp_session`): STARTTLS (`security: starttls`, the default, never
  AUTH in clear), implicit TLS (`tls`) or plain (`none`, credentials only to a loopback host).
- SMTP has no idempotency key: every attempt carries the same Message-ID, derived from the
  delivery key (one per submission and destination), which is also the Outcome's remote_id.
- Replies: 4yz → retry, 5yz → failed (RFC 5321); connect errors and timeouts → retry; a broken
  connection while sending → retry, though the server may have queued the mail (it may arrive
  twice). A failure to connect, upgrade or log in ends the batch: the rest are not attempted
  (so a wrong password is tried once, not once per message). `421` pauses the account.
- `hookhub test-route` injects `context.extra["smtp_send"]`, called with the EmailMessage
  instead of connecting anywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Literal

import aiosmtplib
from pydantic import Field, SecretStr, field_validator, model_validator

from flows.destinations import _http
from flows.destinations._email_render import EmailContent, check_email, render_email
from flows.destinations._email_settings import EmailSettings, Mailbox
from flows.destinations._item_guard import content_failed, send_crashed
from flows.destinations._pause import inline_turns, turn_or_later
from flows.destinations._smtp_session import ConnectFailed, InjectedSender, Sender, SmtpSession
from flows.destinations.base import DeliveryContext, DeliveryItem, Destination, Outcome
from flows.mapping import MappingError
from hub.alerts.email import alert_email
from hub.alerts.model import Alert, AlertNotSent
from hub.sender import Sender as HttpSender

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
BUSY_PAUSE = 60.0
"""421 (service not available) gives no time to wait; hookhub leaves the server alone this long."""


class SmtpConfig(EmailSettings):
    host: str = Field(min_length=1, description="SMTP server host name", examples=["smtp.example.com"])
    port: int | None = Field(
        default=None, ge=1, le=65535, description="default 587, 465 for tls, 25 for none"
    )
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (upgrade, required), tls (implicit, port 465) or none"
    )
    username: str | None = Field(default=None, min_length=1, description="AUTH user name")
    password: SecretStr | None = Field(default=None, description="AUTH password")
    tls_ca_file: str | None = Field(default=None, description="CA bundle to trust instead of the system's")
    max_per_minute: int | None = Field(default=None, ge=1, le=60_000, description="messages per minute")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = value.strip()
        if "://" in value or any(char.isspace() or char in "/@" for char in value):
            raise ValueError("must be a host name such as smtp.example.com (no scheme, port or path)")
        return value

    @model_validator(mode="after")
    def _auth(self) -> SmtpConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: give both or neither")
        if self.password is not None and self.security == "none" and not _http.is_loopback_host(self.host):
            raise ValueError(
                "security: none would send the password in clear; use starttls or tls "
                "(none with credentials is accepted only for localhost / 127.0.0.1 / ::1)"
            )
        return self

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]


class SmtpDestination(Destination[SmtpConfig]):
    type = "smtp"
    Config = SmtpConfig

    def check(self, config: SmtpConfig) -> list[str]:
        return check_email(config)

    async def deliver(
        self, items: list[DeliveryItem], config: SmtpConfig, context: DeliveryContext
    ) -> list[Outcome]:
        pacing_key = _http.account_key(
            "smtp", f"{config.host}:{config.effective_port}:{config.username or ''}"
        )
        sender = _sender(config, context)
        outcomes: list[Outcome] = []
        stop: Outcome | None = None  # a failure to connect or log in, applied to the rest
        interval = 60.0 / config.max_per_minute if config.max_per_minute else 0.0
        try:
            with inline_turns(interval):
                for item in items:
                    try:
                        outcome, ends_session = await self._deliver_one(
                            item, config, context, sender, pacing_key, stop
                        )
                    except Exception as exc:  # noqa: BLE001 - one item's crash must not re-send the others
                        outcome, ends_session = send_crashed(item.key, exc), False
                    if ends_session:
                        stop = outcome
                    outcomes.append(outcome)
        finally:
            await sender.close()
        return outcomes

    async def _deliver_one(
        self,
        item: DeliveryItem,
        config: SmtpConfig,
        context: DeliveryContext,
        sender: Sender,
        pacing_key: str,
        stop: Outcome | None,
    ) -> tuple[Outcome, bool]:
        try:
            content = render_email(config, item, context.record_link(item.submission.id))
            message = build_message(content, self._wall_clock())
        except Exception as exc:  # noqa: BLE001 - whatever this submission does to the templates
            return content_failed(item.key, exc), False
        if stop is not None:
            return stop.model_copy(update={"key": item.key, "reason": f"not sent: {stop.reason}"}), False
        interval = 60.0 / config.max_per_minute if config.max_per_minute else 0.0
        hold = await turn_or_later(context, pacing_key, interval)
        if hold is not None:
            reason = hold.reason("the SMTP server asked to wait (421)")
            deferral = Outcome(
                key=item.key, status="retry", reason=reason, retry_after=hold.seconds, deferred=True
            )
            return deferral, False
        try:
            refused = await sender.send(message, content.sender.address, content.recipients)
        except ConnectFailed as exc:
            return connect_outcome(item.key, exc.cause), True
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            outcome = send_outcome(item.key, exc)
            if outcome.status_code == 421:
                context.pacer.pause(pacing_key, BUSY_PAUSE)
            return outcome, False
        return delivered(item.key, content, refused), False

    carries_alerts = True

    async def send_alert(self, alert: Alert, config: SmtpConfig, sender: HttpSender) -> None:
        """The alert as a plain-text mail (hub/alerts/email.py) over one SMTP session."""
        content = alert_email(config, alert)
        session = _sender(config, DeliveryContext(http=sender, pacer=None))
        try:
            message = build_message(content, self._wall_clock())
            await session.send(message, content.sender.address, content.recipients)
        except ConnectFailed as exc:
            raise AlertNotSent(f"SMTP: {connect_outcome('', exc.cause).reason}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            outcome = send_outcome("", exc)
            raise AlertNotSent(f"SMTP: {outcome.reason}", retry=outcome.status == "retry") from None
        finally:
            await session.close()


def _sender(config: SmtpConfig, context: DeliveryContext) -> Sender:
    injected = context.extra.get("smtp_send")
    if injected is not None:
        return InjectedSender(injected)
    return SmtpSession(
        host=config.host,
        port=config.effective_port,
        security=config.security,
        username=config.username,
        password=config.password.get_secret_value() if config.password else None,
        cert_bundle=config.tls_ca_file,
        timeout=config.timeout,
    )


def _address(mailbox: Mailbox) -> Address:
    return Address(display_name=mailbox.name, addr_spec=mailbox.address)


def build_message(content: EmailContent, now: float) -> EmailMessage:
    """The MIME message: text/plain, plus text/html as an alternative when there is one."""
    message = EmailMessage()
    try:
        message["From"] = _address(content.sender)
        message["To"] = [_address(m) for m in content.to]
        if content.cc:
            message["Cc"] = [_address(m) for m in content.cc]
        if content.bcc:
            message["Bcc"] = [_address(m) for m in content.bcc]  # aiosmtplib never transmits it
        if content.reply_to:
            message["Reply-To"] = _address(content.reply_to)
    except (ValueError, IndexError) as exc:
        raise MappingError(f"to: an address cannot be written into the message ({exc})") from None
    message["Subject"] = content.subject
    message["Date"] = format_datetime(datetime.fromtimestamp(now, UTC), usegmt=True)
    message["Message-ID"] = content.message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies to hookhub
    message["X-Hookhub-Submission"] = content.submission_id
    message.set_content(content.text)
    if content.html is not None:
        message.add_alternative(content.html, subtype="html")
    return message


def _reply(code: int, text: str) -> str:
    return _http.snippet(f"{code} {text}".strip())


def _by_code(key: str, code: int, what: str) -> Outcome:
    if 400 <= code < 500:
        return Outcome(key=key, status="retry", status_code=code, reason=f"{what}; temporary, retrying")
    return Outcome(key=key, status="failed", status_code=code if code > 0 else None, reason=what)


def connect_outcome(key: str, exc: BaseException) -> Outcome:
    """Connecting, STARTTLS or AUTH failed: nothing was sent."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return _by_code(
            key,
            exc.code,
            f"the SMTP server refused the login ({_reply(exc.code, exc.message)}): "
            "check username and password",
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        return _by_code(
            key, exc.code, f"the SMTP server refused the connection ({_reply(exc.code, exc.message)})"
        )
    if isinstance(
        exc,
        (
            aiosmtplib.SMTPConnectError,
            aiosmtplib.SMTPTimeoutError,
            aiosmtplib.SMTPServerDisconnected,
            OSError,
            TimeoutError,
        ),
    ):
        detail = _http.snippet(str(exc)) or type(exc).__name__
        return Outcome(key=key, status="retry", reason=f"could not connect to the SMTP server: {detail}")
    # STARTTLS or AUTH not offered, and the like: the config and the server disagree.
    detail = _http.snippet(str(exc)) or type(exc).__name__
    return Outcome(
        key=key,
        status="failed",
        reason=f"the SMTP server cannot be used as configured: {detail}; "
        "check security, port and credentials",
    )


def send_outcome(key: str, exc: BaseException) -> Outcome:
    """The server refused the message, or the connection broke while handing it over."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        replies = "; ".join(_reply(r.code, r.message) for r in exc.recipients[:3])
        code = next((c for c in codes if 400 <= c < 500), codes[0] if codes else 0)
        return _by_code(key, code, f"the SMTP server refused every recipient ({replies})")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(
            key, exc.code, f"the SMTP server refused the message ({_reply(exc.code, exc.message)})"
        )
    if isinstance(exc, ValueError):  # aiosmtplib refused the message before talking to the server
        return Outcome(key=key, status="failed", reason=f"the message cannot be sent as built: {exc}")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return Outcome(key=key, status="failed", reason=f"the SMTP server cannot take this message: {exc}")
    detail = _http.snippet(str(exc)) or type(exc).__name__
    reason = (
        f"the connection to the SMTP server broke while sending ({detail}); retrying, it may arrive twice"
    )
    return Outcome(key=key, status="retry", reason=reason)


def delivered(key: str, content: EmailContent, refused: dict[str, object]) -> Outcome:
    # Some recipients refused, others took it: a retry would send the others a second copy.
    reason = None
    if refused:
        codes = sorted({str(getattr(r, "code", "?")) for r in refused.values()})
        reason = (
            f"accepted, but {len(refused)} of {len(content.recipients)} recipients refused "
            f"({', '.join(codes)})"
        )
    return Outcome(key=key, status="delivered", reason=reason, remote_id=content.message_id)


destination = SmtpDestination()
