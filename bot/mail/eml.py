"""Writes emails as .eml files into a folder, so the default set-up needs no mail server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

log = logging.getLogger(__name__)


class EmlFileTransport:
    def __init__(self, folder: str) -> None:
        self._folder = Path(folder)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[EmlFileTransport]:
        self._folder.mkdir(parents=True, exist_ok=True)
        yield self

    async def send(self, message: Message) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        message_id = str(message["Message-ID"]).strip("<>").split("@")[0]
        path = self._folder / f"{stamp}-{message_id}.eml"
        path.write_bytes(bytes(as_8bit(message)))
        # Not the recipient: no personal data in the log.
        log.info("email %r written to %s", str(message["Subject"]), path)


def as_8bit(message: Message) -> Message:
    """The text parts as plain UTF-8 (8bit), so that `cat` shows the file as a person reads it;
    a file is no SMTP hop, which is what the transfer encodings are for."""
    for part in message.walk():
        charset = part.get_content_charset()
        if part.get_content_maintype() != "text" or charset is None:
            continue
        raw = part.get_payload(decode=True)
        assert isinstance(raw, bytes)
        # The email package keeps 8bit payloads as str, each byte escaped as a surrogate.
        part.set_payload(raw.decode("ascii", "surrogateescape"))
        del part["Content-Transfer-Encoding"]
        part["Content-Transfer-Encoding"] = "8bit"
    return message
