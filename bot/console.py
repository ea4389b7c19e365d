"""The terminal adapter: the same conversation, read from stdin line by line.

Buttons are printed as numbered choices: type the number or the label. `/contact +336…`
stands for sharing one's own phone number.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from bot.app import build_mailer, open_migrated_store
from bot.service import ConversationService, Incoming
from bot.settings import Settings
from bot.texts import load_catalogue
from conversations.model import Button, Command, Input, Press, Profile, Reply, SharedContact, Text

# Links in emails written from the console point here unless TELEGRAM_BOT_USERNAME is set.
CONSOLE_BOT_USERNAME = "coffeebot"


class ConsoleOutbound:
    """Prints replies, and remembers the last buttons so that a number or label can press one."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.choices: list[Button] = []

    async def send(self, reply: Reply) -> None:
        lines = [reply.text]
        buttons = [button for row in reply.buttons for button in row]
        self.choices = buttons
        lines += [f"  [{number}] {button.label}" for number, button in enumerate(buttons, 1)]
        if reply.contact_button:
            lines.append(f"  [/contact +33…] {reply.contact_button}")
        self._out.write("\n".join(lines) + "\n\n")
        self._out.flush()

    async def send_document(self, filename: str, content: bytes, caption: str) -> None:
        self._out.write(f"{caption} ({filename})\n{content.decode()}\n\n")
        self._out.flush()

    def read(self, line: str) -> Input | None:
        text = line.rstrip("\r\n")
        stripped = text.strip()
        if not stripped:
            return None
        if stripped.startswith("/contact"):
            return SharedContact(stripped.removeprefix("/contact").strip(), is_own=True)
        if stripped.startswith("/"):
            head, _, argument = stripped.partition(" ")
            return Command(head[1:].lower(), argument.strip())
        if stripped.isdigit() and 1 <= int(stripped) <= len(self.choices):
            return Press(self.choices[int(stripped) - 1].key)
        for button in self.choices:
            if stripped.casefold() == button.label.casefold():
                return Press(button.key)
        return Text(text)


async def run_console(
    settings: Settings,
    profile: Profile,
    user_id: int,
    stdin: TextIO,
    stdout: TextIO,
    clock: Callable[[], datetime],
) -> None:
    """Runs the conversation for one user until the end of input."""
    store = await open_migrated_store(settings, clock)
    try:
        texts = load_catalogue(settings)
        username = settings.telegram_bot_username or CONSOLE_BOT_USERNAME
        mailer = build_mailer(settings, store, texts, username, clock)
        service = ConversationService(store, texts, settings, clock, username, mailer.wake)
        outbound = ConsoleOutbound(stdout)
        while line := await asyncio.to_thread(stdin.readline):
            event = outbound.read(line)
            if event is not None:
                await service.handle(Incoming(user_id, profile, event), outbound)
                # One person at a time here: send what this line queued before reading the next.
                await mailer.send_due()
    finally:
        await store.close()
