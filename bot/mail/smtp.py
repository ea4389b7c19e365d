"""Sends emails over SMTP with aiosmtplib, one connection for a whole batch. A failure keeps the
server's code and the error's class, not the server's words (which quote the recipient)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import Message
from email.policy import SMTPUTF8
from email.utils import parseaddr
from urllib.parse import unquote, urlsplit

import aiosmtplib

from bot.mail.emails import MAIL_POLICY
from bot.mail.sender import PermanentMailError, TransientMailError


class SmtpTransport:
    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"SMTP_URL {url!r}: use smtp://user:pass@host:587 or smtps://…:465")
        self._implicit_tls = parts.scheme == "smtps"
        self._host = parts.hostname
        self._port = parts.port or (465 if self._implicit_tls else 587)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._timeout = timeout

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[SmtpConnection]:
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            use_tls=self._implicit_tls,
            # A password never travels in clear: STARTTLS is then required, else only used
            # when the server offers it.
            start_tls=None if self._implicit_tls or not self._username else True,
            username=self._username,
            password=self._password,
            timeout=self._timeout,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as error:
            raise TransientMailError(None, error) from error
        try:
            yield SmtpConnection(client)
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()


class SmtpConnection:
    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self._client = client

    async def send(self, key: str, message: Message) -> None:
        sender, recipient = parseaddr(str(message["From"]))[1], str(message["To"])
        # An address with non-ASCII characters travels as UTF-8, which the server must accept
        # (SMTPUTF8); anything else as 7-bit MIME, which every server takes.
        international = not (sender + recipient).isascii()
        content = message.as_bytes(policy=SMTPUTF8 if international else MAIL_POLICY)
        try:
            await self._client.sendmail(
                sender, [recipient], content, mail_options=["SMTPUTF8"] if international else []
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refusal.code for refusal in error.recipients]
            failure = (
                TransientMailError
                if any(400 <= code < 500 for code in codes)
                else PermanentMailError
            )
            raise failure(codes[0] if codes else None, error) from error
        except aiosmtplib.SMTPResponseException as error:
            failure = TransientMailError if 400 <= error.code < 500 else PermanentMailError
            raise failure(error.code, error) from error
        except (aiosmtplib.SMTPException, OSError) as error:
            raise TransientMailError(None, error) from error
