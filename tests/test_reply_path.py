"""Replies go out without python-telegram-bot building objects nobody reads, and still through
the rate limiter."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from telegram import Message

from bot.settings import Settings
from bot.telegram.handlers import send_text
from conversations.model import Reply
from tests.telegram_fakes import BOT_ID, FakeBotApi, Updates, running_bot
from tests.test_telegram import signup_updates


async def test_a_whole_signup_parses_no_reply_into_a_message(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    parsed: list[dict[str, Any]] = []
    real = Message.de_json.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Message], data: dict[str, Any], bot: object = None) -> object:
        parsed.append(data)
        return real(cls, data, bot)

    monkeypatch.setattr(Message, "de_json", classmethod(counting))
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(777)
    async with running_bot(settings.replace(mail_outbox_dir=str(tmp_path)), api) as bot:
        await bot.feed(*signup_updates(updates, user))
    assert any(text.startswith("🎉") for text in api.texts_to(777))
    # The incoming messages were parsed (the count works); none of the bot's own replies.
    assert any(data.get("from", {}).get("id") == 777 for data in parsed)
    assert not [data for data in parsed if data.get("from", {}).get("id") == BOT_ID]


async def test_a_sent_reply_gives_its_message_id(settings: Settings, tmp_path: Path) -> None:
    api = FakeBotApi()
    async with running_bot(settings.replace(mail_outbox_dir=str(tmp_path)), api) as bot:
        sent = await send_text(bot.application.bot, 5, Reply("Bonjour"))
    assert sent["message_id"] >= 10_000 and sent["text"] == "Bonjour"
    assert api.to_chat(5)[0].params == {
        "chat_id": 5,
        "text": "Bonjour",
        "reply_markup": {"remove_keyboard": True},
    }


async def test_replies_still_pass_the_rate_limiter(settings: Settings) -> None:
    api = FakeBotApi()
    async with running_bot(settings.replace(telegram_max_messages_per_second=20), api) as bot:
        started = time.monotonic()
        for n in range(30):
            await send_text(bot.application.bot, 100 + n, Reply(f"n°{n}"))
        elapsed = time.monotonic() - started
    # 30 messages at 20 a second overall take at least half a second.
    assert elapsed >= 0.45
