"""The real bot process over HTTP: `coffeebot run` polling a local Bot API server."""

from __future__ import annotations

import asyncio
import random
import re
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tests.bot_api_server import Limits, LocalBotApi
from tests.live import BotProcess, Person, rows, started
from tests.smtp_server import body, smtp_server

pytestmark = pytest.mark.slow


@pytest.fixture
async def api() -> AsyncIterator[LocalBotApi]:
    async with started(LocalBotApi()) as server:
        yield server


async def stored_steps(database_url: str) -> dict[int, str]:
    return dict(await rows(database_url, "SELECT user_id, step FROM participants"))


async def test_signups_and_the_email_loop_in_polling_mode(
    api: LocalBotApi, tmp_path: Path, database_url: str
) -> None:
    with smtp_server() as (inbox, port):
        bot = BotProcess(
            api, tmp_path, {"SMTP_URL": f"smtp://127.0.0.1:{port}"}, database_url=database_url
        )
        await bot.start()
        try:
            people = [Person(api, 100 + n) for n in range(5)]
            await asyncio.gather(*(person.sign_up() for person in people))
            zoe = people[0]
            await api.wait_for(lambda: bool(inbox.to(zoe.email)), 10)
            token = re.search(r"start=c_([A-Za-z0-9_-]+)", body(inbox.to(zoe.email)[0], "plain"))
            assert token is not None
            await api.push(zoe.text(f"/start c_{token[1]}"))
            await api.wait_for(
                lambda: any("Adresse confirmée" in t for t in api.texts_to(zoe.user_id))
            )
        finally:
            await bot.stop()
    assert set((await stored_steps(database_url)).values()) == {"complete", "engage_actions"}
    assert "Traceback" not in bot.logs()


async def test_the_same_update_twice_acts_once(
    api: LocalBotApi, tmp_path: Path, database_url: str
) -> None:
    bot = BotProcess(api, tmp_path, database_url=database_url)
    await bot.start()
    try:
        person = Person(api, 7)
        await person.sign_up()
        before = len(api.sent[7])
        again = person.text("/statut")
        await api.push(again)
        await api.push(again)
        await api.wait_for(lambda: len(api.sent[7]) > before)
        await asyncio.sleep(0.5)
    finally:
        await bot.stop()
    assert len(api.sent[7]) == before + 1


async def test_429_answers_are_waited_out_and_no_reply_is_lost(
    api: LocalBotApi, tmp_path: Path, database_url: str
) -> None:
    api.limits = Limits(overall_per_second=30, per_chat_per_second=1, per_chat_burst=3)
    bot = BotProcess(api, tmp_path, database_url=database_url)
    await bot.start()
    try:
        people = [Person(api, 300 + n) for n in range(8)]
        await asyncio.gather(*(person.sign_up(patience=20) for person in people))
    finally:
        await bot.stop()
    assert api.refused > 0  # Telegram's limits were hit, and waited out
    assert all(step == "complete" for step in (await stored_steps(database_url)).values())
    assert "Traceback" not in bot.logs()


