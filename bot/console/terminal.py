"""The terminal adapter: the same conversation, read from stdin line by line.

Buttons are printed as numbered choices: type the number or the label. `/contact +336…`
stands for sharing one's own phone number. The choices stay valid until a message with other
buttons arrives, as on a phone where the last keyboard stays on screen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from bot.bootstrap import build_conversation, build_mailer, open_migrated_storage
from bot.service import Incoming
from bot.settings import Settings
from bot.texts import load_catalogue
from conversations.model import Button, Command, Input, Press, Profile, Reply, SharedContact, Text
from conversations.policy import Context, Secrets
from conversations.prompts import prompt
from storage import described

# Links in emails written from the console point here unless TELEGRAM_BOT_USERNAME is set.
CONSOLE_BOT_USERNAME = "coffeebot"


class ConsoleOutbound:
    """Prints replies, and remembers the last buttons so that a number or label can press one."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.choices: list[Button] = []

    def remember(self, reply: Reply) -> None:
        """A reply with buttons replaces the choices; one without leaves them as they were."""
        buttons = [button for row in reply.buttons for button in row]
        if buttons:
            self.choices = buttons

    async def send(self, reply: Reply) -> None:
        lines = [reply.text]
        self.remember(reply)
        lines += [
            f"  [{number}] {button.label}"
            for number, button in enumerate(self.choices if reply.buttons else (), 1)
        ]
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
    storage = await open_migrated_storage(settings, clock)
    try:
        texts = load_catalogue(settings)
        username = settings.telegram_bot_username or CONSOLE_BOT_USERNAME
        mailer = build_mailer(settings, storage, texts, username, clock)
        service = build_conversation(settings, storage, texts, username, clock, mailer)
        outbound = ConsoleOutbound(stdout)
        stdout.write(banner(settings) + "\n\n")
        state = await storage.participants.load(user_id)
        if state is not None:
            # Where the last session stopped: its question and numbered choices hold again.
            # A prompt only shows the step; no secret is drawn from the context here.
            context = Context(
                clock(), profile, texts, settings.limits, settings.travel, NO_SECRETS, username
            )
            await outbound.send(prompt(state, context))
        mail = MailWatch(settings)
        while line := await asyncio.to_thread(stdin.readline):
            event = outbound.read(line)
            if event is not None:
                await service.handle(Incoming(user_id, profile, event), outbound)
                # One person at a time here: send what this line queued before reading the next.
                sent = await mailer.send_due()
                for note in mail.notes(sent):
                    stdout.write(note + "\n\n")
                stdout.flush()
    finally:
        await storage.close()


NO_SECRETS = Secrets(token="", code="", referral_code="", ticket="")


def banner(settings: Settings) -> str:
    return (
        f"coffeebot console: database {described(settings.database_url)},"
        f" emails {MailWatch(settings).where}.\n"
        "Type /start to begin; a number or a label chooses a button, /contact +33612345678"
        " shares a phone number, /help lists the commands, Ctrl-D quits."
    )


class MailWatch:
    """Says where the emails a line caused went: the .eml files written, or the SMTP server."""

    def __init__(self, settings: Settings) -> None:
        self._folder = None if settings.smtp_url else Path(settings.mail_outbox_dir)
        # The server's host and port only: the URL may hold a password.
        self._server = urlsplit(settings.smtp_url or "").hostname
        self._seen = self._files()

    @property
    def where(self) -> str:
        if self._folder is None:
            return f"sent through the SMTP server {self._server}"
        return f"written as .eml files into {self._folder.resolve()}"

    def _files(self) -> set[Path]:
        return set(self._folder.glob("*.eml")) if self._folder and self._folder.is_dir() else set()

    def notes(self, sent: int) -> list[str]:
        if self._folder is None:
            return [f"✉ {sent} email(s) sent through {self._server}"] if sent else []
        files = self._files()
        new, self._seen = sorted(files - self._seen), files
        return [
            f"✉ email written to {path.resolve()}: open it, or read it with cat" for path in new
        ]
