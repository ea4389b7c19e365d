"""The Telegram outbox's sender, through python-telegram-bot against an in-process Bot API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from telegram import Bot
from telegram.error import TimedOut
from telegram.request import RequestData

from bot.settings import Settings, SettingsError
from bot.telegram.handlers import TelegramMessenger
from bot.telegram.sender import TelegramOutboxSender
from conversations.catalogue import Catalogue
from conversations.model import ErasePersonalData, Participant
from storage import Storage, open_storage
from storage.migrator import migrate
from storage.ports import QueuedTelegram, TelegramKind, TelegramMessage, TelegramStatus
from storage.telegram_outbox import TelegramQueue
from tests.conftest import NOW
from tests.telegram_fakes import FakeBotApi, running_bot


class RefusingBotApi(FakeBotApi):
    """Answers like Telegram does when a person blocked the bot, under flood control, when a
    chat does not exist, or when the network fails; every attempt is recorded."""

    def __init__(self) -> None:
        super().__init__()
        self._answered = asyncio.Condition()
        self.attempts: list[tuple[int, float]] = []
        self.blocked: set[int] = set()
        self.unknown: set[int] = set()
        self.flood_once: dict[int, int] = {}
        self.bad_gateway: dict[int, int] = {}
        self.timing_out: set[int] = set()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        if url.endswith("/sendMessage") and request_data is not None:
            chat = request_data.parameters["chat_id"]
            assert isinstance(chat, int)
            self.attempts.append((chat, time.monotonic()))
            if chat in self.blocked:
                return _error(403, "Forbidden: bot was blocked by the user")
            if chat in self.unknown:
                return _error(400, "Bad Request: chat not found")
            if chat in self.flood_once:
                wait = self.flood_once.pop(chat)
                return _error(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
            if self.bad_gateway.get(chat):
                self.bad_gateway[chat] -= 1
                return _error(502, "Bad Gateway")
            if chat in self.timing_out:
                raise TimedOut()
        answer = await super().do_request(url, method, request_data)
        async with self._answered:
            self._answered.notify_all()
        return answer

    async def wait_for_texts(self, chat: int, count: int, seconds: float = 5.0) -> None:
        async with self._answered:
            delivered = self._answered.wait_for(lambda: len(self.texts_to(chat)) >= count)
            await asyncio.wait_for(delivered, seconds)

    def tries_to(self, chat: int) -> int:
        return sum(1 for to, _ in self.attempts if to == chat)


def _error(code: int, description: str, **parameters: Any) -> tuple[int, bytes]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return code, json.dumps(body).encode()


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    store: Storage
    outbox: TelegramQueue
    api: RefusingBotApi
    bot: Bot
    clock: Clock

    def sender(
        self,
        settings: Settings,
        texts: Catalogue,
        hold: Callable[[datetime], bool] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> TelegramOutboxSender:
        messenger = TelegramMessenger(self.bot)
        if hold is None:
            return TelegramOutboxSender(
                self.outbox, messenger, texts, settings, clock or self.clock
            )
        return TelegramOutboxSender(
            self.outbox, messenger, texts, settings, clock or self.clock, hold
        )

    async def people(self, *user_ids: int) -> None:
        for user_id in user_ids:
            state = Participant(user_id=user_id, language="fr", created_at=NOW)
            await self.store.participants.save(state, 0, [], None, NOW)

    async def status(self, key: str) -> tuple[str, int, str | None]:
        rows = await self.store.database.fetch(
            "SELECT status, attempts, last_error FROM telegram_outbox WHERE idempotency_key = ?",
            (key,),
        )
        return rows[0][0], rows[0][1], rows[0][2]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Fast, except in the test of the pace itself.
    return settings.replace(telegram_outbox_messages_per_second=10_000)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    store = await open_storage("sqlite:///:memory:")
    await migrate(store.database, NOW)
    api = RefusingBotApi()
    bot = Bot("123456:TEST", request=api, get_updates_request=api)
    async with bot:
        yield Rig(store, TelegramQueue(store.database), api, bot, Clock())
    await store.close()


def not_drawn(user_id: int, **changes: Any) -> TelegramMessage:
    fields: dict[str, Any] = {
        "key": f"draw-result:T{user_id}",
        "user_id": user_id,
        "kind": TelegramKind.DRAW_RESULT,
        "language": "fr",
        "text_key": "ticket.not_drawn",
        "params": {"ticket": f"T{user_id}"},
        "batch": "draw-result",
    } | changes
    return TelegramMessage(**fields)


async def test_the_text_and_buttons_are_rendered_from_the_catalogue_when_sent(
    rig: Rig, settings: Settings, texts: Catalogue
) -> None:
    await rig.people(1)
    buttons = (("button.accept", "win.accept"), ("button.decline", "win.decline"))
    await rig.outbox.queue([not_drawn(1, buttons=buttons)], NOW)
    # Staff changed the wording after the message was queued: the new wording goes out.
    reworded = Catalogue(
        {"fr": {**texts.texts["fr"], "ticket.not_drawn": "Pas tiré : {ticket}."}}, "fr", {}
    )

    assert await rig.sender(settings, reworded).send_due() == 1

    assert rig.api.texts_to(1) == ["Pas tiré : T1."]
    assert rig.api.last_buttons(1) == {"✅ J’accepte": "win.accept", "Je décline": "win.decline"}
    assert await rig.outbox.progress("draw-result") == {TelegramStatus.SENT: 1}


async def test_the_same_message_queued_twice_is_sent_once(
    rig: Rig, settings: Settings, texts: Catalogue
) -> None:
    await rig.people(1)
    await rig.outbox.queue([not_drawn(1), not_drawn(1)], NOW)
    sender = rig.sender(settings, texts)
    await sender.send_due()
    await rig.outbox.queue([not_drawn(1)], NOW)
    await sender.send_due()

    assert rig.api.texts_to(1) == [texts.render("fr", "ticket.not_drawn", ticket="T1")]


async def test_a_person_who_blocked_the_bot_is_marked_and_never_tried_again(
    rig: Rig, settings: Settings, texts: Catalogue
) -> None:
    await rig.people(1, 2)
    rig.api.blocked.add(1)
    await rig.outbox.queue([not_drawn(1), not_drawn(2)], NOW)
    sender = rig.sender(settings, texts)

    await sender.send_due()
    rig.clock.now = NOW + timedelta(days=2)
    await sender.send_due()

    assert rig.api.tries_to(1) == 1
    assert await rig.status("draw-result:T1") == ("blocked", 1, "Forbidden")
    assert len(rig.api.texts_to(2)) == 1


async def test_flood_control_is_waited_out_and_the_message_sent_once_after(
    rig: Rig, settings: Settings, texts: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # retry_after as a timedelta, without warning
    await rig.people(1, 2)
    rig.api.flood_once[1] = 1
    queued_at = datetime.now(UTC)
    await rig.outbox.queue([not_drawn(1), not_drawn(2)], queued_at)
    sender = rig.sender(settings, texts, clock=lambda: datetime.now(UTC))

    task = asyncio.create_task(sender.run())
    try:
        await rig.api.wait_for_texts(2, 1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    delivered = [call for call in rig.api.calls if call.method == "sendMessage"]
    assert [call.params["chat_id"] for call in delivered] == [1, 2]
    refused_at = rig.api.attempts[0][1]
    assert delivered[0].at - refused_at >= 1.0  # the second asked for, not sooner
    assert delivered[1].at >= delivered[0].at  # the rest of the batch waited too
    assert rig.api.tries_to(1) == 2
    assert await rig.status("draw-result:T1") == ("sent", 1, None)


async def test_network_failures_are_tried_again_with_backoff_then_given_up(
    rig: Rig, settings: Settings, texts: Catalogue
) -> None:
    await rig.people(1, 2)
    rig.api.bad_gateway[1] = 2
    rig.api.timing_out.add(2)
    await rig.outbox.queue([not_drawn(1), not_drawn(2)], NOW)
    sender = rig.sender(settings.replace(telegram_outbox_max_attempts=3), texts)
    base = timedelta(seconds=settings.telegram_outbox_retry_base_seconds)

    await sender.send_due()
    assert await rig.status("draw-result:T1") == ("pending", 1, "NetworkError")
    assert await rig.status("draw-result:T2") == ("pending", 1, "TimedOut")
    rig.clock.now = NOW + base - timedelta(seconds=1)
    assert await sender.send_due() == 0  # not before the wait
    rig.clock.now = NOW + base
    await sender.send_due()
    assert await rig.status("draw-result:T1") == ("pending", 2, "NetworkError")
    rig.clock.now += 2 * base - timedelta(seconds=1)
    assert await sender.send_due() == 0  # the second wait is twice as long
    rig.clock.now += timedelta(seconds=1)
    await sender.send_due()

    assert await rig.status("draw-result:T1") == ("sent", 3, None)
    assert await rig.status("draw-result:T2") == ("failed", 3, "TimedOut")
    assert rig.api.tries_to(2) == 3 and len(rig.api.texts_to(1)) == 1


async def test_a_chat_that_does_not_exist_is_given_up_at_once(
    rig: Rig, settings: Settings, texts: Catalogue
) -> None:
    await rig.people(1)
    rig.api.unknown.add(1)
    await rig.outbox.queue([not_drawn(1)], NOW)
    sender = rig.sender(settings, texts)
    await sender.send_due()
    rig.clock.now = NOW + timedelta(days=1)
    await sender.send_due()

    assert await rig.status("draw-result:T1") == ("failed", 1, "BadRequest")
    assert rig.api.tries_to(1) == 1


async def test_campaign_messages_wait_while_held_and_direct_answers_do_not(
    rig: Rig, settings: Settings, texts: Catalogue
) -> None:
    await rig.people(1, 2)
    silence_ends = NOW + timedelta(hours=10)
    announcement = not_drawn(
        1, key="announce:1:1", kind=TelegramKind.ANNOUNCEMENT, campaign=True, batch="announce:1"
    )
    await rig.outbox.queue([announcement, not_drawn(2)], NOW)
    sender = rig.sender(settings, texts, hold=lambda now: now < silence_ends)

    await sender.send_due()
    rig.clock.now = silence_ends - timedelta(seconds=1)
    await sender.send_due()
    assert rig.api.texts_to(1) == [] and len(rig.api.texts_to(2)) == 1
    assert await rig.outbox.progress("announce:1") == {TelegramStatus.PENDING: 1}

    rig.clock.now = silence_ends
    await sender.send_due()
    assert len(rig.api.texts_to(1)) == 1


async def test_an_erased_persons_messages_are_not_sent(
    rig: Rig, settings: Settings, texts: Catalogue
) -> None:
    await rig.people(1, 2, 3)
    await rig.outbox.queue([not_drawn(1), not_drawn(2), not_drawn(3)], NOW)
    await rig.store.participants.save(
        Participant(1, "fr", NOW), 1, [ErasePersonalData()], None, NOW
    )

    class ErasedMidBatch(TelegramQueue):
        """Person 3 is erased after the batch was read, before their turn."""

        async def due(self, now: datetime, limit: int, hold: bool) -> list[QueuedTelegram]:
            batch = await super().due(now, limit, hold)
            await rig.store.participants.save(
                Participant(3, "fr", NOW), 1, [ErasePersonalData()], None, NOW
            )
            return batch

    messenger = TelegramMessenger(rig.bot)
    sender = TelegramOutboxSender(
        ErasedMidBatch(rig.store.database), messenger, texts, settings, rig.clock
    )
    await sender.send_due()

    assert rig.api.tries_to(1) == 0 and rig.api.tries_to(3) == 0
    assert len(rig.api.texts_to(2)) == 1


async def test_messages_leave_at_the_set_pace(
    rig: Rig, settings: Settings, texts: Catalogue
) -> None:
    per_second = Settings().telegram_outbox_messages_per_second
    count = 25
    await rig.people(*range(1, count + 1))
    await rig.outbox.queue([not_drawn(n) for n in range(1, count + 1)], NOW)
    sender = rig.sender(settings.replace(telegram_outbox_messages_per_second=per_second), texts)

    assert await sender.send_due() == count

    times = sorted(at for _, at in rig.api.attempts)
    assert len(times) == count
    assert times[-1] - times[0] >= (count - 1) / per_second * 0.95
    assert max(sum(1 for t in times if start <= t < start + 1) for start in times) <= per_second


async def test_the_bot_sends_the_outbox_and_gives_up_what_a_crash_left_sending(
    settings: Settings, texts: Catalogue
) -> None:
    store = await open_storage(settings.database_url)
    await migrate(store.database, NOW)
    outbox = TelegramQueue(store.database)
    for user_id in (1, 2):
        await store.participants.save(Participant(user_id, "fr", NOW), 0, [], None, NOW)
    await outbox.queue([not_drawn(1), not_drawn(2)], NOW)
    assert await outbox.start_sending("draw-result:T1")  # as a killed process leaves it
    await store.close()

    api = FakeBotApi()
    async with running_bot(settings.replace(telegram_outbox_poll_seconds=0.05), api):
        for _ in range(200):
            if api.texts_to(2):
                break
            await asyncio.sleep(0.01)

    assert api.texts_to(1) == []
    assert api.texts_to(2) == [texts.render("fr", "ticket.not_drawn", ticket="T2")]
    store = await open_storage(settings.database_url)
    try:
        progress = await TelegramQueue(store.database).progress("draw-result")
    finally:
        await store.close()
    assert progress == {TelegramStatus.INTERRUPTED: 1, TelegramStatus.SENT: 1}


def test_a_pace_of_zero_stops_the_bot_naming_the_setting(
    rig: Rig, settings: Settings, texts: Catalogue
) -> None:
    with pytest.raises(SettingsError, match="TELEGRAM_OUTBOX_MESSAGES_PER_SECOND"):
        rig.sender(settings.replace(telegram_outbox_messages_per_second=0), texts)
