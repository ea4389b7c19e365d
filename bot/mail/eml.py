"""Writes emails as .eml files into a folder: the rehearsal transport (the console, or `coffeebot
run` without SMTP_URL, which says so at start), needing no mail server.

Each file is named by its outbox key, never by a name or an address, and readable by the bot's
user only (folder 0700, files 0600). A file goes when its outbox row goes (the person's erasure)
and, once a real mail server is configured, when that server took the email over."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from email.message import Message
from pathlib import Path
from urllib.parse import quote, unquote

log = logging.getLogger(__name__)

SUFFIX = ".eml"


class EmlFolder:
    """The folder of .eml files, one per outbox key."""

    def __init__(self, folder: str) -> None:
        self.path = Path(folder)

    def file_for(self, key: str) -> Path:
        # Outbox keys are ids, tickets and hashes ("confirmation:42:…"); anything else is quoted.
        return self.path / f"{quote(key, safe=':')}{SUFFIX}"

    def open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.path.chmod(0o700)

    def write(self, key: str, message: Message) -> Path:
        """Writes the email whole or not at all: a retry of the same key replaces it."""
        path = self.file_for(key)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(bytes(as_8bit(message)))
        os.replace(draft, path)
        return path

    def forget(self, keys: Iterable[str]) -> int:
        """Deletes the files of these outbox keys; returns how many there were."""
        gone = 0
        for key in keys:
            try:
                self.file_for(key).unlink()
                gone += 1
            except FileNotFoundError:
                pass
        return gone

    async def sweep(self, kept: Callable[[list[str]], Awaitable[set[str]]]) -> int:
        """Deletes the files whose outbox row is gone (an erasure deleted it); `kept` says which
        of the keys it is given still have one."""
        if not self.path.is_dir():
            return 0
        keys = [unquote(path.name[: -len(SUFFIX)]) for path in self.path.glob(f"*{SUFFIX}")]
        gone = 0
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            still = await kept(chunk)
            gone += self.forget(key for key in chunk if key not in still)
        if gone:
            log.info("deleted %d .eml files of erased people", gone)
        return gone


class EmlFileTransport:
    def __init__(self, folder: EmlFolder) -> None:
        self.folder = folder

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[EmlFileTransport]:
        self.folder.open()
        yield self

    async def send(self, key: str, message: Message) -> None:
        path = self.folder.write(key, message)
        # The key only: no name or address in the log.
        log.info("email %s written to %s", key, path)


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
