"""The Telegram outbox in the real bot process, killed with SIGKILL while it sends."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from conversations.model import Participant
from storage import open_storage
from storage.migrator import migrate
from storage.ports import TelegramKind, TelegramMessage
from storage.telegram_outbox import TelegramQueue
from tests.bot_api_server import LocalBotApi
from tests.live import BotProcess, rows, started

pytestmark = pytest.mark.slow

PEOPLE = 200
SEND_LATENCY = 0.03


class SlowBotApi(LocalBotApi):
    """Delivers a message, then takes a while to answer, as Telegram can: a kill then often
    lands after the person got the message and before the bot knows it."""

    async def _handle(self, request: web.Request) -> web.Response:
        response = await super()._handle(request)
        if request.match_info["method"] == "sendMessage":
            await asyncio.sleep(SEND_LATENCY)
        return response


@pytest.fixture
async def api() -> AsyncIterator[LocalBotApi]:
    async with started(SlowBotApi()) as server:
        yield server


async def queue_results(database_url: str, user_ids: range) -> None:
    """The database as the draw leaves it: everyone's result waiting in the outbox."""
    now = datetime.now(UTC)
    store = await open_storage(database_url)
    try:
        await migrate(store.database, now)
        for user_id in user_ids:
            await store.participants.save(Participant(user_id, "fr", now), 0, [], None, now)
        messages = [
            TelegramMessage(
                key=f"draw-result:T{user_id}",
                user_id=user_id,
                kind=TelegramKind.DRAW_RESULT,
                language="fr",
                text_key="ticket.not_drawn",
                params={"ticket": f"T{user_id}"},
                batch="draw-result",
            )
            for user_id in user_ids
        ]
        await TelegramQueue(store.database).queue(messages, now)
    finally:
        await store.close()


async def statuses(database_url: str) -> dict[int, str]:
    return dict(await rows(database_url, "SELECT user_id, status FROM telegram_outbox"))


async def test_killed_while_sending_each_person_is_told_at_most_once(
    api: LocalBotApi, tmp_path: Path, database_url: str
) -> None:
    chance = random.Random(2028)
    user_ids = range(5000, 5000 + PEOPLE)
    await queue_results(database_url, user_ids)
    env = {
        "TELEGRAM_OUTBOX_MESSAGES_PER_SECOND": "100",
        "TELEGRAM_MAX_MESSAGES_PER_SECOND": "10000",
    }
    bot = BotProcess(api, tmp_path, env, database_url=database_url)

    def delivered() -> int:
        return sum(len(api.sent[user_id]) for user_id in user_ids)

    await bot.start()
    kills = []
    for threshold in sorted(chance.sample(range(10, PEOPLE - 10), 3)):
        await api.wait_for(lambda t=threshold: delivered() >= t, 60)
        await asyncio.sleep(chance.uniform(0, 0.02))
        await bot.kill()
        kills.append(delivered())
        await bot.start()
    finished = ("sent", "interrupted")
    deadline = time.monotonic() + 60
    while not all(s in finished for s in (await statuses(database_url)).values()):
        assert time.monotonic() < deadline, "messages neither sent nor given up"
        await asyncio.sleep(0.1)
    await bot.stop()

    final = await statuses(database_url)
    told = {user_id: len(api.sent[user_id]) for user_id in user_ids}
    assert len(final) == PEOPLE and set(final.values()) <= set(finished)
    assert max(told.values()) == 1  # nobody told twice
    assert all(told[user_id] == 1 for user_id, status in final.items() if status == "sent")
    interrupted = sum(status == "interrupted" for status in final.values())
    assert interrupted <= len(kills)  # at most the one message in doubt at each kill
    assert "Traceback" not in bot.logs()
    print(
        f"\ntelegram outbox crash: {PEOPLE} results, kills after {kills} deliveries,"
        f" {sum(told.values())} delivered, {interrupted} interrupted"
    )
