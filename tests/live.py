"""The real bot as a separate process (`coffeebot run`) against the local Bot API server, and
simulated people who answer whatever the bot last asked them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from storage import open_database
from tests.bot_api_server import LocalBotApi


@dataclass
class BotProcess:
    api: LocalBotApi
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    # The `database_url` fixture's (PostgreSQL under COFFEEBOT_TEST_DATABASE=postgresql);
    # unset: a SQLite file in the work folder.
    database_url: str | None = None

    # What `coffeebot` runs, and the settings it runs with besides the common ones.
    command = "run"

    def settings(self) -> dict[str, str]:
        return {}

    async def start(self) -> None:
        polls = self.api.calls["getUpdates"]
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "SMTP_"))
        }
        environment |= {
            "TELEGRAM_BOT_TOKEN": "123456:LIVE",
            "TELEGRAM_API_BASE_URL": self.api.base_url,
            "DATABASE_URL": self.database_url or f"sqlite:///{self.workdir / 'live.db'}",
            "MAIL_OUTBOX_DIR": str(self.workdir / "outbox"),
            "COFFEEBOT_ENV_FILE": str(self.workdir / "none.env"),
            "OUTBOX_POLL_SECONDS": "0.2",
            **self.settings(),
            **self.env,
        }
        self.starts += 1
        if self not in self.api.bots:
            self.api.bots.append(self)
        log = self._log_file()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", self.command, env=environment, cwd=self.workdir,
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        await self.ready(polls)

    async def ready(self, polls: int) -> None:
        """Until the bot polls again (`polls` were made before it started)."""
        await self.api.wait_for(lambda: self.api.calls["getUpdates"] > polls, seconds=30)

    def _log_file(self) -> BinaryIO:
        return (self.workdir / f"bot-{self.starts}.log").open("wb")

    async def kill(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 30)

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.workdir.glob("bot-*.log"))
        )


async def healthy(url: str, seconds: float = 30) -> None:
    """Wait until the bot's HTTP server answers /healthz with 200: it listens only once the
    bot's services have started (on PostgreSQL, seconds after the process)."""
    give_up = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < give_up:
            try:
                async with http.get(f"{url}/healthz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.02)
    raise AssertionError(f"{url} never answered /healthz")


async def rows(database_url: str, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    """What the bot stored, read through the storage API whichever the database: the live
    tests run on SQLite and on PostgreSQL alike."""
    database = await open_database(database_url)
    try:
        return [tuple(row) for row in await database.fetch(sql, parameters)]
    finally:
        await database.close()


@dataclass
class Person:
    """Someone on a phone: reads the bot's last message and answers it."""

    api: LocalBotApi
    user_id: int
    first_name: str = "Zoé"
    saw_complete: bool = False
    updates_sent: int = 0

    @property
    def user(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "is_bot": False,
            "first_name": self.first_name,
            "language_code": "fr",
        }

    def _message(self, **content: Any) -> dict[str, Any]:
        chat = {"id": self.user_id, "type": "private", "first_name": self.first_name}
        message_id = self.api.next_update_id()
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": self.user,
            **content,
        }

    def text(self, text: str) -> dict[str, Any]:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            content["entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(text.split()[0])}
            ]
        return {"update_id": self.api.next_update_id(), "message": self._message(**content)}

    def press(self, data: str) -> dict[str, Any]:
        chat = {"id": self.user_id, "type": "private", "first_name": self.first_name}
        message = {"message_id": 1, "date": int(time.time()), "chat": chat, "text": "…"}
        query = {"id": str(self.api.next_update_id()), "from": self.user, "chat_instance": "c",
                 "data": data, "message": message}  # fmt: skip
        return {"update_id": self.api.next_update_id(), "callback_query": query}

    def contact(self) -> dict[str, Any]:
        contact = {
            "phone_number": self.phone,
            "first_name": self.first_name,
            "user_id": self.user_id,
        }
        return {"update_id": self.api.next_update_id(), "message": self._message(contact=contact)}

    @property
    def phone(self) -> str:
        return f"+336{self.user_id:08d}"

    @property
    def email(self) -> str:
        return f"person{self.user_id}@example.fr"

    def buttons(self) -> dict[str, str]:
        for sent in reversed(self.api.sent[self.user_id]):
            markup = sent.params.get("reply_markup")
            if isinstance(markup, dict) and "inline_keyboard" in markup:
                return {
                    b["text"]: b["callback_data"] for row in markup["inline_keyboard"] for b in row
                }
        return {}

    def answer(self, again: bool = False) -> dict[str, Any]:
        """The update a person sends after reading the bot's last message; `again` when the bot
        did not answer the last one."""
        texts = self.api.texts_to(self.user_id)
        last = texts[-1] if texts else ""
        if "Prenez un café" in last:
            return self.press("welcome.join")
        if "trois accords" in last:
            buttons = self.buttons()
            unticked = [key for label, key in buttons.items() if label.startswith("☐")]
            # A tick pressed again would untick it if the first press was only slow to come
            # back: after a silence, Continue shows where the ticks stand.
            return self.press(unticked[0] if unticked and not again else "consent.continue")
        steps = {
            "votre prénom": lambda: self.text(self.first_name),
            "nom de famille": lambda: self.text("Martin"),
            "numéro de téléphone\u202f?": self.contact,
            "adresse e-mail\u202f?": lambda: self.text(self.email),
            "code postal\u202f?": lambda: self.text("69003"),
            "inviter jusqu’à": lambda: self.press("friends.done"),
            "aimeriez-vous poser": lambda: self.press("question.skip"),
            "Voici votre inscription": lambda: self.press("summary.confirm"),
        }
        for clue, update in steps.items():
            if clue in last:
                return update()
        return self.text("/start")

    async def sign_up(self, patience: float = 5.0, deadline: float = 240.0) -> None:
        """Answer until the bot says the signup is complete; ask again when it goes silent."""
        give_up = time.monotonic() + deadline
        again = False
        while not self.saw_complete:
            if time.monotonic() > give_up:
                raise AssertionError(
                    f"person {self.user_id} never completed: {self.api.texts_to(self.user_id)[-3:]}"
                )
            seen = len(self.api.sent[self.user_id])
            await self.api.push(self.answer(again))
            self.updates_sent += 1
            try:
                await self.api.wait_for_chat(
                    self.user_id, lambda n=seen: len(self.api.sent[self.user_id]) > n, patience
                )
                await asyncio.sleep(0.05)  # a step may send two messages
            except AssertionError:
                again = True
                continue  # the bot died or lost the update: a person would write again
            again = False
            # Told at completion or, when the bot died right after saving it, by the status.
            told = ("Un e-mail de confirmation part", "Votre inscription est complète")
            texts = self.api.texts_to(self.user_id)
            self.saw_complete = any(clue in text for text in texts for clue in told)


@asynccontextmanager
async def started(server: LocalBotApi) -> AsyncIterator[LocalBotApi]:
    """The test Bot API running; then every bot process it saw is killed (whatever a failing
    test left running) and the server stops."""
    await server.start()
    try:
        yield server
    finally:
        for bot in server.bots:
            await bot.kill()
        await server.stop()
