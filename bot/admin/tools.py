"""What every admin command borrows: the wording, replies to admins, the audit log, dates in
full, long lists split for Telegram, reasons typed in either language."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Protocol

from bot.settings import Settings
from conversations.catalogue import Catalogue
from conversations.dates import long_datetime
from conversations.expenses import ReceiptKind
from conversations.model import Reply
from storage import Storage

# The Telegram update of the admin command being run, for a one-time action (a payment) to
# record with it: the same update delivered again (a crash before Telegram had its answer)
# then acts once, however late it comes. None outside a command.
COMMAND_UPDATE: ContextVar[int | None] = ContextVar("command_update", default=None)

# An admin command: (admin's id, their language, what they typed after the command).
AdminCommand = Callable[[int, str, str], Awaitable[None]]
# An admin's button: (admin's id, their language).
AdminButton = Callable[[int, str], Awaitable[None]]


class Messenger(Protocol):
    """Sends to any chat: an admin's, or a winner's."""

    async def send(self, chat_id: int, reply: Reply) -> None: ...

    async def send_document(
        self, chat_id: int, filename: str, content: bytes, caption: str
    ) -> None: ...

    async def send_photo(self, chat_id: int, content: bytes, caption: str) -> None: ...

    async def send_receipt(
        self, chat_id: int, file_id: str, kind: ReceiptKind, caption: str
    ) -> None: ...


class AdminJob:
    """One of the admin's jobs: the commands (every name it answers to, French and English)
    and the buttons it owns. The admin service registers each job once."""

    def commands(self) -> Mapping[str, AdminCommand]:
        return {}

    def buttons(self) -> Mapping[str, AdminButton]:
        return {}


class AdminTools:
    def __init__(
        self,
        storage: Storage,
        texts: Catalogue,
        settings: Settings,
        clock: Callable[[], datetime],
        messenger: Messenger,
    ) -> None:
        self.storage = storage
        self.texts = texts
        self.settings = settings
        self.clock = clock
        self.messenger = messenger

    def say(self, language: str, key: str, **params: str) -> str:
        return self.texts.render(language, key, **params)

    async def reply(self, chat_id: int, language: str, key: str, **params: str) -> None:
        await self.messenger.send(chat_id, Reply(self.say(language, key, **params)))

    async def tell_admins(self, key: str, **params: str) -> None:
        for admin_id in sorted(self.settings.admin_ids):
            await self.reply(admin_id, self.texts.default_language, key, **params)

    async def audit(
        self, admin_id: int, action: str, details: str, note: str = "", ticket: str | None = None
    ) -> None:
        """`note`: what the admin typed freely about `ticket`, erasable (storage/audit_log.py)."""
        await self.storage.audit.log(admin_id, action, details, self.clock(), note, ticket)

    def local(self, moment: datetime, language: str | None = None) -> str:
        """A moment in full, in the meeting's zone, naming it."""
        chosen = language or self.texts.default_language
        return long_datetime(self.texts, chosen, moment, self.settings.zone)

    def reason(self, language: str, word: str, allowed: tuple[str, ...], kind: str) -> str | None:
        """The reason an admin typed, as its code or as its name in their language."""
        typed = word.casefold()
        for code in allowed:
            if typed in (code, self.say(language, f"{kind}.{code}").casefold()):
                return code
        return None

    def reasons(self, language: str, allowed: tuple[str, ...], kind: str) -> str:
        return ", ".join(self.say(language, f"{kind}.{code}") for code in allowed)

    async def send_lines(
        self, chat_id: int, language: str, title_key: str, lines: list[str]
    ) -> None:
        """Sends a title and lines, split under Telegram's 4,096 characters a message."""
        message = self.say(language, title_key) + "\n"
        if not lines:
            message += self.say(language, "admin.empty")
        for line in lines:
            if len(message) + len(line) + 1 > 4000:
                await self.messenger.send(chat_id, Reply(message))
                message = ""
            message += line[:3900] + "\n"
        await self.messenger.send(chat_id, Reply(message.rstrip()))
