"""Turns an outbox entry into an email: Jinja2 templates with a text and an HTML part, in the
recipient's language, with an unsubscribe link and a List-Unsubscribe header."""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Callable
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import formataddr, formatdate, parseaddr

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateNotFound, select_autoescape

from conversations.catalogue import Catalogue
from storage.ports import OutboxEmail

# Quoted-printable rather than Python's default base64 for UTF-8: the parts stay readable in
# the raw message (a code, a link), and every SMTP server accepts it.
UTF8_QUOTED_PRINTABLE = Charset("utf-8")
UTF8_QUOTED_PRINTABLE.body_encoding = QP


class _Compat32(Compat32):
    """compat32, writing a header that fits on its line as it is: compat32 passes every header
    through `email.header.Header`, which folded each one to the same text at a third of an
    email's CPU. Anything longer, non-ASCII or already folded takes compat32's way."""

    def fold_binary(self, name: str, value: str) -> bytes:
        if (
            isinstance(value, str)
            and value.isascii()
            and len(name) + 2 + len(value) <= (self.max_line_length or 0)
            and value.isprintable()
            and value == value.lstrip(" \t")
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


# The emails' policy: compat32 (the SMTP path and the .eml files write with it), faster.
MAIL_POLICY = _Compat32()


class EmailRenderer:
    def __init__(
        self,
        texts: Catalogue,
        mail_from: str,
        bot_username: str,
        one_click: Callable[[str], str] | None = None,
    ) -> None:
        self._texts = texts
        # An email's key -> its https one-click unsubscribe link (RFC 8058), when PUBLIC_URL is set.
        self._one_click = one_click
        self._from = formataddr(parseaddr(mail_from), charset="utf-8")
        self._domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
        self._bot = f"https://t.me/{bot_username}"
        self._templates = Environment(
            loader=PackageLoader("conversations", "texts/emails"),
            # HTML parts are escaped; text parts are plain text and need no escaping.
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            # The templates are the package's own: not checked for changes on every email.
            auto_reload=False,
        )
        # Each subject depends on the language and kind only, and encoding a non-ASCII one
        # (`email`'s "shortest" charset weighs quoted-printable byte by byte) took a fifth of
        # an email's CPU: encoded once, as the generator would have encoded it.
        self._subjects: dict[tuple[str, str], str] = {}

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

    def _subject(self, language: str, kind: str) -> str:
        subject = self._subjects.get((language, kind))
        if subject is None:
            text = self._texts.render(language, f"email.{kind}.subject")
            # As `as_bytes` and `bytes()` (compat32) encode and fold a str header.
            subject = Header(text, header_name="Subject").encode(linesep="\n", maxlinelen=78)
            self._subjects[language, kind] = subject
        return subject

    def render(self, email: OutboxEmail) -> Message:
        link, unsubscribe = self._links(email)
        values = {
            **self._texts.constants_for(email.language),
            **email.params,
            "link": link,
            "unsubscribe": unsubscribe,
        }
        text = self._render(email.kind, email.language, "txt", values)
        html = self._render(email.kind, email.language, "html", values)
        # The classic MIME classes: building with email.policy.default parses every header,
        # which made rendering six times slower. Non-ASCII values are encoded when flattened.
        message = MIMEMultipart("alternative", boundary=_boundary(text, html), policy=MAIL_POLICY)
        message["From"] = self._from
        message["To"] = email.recipient
        # Only the settings' values fill a subject: a name someone typed would let anyone put
        # their own words in the subject of an email the campaign sends to a stranger.
        message["Subject"] = self._subject(email.language, email.kind)
        message["Date"] = formatdate(usegmt=True)
        # Derived from the idempotency key: a receiving server can drop a resent copy.
        key_hash = hashlib.sha256(email.key.encode()).hexdigest()[:32]
        message["Message-ID"] = f"<{key_hash}@{self._domain}>"
        if self._one_click is None:
            message["List-Unsubscribe"] = f"<{unsubscribe}>"
        else:
            # RFC 8058 wants one https URI here, which mailboxes POST to: the deep link into the
            # bot stays in the body.
            message["List-Unsubscribe"] = f"<{self._one_click(email.key)}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        for content, subtype in ((text, "plain"), (html, "html")):
            part = MIMEText(content, subtype, UTF8_QUOTED_PRINTABLE, policy=MAIL_POLICY)  # type: ignore[arg-type]
            message.attach(part)
        return message


def _boundary(*parts: str) -> str:
    """A multipart boundary as `email`'s generator draws one, found in no part. The generator
    checks its own with a regular expression compiled afresh for each email (a tenth of an
    email's CPU); a substring test on the parts' text does the same here."""
    while True:
        boundary = f"{'=' * 15}{random.randrange(sys.maxsize):019d}=="
        if not any(boundary in part for part in parts):
            return boundary
