"""`coffeebot run` as a separate process when things go wrong: a wrong token, a Bot API that
cannot be reached at start or goes down while polling, a locked or unsupported database, and
stop signals in each state. Each says one clear line and exits with a status that tells."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest
from aiohttp import web

from bot.cli import EXIT_CONFIGURATION, EXIT_ENVIRONMENT, WRONG_TOKEN
from tests.bot_api_server import LocalBotApi
from tests.live import Person
from tests.smtp_server import free_port

pytestmark = pytest.mark.slow

TOKEN = "123456:SECRET-token-never-printed"
# A stop signal is handled well within this, whatever the bot is doing.
QUICK_STOP_SECONDS = 3.0


class Bot:
    """`coffeebot run` in its own process, its output gathered as it comes."""

    def __init__(self, workdir: Path, api_url: str, **env: str) -> None:
        self.workdir = workdir
        self.env = {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": api_url,
            "DATABASE_URL": f"sqlite:///{workdir / 'bot.db'}",
            **env,
        }
        self.process: asyncio.subprocess.Process | None = None
        self.output = ""
        self._reader: asyncio.Task[None] | None = None

    async def start(self, *arguments: str) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", *arguments, env=self._environment(),
            cwd=self.workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())

    def _environment(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for line in self.process.stdout:
            self.output += line.decode(errors="replace")

    async def wait_for(self, clue: str, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while clue not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"never said {clue!r}:\n{self.output}")
            await asyncio.sleep(0.05)

    async def exit_status(self, seconds: float = 60.0) -> int:
        assert self.process is not None and self._reader is not None
        status = await asyncio.wait_for(self.process.wait(), seconds)
        await self._reader
        return status

    async def stop(self) -> float:
        """Sends SIGTERM; returns how long the process took to exit (status 0)."""
        assert self.process is not None
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        status = await self.exit_status(30)
        assert status == 0, self.output
        return time.monotonic() - sent

    def kill(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.kill()

    def last_line(self) -> str:
        return self.output.strip().splitlines()[-1]

    def clean(self) -> None:
        """No traceback and no token, whatever happened."""
        assert "Traceback" not in self.output, self.output
        assert TOKEN not in self.output and "SECRET" not in self.output, self.output


@pytest.fixture
async def bots() -> AsyncIterator[list[Bot]]:
    started: list[Bot] = []
    yield started
    for bot in started:
        bot.kill()  # whatever a failing test left running
        if bot.process:
            await bot.process.wait()


@pytest.fixture
async def api() -> AsyncIterator[LocalBotApi]:
    server = LocalBotApi()
    await server.start()
    yield server
    await server.stop()


async def test_a_wrong_token_is_one_line_that_does_not_show_it(
    tmp_path: Path, bots: list[Bot]
) -> None:
    async def unauthorized(request: web.Request) -> web.Response:
        body = {"ok": False, "error_code": 401, "description": "Unauthorized"}
        return web.json_response(body, status=401)

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", unauthorized)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        bot = Bot(tmp_path, f"http://127.0.0.1:{port}/bot")
        bots.append(bot)
        await bot.start("run")
        assert await bot.exit_status() == EXIT_CONFIGURATION
    finally:
        await runner.cleanup()
    assert bot.output.strip() == WRONG_TOKEN
    bot.clean()


async def test_an_unreachable_api_is_retried_with_backoff_then_given_up(
    tmp_path: Path, bots: list[Bot]
) -> None:
    bot = Bot(tmp_path, f"http://127.0.0.1:{free_port()}/bot", TELEGRAM_START_TIMEOUT_SECONDS="3.5")
    bots.append(bot)
    began = time.monotonic()
    await bot.start("run")
    assert await bot.exit_status() == EXIT_ENVIRONMENT
    assert 3.5 <= time.monotonic() - began < 10
    retries = [line for line in bot.output.splitlines() if "trying again in" in line]
    # The wait doubles; the last one is cut to what is left of the 3.5 s.
    assert [line.rsplit("trying again in ", 1)[1] for line in retries][:2] == ["1 s", "2 s"]
    assert bot.last_line().startswith("coffeebot: cannot reach the Telegram Bot API at 127.0.0.1")
    assert bot.last_line().endswith("gave up after TELEGRAM_START_TIMEOUT_SECONDS=3.5")
    bot.clean()


async def test_sigterm_while_the_api_cannot_be_reached_at_start(
    tmp_path: Path, bots: list[Bot]
) -> None:
    bot = Bot(tmp_path, f"http://127.0.0.1:{free_port()}/bot", TELEGRAM_RETRY_MAX_SECONDS="60")
    bots.append(bot)
    await bot.start("run")
    await bot.wait_for("trying again in 2 s")
    assert await bot.stop() < QUICK_STOP_SECONDS
    bot.clean()


async def test_no_command_runs_the_bot_and_sigterm_stops_it_at_once(
    api: LocalBotApi, tmp_path: Path, bots: list[Bot]
) -> None:
    bot = Bot(tmp_path, api.base_url)
    bots.append(bot)
    await bot.start()
    await api.wait_for(lambda: api.calls["getUpdates"] > 0)
    person = Person(api, 5)
    await api.push(person.text("/start"))
    await api.wait_for(lambda: bool(api.texts_to(5)))
    assert await bot.stop() < QUICK_STOP_SECONDS
    bot.clean()


async def test_an_outage_while_polling_is_one_warning_then_one_line_when_back(
    api: LocalBotApi, tmp_path: Path, bots: list[Bot]
) -> None:
    bot = Bot(tmp_path, api.base_url, TELEGRAM_RETRY_MAX_SECONDS="0.5")
    bots.append(bot)
    await bot.start("run")
    await api.wait_for(lambda: api.calls["getUpdates"] > 0)
    await api.stop()
    await bot.wait_for("does not answer")
    await asyncio.sleep(4)  # python-telegram-bot polls again after 1, 1.5 and 2.25 s
    back = LocalBotApi(port=api.port)
    await back.start()
    try:
        await bot.wait_for("answers again")
        person = Person(back, 6)
        await back.push(person.text("/start"))
        await back.wait_for(lambda: bool(back.texts_to(6)))
        assert await bot.stop() < QUICK_STOP_SECONDS
    finally:
        await back.stop()
    assert bot.output.count("does not answer") == 1
    assert bot.output.count("answers again") == 1
    assert "ERROR" not in bot.output, bot.output
    bot.clean()


async def test_sigterm_during_an_outage_does_not_wait_for_the_next_poll(
    api: LocalBotApi, tmp_path: Path, bots: list[Bot]
) -> None:
    bot = Bot(tmp_path, api.base_url)
    bots.append(bot)
    await bot.start("run")
    await api.wait_for(lambda: api.calls["getUpdates"] > 0)
    await api.stop()
    await bot.wait_for("does not answer")
    # python-telegram-bot now waits 1, 1.5, 2.25, 3.4, 5 s… between polls.
    await asyncio.sleep(6)
    assert await bot.stop() < QUICK_STOP_SECONDS
    bot.clean()


async def test_a_locked_database_at_start_is_one_line(
    api: LocalBotApi, tmp_path: Path, bots: list[Bot]
) -> None:
    database = tmp_path / "bot.db"
    with closing(sqlite3.connect(database, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write
        bot = Bot(tmp_path, api.base_url, SQLITE_BUSY_TIMEOUT_MS="300")
        bots.append(bot)
        await bot.start("run")
        assert await bot.exit_status(30) == EXIT_ENVIRONMENT
    assert bot.last_line() == (
        f"coffeebot: the database {database} is locked by another process (another coffeebot?);"
        " gave up after SQLITE_BUSY_TIMEOUT_MS=300"
    )
    bot.clean()


async def test_an_unsupported_database_url_is_one_line_before_any_network(
    tmp_path: Path, bots: list[Bot]
) -> None:
    bot = Bot(tmp_path, "http://127.0.0.1:9/bot", DATABASE_URL="mysql://cafe:pw@db/cafe")
    bots.append(bot)
    await bot.start("run")
    assert await bot.exit_status(30) == EXIT_CONFIGURATION
    assert bot.output.strip() == (
        "coffeebot: DATABASE_URL mysql://… is not supported: use sqlite:///relative.db,"
        " sqlite:////absolute.db, sqlite:///:memory: or postgresql://user@host:5432/database"
    )
    assert "pw" not in bot.output
    bot.clean()
