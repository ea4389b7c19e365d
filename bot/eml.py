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
        path.write_bytes(bytes(message))
        log.info("email %r to %s written to %s", str(message["Subject"]), message["To"], path)
