"""Turns an outbox entry into an email: Jinja2 templates with a text and an HTML part, in the
recipient's language, with an unsubscribe link and a List-Unsubscribe header."""

from __future__ import annotations

import hashlib
from email.charset import QP, Charset
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, parseaddr

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateNotFound, select_autoescape

from conversations.catalogue import Catalogue
from storage.ports import OutboxEmail

# Quoted-printable rather than Python's default base64 for UTF-8: the parts stay readable in
# the raw message (a code, a link), and every SMTP server accepts it.
UTF8_QUOTED_PRINTABLE = Charset("utf-8")
UTF8_QUOTED_PRINTABLE.body_encoding = QP


class EmailRenderer:
    def __init__(self, texts: Catalogue, mail_from: str, bot_username: str) -> None:
        self._texts = texts
        self._mail_from = mail_from
        self._bot = f"https://t.me/{bot_username}"
        self._templates = Environment(
            loader=PackageLoader("conversations", "texts/emails"),
            # HTML parts are escaped; text parts are plain text and need no escaping.
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )

    def _links(self, email: OutboxEmail) -> tuple[str, str]:
        """The email's main link and its unsubscribe link, both deep links into the bot."""
        unsubscribe = f"{self._bot}?start=unsubscribe"
        if email.kind == "confirmation":
            return f"{self._bot}?start=c_{email.params['token']}", unsubscribe
        if email.kind == "invitation":
            code, hashed = email.params["referral_code"], email.params["address_hash"]
            return f"{self._bot}?start=r_{code}", f"{self._bot}?start=u_{hashed}"
        return self._bot, unsubscribe

    def _render(self, kind: str, language: str, part: str, values: dict[str, str]) -> str:
        try:
            template = self._templates.get_template(f"{kind}.{language}.{part}")
        except TemplateNotFound:
            template = self._templates.get_template(f"{kind}.{self._texts.default_language}.{part}")
        return template.render(values)

    def render(self, email: OutboxEmail) -> Message:
        link, unsubscribe = self._links(email)
        values = {**self._texts.constants, **email.params, "link": link, "unsubscribe": unsubscribe}
        first_name = email.params.get("first_name", "")
        # The classic MIME classes: building with email.policy.default parses every header,
        # which made rendering six times slower. Non-ASCII values are encoded when flattened.
        message = MIMEMultipart("alternative")
        message["From"] = formataddr(parseaddr(self._mail_from), charset="utf-8")
        message["To"] = email.recipient
        message["Subject"] = self._texts.render(
            email.language, f"email.{email.kind}.subject", first_name=first_name
        )
        message["Date"] = formatdate(usegmt=True)
        # Derived from the idempotency key: a receiving server can drop a resent copy.
        domain = parseaddr(self._mail_from)[1].rpartition("@")[2] or "localhost"
        message["Message-ID"] = f"<{hashlib.sha256(email.key.encode()).hexdigest()[:32]}@{domain}>"
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        text = self._render(email.kind, email.language, "txt", values)
        html = self._render(email.kind, email.language, "html", values)
        message.attach(MIMEText(text, "plain", UTF8_QUOTED_PRINTABLE))  # type: ignore[arg-type]
        message.attach(MIMEText(html, "html", UTF8_QUOTED_PRINTABLE))  # type: ignore[arg-type]
        return message
