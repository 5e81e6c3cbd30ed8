"""Ways `smtp` hands a message over (a helper, not a destination type).

`SmtpSession` keeps one aiosmtplib connection per `deliver` call, opened on the first message and
reused for the rest of the batch (connect, TLS and AUTH cost several round trips each); after
any error it is dropped and the next message reconnects. `InjectedSender` calls a function
instead (`hookhub test-route` records messages that way). Facts: aiosmtplib's documentation
(https://github.com/cole/aiosmtplib/blob/main/docs/usage.rst), as docs/destinations/smtp.md cites it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, Protocol

import aiosmtplib


class ConnectFailed(Exception):
    """Connecting, the TLS upgrade or AUTH failed: no message was handed over on this attempt."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Sender(Protocol):
    async def send(self, message: EmailMessage, sender: str, recipients: list[str]) -> dict[str, Any]:
        """Hand `message` over; the recipients the server refused (empty when all were taken)."""

    async def close(self) -> None: ...


class InjectedSender:
    """Calls `function(message)`, awaiting it when it returns an awaitable."""

    def __init__(self, function: Callable[[EmailMessage], Any]) -> None:
        self._function = function

    async def send(self, message: EmailMessage, sender: str, recipients: list[str]) -> dict[str, Any]:
        result = self._function(message)
        if inspect.isawaitable(result):
            await result
        return {}

    async def close(self) -> None:
        return None


class SmtpSession:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str,
        username: str | None,
        password: str | None,
        cert_bundle: str | None,
        timeout: float,
    ) -> None:
        self._options: dict[str, Any] = {
            "hostname": host,
            "port": port,
            "use_tls": security == "tls",
            # True: STARTTLS or fail (never AUTH in clear); False for `tls` (already) and `none`.
            "start_tls": security == "starttls",
            "username": username,
            "password": password,
            "cert_bundle": cert_bundle,
            "timeout": timeout,
        }
        self._timeout = timeout
        self._smtp: aiosmtplib.SMTP | None = None

    async def send(self, message: EmailMessage, sender: str, recipients: list[str]) -> dict[str, Any]:
        smtp = await self._connected()
        try:
            async with asyncio.timeout(self._timeout):
                refused, _reply = await smtp.send_message(message, sender=sender, recipients=recipients)
        except BaseException:
            # The session state is unknown after an error; the next message starts a fresh one.
            self._drop()
            raise
        return dict(refused)

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        self._drop()
        smtp = aiosmtplib.SMTP(**self._options)
        try:
            async with asyncio.timeout(self._timeout):
                await smtp.connect()  # greeting, EHLO, STARTTLS and AUTH as configured
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            smtp.close()
            raise ConnectFailed(exc) from None
        self._smtp = smtp
        return smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    async def close(self) -> None:
        if self._smtp is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._smtp.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass  # everything was handed over already; a rude goodbye loses nothing
        finally:
            self._drop()
