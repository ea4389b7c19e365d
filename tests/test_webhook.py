"""Webhook mode in-process: the real Application served over loopback HTTP, answering the local
Bot API fake, with Telegram's requests made by hand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from telegram.error import NetworkError

from bot.bootstrap import utc_now
from bot.settings import Settings, SettingsError
from bot.telegram.application import build_application
from bot.telegram.handlers import TelegramOutbound
from bot.telegram.webhook import SECRET_HEADER, STORE, checked_secret, serve_webhook
from storage import Storage
from tests.bot_api_server import LocalBotApi
from tests.live import Person, healthy
from tests.smtp_server import free_port

SECRET = "s3cr3t-for-the-webhook-tests_0123456789abcdefXYZ"


@dataclass
class Served:
    api: LocalBotApi
    url: str
    store: Storage
    stopping: asyncio.Event
    task: asyncio.Task[None]

    async def post(self, body: Any, secret: str | None = SECRET, raw: bytes | None = None) -> int:
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.url}/telegram", json=None if raw else body, data=raw, headers=headers
            ) as answer,
        ):
            return answer.status

    async def processed(self) -> int:
        return int(
            (await self.store.database.fetch("SELECT COUNT(*) FROM processed_updates"))[0][0]
        )


@pytest.fixture
async def api() -> AsyncIterator[LocalBotApi]:
    server = LocalBotApi()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def served(settings: Settings, api: LocalBotApi) -> AsyncIterator[Served]:
    settings = settings.replace(
        telegram_api_base_url=api.base_url,
        webhook_secret=SECRET,
        webhook_listen=f"127.0.0.1:{free_port()}",
        webhook_max_body_bytes=4096,
        webhook_shutdown_seconds=5,
    )
    application = build_application(settings)
    await application.initialize()
    stopping = asyncio.Event()
    task = asyncio.create_task(serve_webhook(application, settings, utc_now, stopping))
    url = f"http://{settings.webhook_listen}"
    await api.wait_for(lambda: STORE in application.bot_data)
    await healthy(url)
    yield Served(api, url, application.bot_data[STORE], stopping, task)
    stopping.set()
    await task


async def test_an_update_is_answered_200_once_its_replies_have_left(served: Served) -> None:
    person = Person(served.api, 42)
    assert await served.post(person.text("/start")) == 200
    assert served.api.texts_to(42)  # before the 200, not after
    assert await served.processed() == 1


@pytest.mark.parametrize("secret", [None, "", SECRET[:-1], SECRET + "x", SECRET.upper()])
async def test_a_wrong_or_missing_secret_is_403_and_nothing_is_stored(
    served: Served, secret: str | None
) -> None:
    assert await served.post(Person(served.api, 42).text("/start"), secret=secret) == 403
    assert await served.processed() == 0 and not served.api.sent


async def test_bad_bodies_are_refused_without_a_traceback(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    big = Person(served.api, 42).text("/start " + "x" * 5000)
    assert await served.post(big) == 413
    assert await served.post(None, raw=b"{not json") == 400
    assert await served.post(None, raw=b"\xff\xfe") == 400
    assert await served.post([1, 2]) == 400
    assert await served.post({"message": {}}) == 400
    assert await served.post({"update_id": "seven"}) == 400
    assert await served.processed() == 0 and not served.api.sent
    assert not [record for record in caplog.records if record.exc_info]


async def test_a_failure_before_the_commit_is_500_and_the_retry_acts_once(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = Person(served.api, 42)
    assert await served.post(person.text("/start")) == 200
    welcomed = len(served.api.sent[42])
    update = person.press("welcome.join")
    # On the class: on PostgreSQL a step saves through a store bound to its own connection.
    store = type(served.store.participants)
    monkeypatch.setattr(store, "save", _fails(store.save, times=1))
    assert await served.post(update) == 500
    assert await served.processed() == 1 and len(served.api.sent[42]) == welcomed
    assert await served.post(update) == 200  # Telegram's retry
    replies = served.api.texts_to(42)
    assert await served.post(update) == 200  # and one more: found processed, nothing resent
    assert served.api.texts_to(42) == replies and len(replies) > welcomed
    assert await served.processed() == 2


async def test_a_step_committed_whose_replies_never_left_sends_them_on_the_retry_once(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = Person(served.api, 42)
    while "numéro de téléphone\u202f?" not in (served.api.texts_to(42) or [""])[-1]:
        assert await served.post(person.answer()) == 200
    # A shared phone number is answered twice (number saved, then the next question). The
    # second never leaves, as if the process died after the first.
    before = len(served.api.sent[42])
    send = TelegramOutbound.send
    monkeypatch.setattr(TelegramOutbound, "send", _fails(send, times=1, after=1))
    contact = person.contact()
    assert await served.post(contact) == 500
    partial = served.api.sent[42][before:]
    monkeypatch.setattr(TelegramOutbound, "send", send)
    assert await served.post(contact) == 200
    assert await served.post(contact) == 200
    retried = served.api.sent[42][before:]
    assert len(partial) == 1 and len(retried) == 2  # the rest came, the first not again
    assert [s.params.get("text") for s in retried].count(partial[0].params.get("text")) == 1


async def test_health_answers_while_the_database_does(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{served.url}/healthz") as healthy:
            assert healthy.status == 200
        database = served.store.database
        monkeypatch.setattr(database, "fetch", _fails(database.fetch, times=1))
        async with http.get(f"{served.url}/healthz") as down:
            assert down.status == 503


async def test_a_stop_finishes_the_requests_in_flight_and_accepts_no_more(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    send = TelegramOutbound.send

    async def slow(self: TelegramOutbound, reply: Any) -> None:
        await asyncio.sleep(0.5)
        await send(self, reply)

    monkeypatch.setattr(TelegramOutbound, "send", slow)
    in_flight = asyncio.create_task(served.post(Person(served.api, 42).text("/start")))
    await asyncio.sleep(0.2)
    served.stopping.set()
    assert await in_flight == 200 and served.api.texts_to(42)
    with pytest.raises(aiohttp.ClientConnectionError):
        await served.post(Person(served.api, 43).text("/start"))
    await served.task


@pytest.mark.parametrize(
    "secret",
    [None, "", "short", "a" * 40, "0123456789" * 4 + "!", "ab" * 20],
)
def test_the_secret_must_look_random_and_is_never_shown(settings: Settings, secret: str) -> None:
    with pytest.raises(SettingsError) as refused:
        checked_secret(settings.replace(webhook_secret=secret))
    assert "WEBHOOK_SECRET" in str(refused.value)
    assert not secret or secret not in str(refused.value)


def _fails(call: Any, times: int, after: int = 0) -> Any:
    """`call`, failing `times` times with a network error after `after` successful calls."""
    calls = 0

    async def failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if after < calls <= after + times:
            raise NetworkError("connection lost")
        return await call(*args, **kwargs)

    return failing