async def test_a_flood_is_answered_in_order_with_one_warning(
    api: LocalBotApi, tmp_path: Path, database_url: str
) -> None:
    bot = BotProcess(api, tmp_path, {"FLOOD_WINDOW_SECONDS": "2"}, database_url=database_url)
    await bot.start()
    try:
        flooder, others = Person(api, 1), [Person(api, 10 + n) for n in range(5)]
        while not any("votre prénom" in text for text in api.texts_to(1)[-1:]):
            seen = len(api.sent[1])
            await api.push(flooder.answer())
            await api.wait_for(lambda seen=seen: len(api.sent[1]) > seen)
            await asyncio.sleep(0.05)
        asked_at = len(api.texts_to(1))
        await asyncio.sleep(2.1)  # the warm-up leaves the flood window
        # 100 names in a second, each refused for a different symbol so that order shows.
        symbols = [chr(0x2600 + n) for n in range(100)]
        started = time.monotonic()
        for n, symbol in enumerate(symbols):
            await api.push(flooder.text(f"Zoé{symbol}"))
            if n % 20 == 10:
                for other in others:
                    await api.push(other.text("/start"))
            await asyncio.sleep(0.01)
        await api.wait_for(lambda: all(api.texts_to(o.user_id) for o in others))
        await asyncio.sleep(1)
        latencies = [api.sent[o.user_id][0].at - started for o in others]
    finally:
        await bot.stop()
    replies = api.texts_to(1)[asked_at:]
    warnings = [r for r in replies if "beaucoup de messages" in r]
    refused = [r for r in replies if "pas «\u202f" in r]
    assert len(warnings) == 1 and replies[-1] == warnings[0]
    assert [r.split("pas «\u202f")[1][0] for r in refused] == symbols[: len(refused)]
    assert len(refused) == 20  # FLOOD_MAX_MESSAGES, then one warning, then silence
    median = statistics.median(latencies)
    print(f"\nflood: the others were answered {median:.2f} s (median) after it started")


async def test_killed_three_times_loses_nothing(
    api: LocalBotApi, tmp_path: Path, database_url: str
) -> None:
    """200 people sign up at once while the bot is killed with SIGKILL three times."""
    chance = random.Random(2027)
    with smtp_server() as (inbox, port):
        env = {"SMTP_URL": f"smtp://127.0.0.1:{port}", "TELEGRAM_MAX_MESSAGES_PER_SECOND": "10000",
               "FLOOD_MAX_MESSAGES": "1000"}  # fmt: skip
        bot = BotProcess(api, tmp_path, env, database_url=database_url)
        await bot.start()
        people = [Person(api, 1000 + n) for n in range(200)]
        signing = asyncio.gather(*(person.sign_up(patience=8) for person in people))
        kills = []
        for threshold in sorted(chance.sample(range(10, 190), 3)):
            await api.wait_for(lambda t=threshold: sum(p.saw_complete for p in people) >= t, 300)
            await asyncio.sleep(chance.uniform(0, 0.5))
            await bot.kill()
            kills.append(sum(p.saw_complete for p in people))
            await bot.start()
        await signing
        await emails_settled(inbox.messages, database_url, 200)
        await bot.stop()
    steps = await stored_steps(database_url)
    assert all(steps[p.user_id] == "complete" for p in people if p.saw_complete)
    assert all(p.saw_complete for p in people)
    stored = {
        row[0]: row[1:]
        for row in await rows(database_url, "SELECT user_id, phone, email FROM participants")
    }
    assert all(stored[p.user_id] == (p.phone, p.email) for p in people)
    per_person = await rows(
        database_url,
        "SELECT user_id, COUNT(*) FROM outbox WHERE kind = 'confirmation' GROUP BY user_id",
    )
    assert len(per_person) == 200 and {count for _, count in per_person} == {1}
    received = [str(m["To"]) for m in inbox.messages]
    assert len(received) == len(set(received))  # none sent twice
    print(
        f"\ncrash: 200 people, kills after {kills} completions,"
        f" {sum(p.updates_sent for p in people)} updates sent, {len(received)} emails delivered,"
        f" {await interrupted(database_url)} interrupted"
    )


async def interrupted(database_url: str) -> int:
    """Emails given up because a kill left them leaving: each may or may not have arrived."""
    [(count,)] = await rows(
        database_url, "SELECT COUNT(*) FROM outbox WHERE status = 'interrupted'"
    )
    return int(count)


async def emails_settled(received: Sequence[object], database_url: str, expected: int) -> None:
    """Until every email has arrived or been given up at a kill."""
    deadline = time.monotonic() + 60
    while len(received) + await interrupted(database_url) < expected:
        assert time.monotonic() < deadline, "emails neither delivered nor given up"
        await asyncio.sleep(0.1)
