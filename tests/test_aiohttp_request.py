"""The aiohttp HTTP layer under python-telegram-bot's Bot, against a local Bot API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile
from telegram.error import NetworkError, TimedOut
from telegram.request import HTTPXRequest

from bot.settings import HttpClient, Settings, SettingsError
from bot.telegram.application import telegram_request
from bot.telegram.request import AiohttpRequest, Timeouts
from tests.bot_api_server import LocalBotApi
from tests.smtp_server import free_port

TOKEN = "123456:HTTP"


@pytest.fixture
async def api() -> AsyncIterator[LocalBotApi]:
    server = LocalBotApi()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def bot(api: LocalBotApi) -> AsyncIterator[Bot]:
    request = AiohttpRequest(pool_size=4)
    async with Bot(TOKEN, base_url=api.base_url, request=request) as bot:
        yield bot


async def test_a_message_with_a_keyboard_goes_as_json_and_its_reply_is_read(
    api: LocalBotApi, bot: Bot
) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Oui", callback_data="yes")]])
    message = await bot.send_message(42, "Café ? ☕", reply_markup=markup)

    assert message.text == "Café ? ☕" and message.chat.id == 42 and message.message_id > 0
    [sent] = api.sent[42]
    assert sent.params["reply_markup"] == {
        "inline_keyboard": [[{"text": "Oui", "callback_data": "yes"}]]
    }
    assert bot.username == "coffee_test_bot"  # getMe, at initialisation


async def test_a_document_goes_as_multipart(api: LocalBotApi, bot: Bot) -> None:
    await bot.send_document(42, InputFile(b'{"a": 1}', filename="data.json"), caption="Vos données")

    [sent] = api.sent[42]
    assert sent.method == "sendDocument"
    assert sent.params["document"] == b'{"a": 1}' and sent.params["caption"] == "Vos données"


async def test_many_calls_at_once_share_the_pool(api: LocalBotApi, bot: Bot) -> None:
    await asyncio.gather(*(bot.send_message(chat, f"n°{chat}") for chat in range(1, 41)))

    assert {chat: api.texts_to(chat) for chat in range(1, 41)} == {
        chat: [f"n°{chat}"] for chat in range(1, 41)
    }


async def test_a_slow_api_times_out_after_the_read_timeout() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_route("*", "/bot{token}/{method}", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    request = AiohttpRequest(2, Timeouts(read=0.2))
    await request.initialize()
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimedOut):
            await request.post(f"http://127.0.0.1:{port}/bot{TOKEN}/getMe")
        assert asyncio.get_running_loop().time() - started < 2
    finally:
        await request.shutdown()
        await runner.cleanup()


async def test_an_unreachable_api_is_a_network_error() -> None:
    request = AiohttpRequest(2)
    await request.initialize()
    try:
        with pytest.raises(NetworkError):
            await request.post(f"http://127.0.0.1:{free_port()}/bot{TOKEN}/getMe")
    finally:
        await request.shutdown()


async def test_a_request_not_initialised_says_so() -> None:
    with pytest.raises(RuntimeError, match="not initialized"):
        await AiohttpRequest(1).do_request("http://127.0.0.1:9/x", "POST")


async def test_the_setting_chooses_the_client_and_its_pool() -> None:
    chosen = telegram_request(Settings(), 7)
    assert isinstance(chosen, AiohttpRequest)
    await chosen.initialize()
    try:
        assert chosen._session is not None and chosen._session.connector is not None
        assert chosen._session.connector.limit == 7
    finally:
        await chosen.shutdown()
    settings = Settings.from_env({"TELEGRAM_HTTP_CLIENT": "httpx"})
    assert settings.telegram_http_client is HttpClient.HTTPX
    assert isinstance(telegram_request(settings, 7), HTTPXRequest)
    with pytest.raises(SettingsError, match="TELEGRAM_HTTP_CLIENT"):
        Settings.from_env({"TELEGRAM_HTTP_CLIENT": "requests"})
