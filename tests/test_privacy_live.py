"""The real `coffeebot run` process: what it prints on stderr names nobody, through a signup, a
blocked chat and an erasure; without SMTP_URL it says at start where the emails go instead."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bot_api_server import LocalBotApi
from tests.live import BotProcess, Person, started

pytestmark = pytest.mark.slow

FIRST = "Zéphyrine"


@pytest.fixture
async def api() -> AsyncIterator[LocalBotApi]:
    async with started(LocalBotApi()) as server:
        yield server


def eml_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.eml"))


async def test_the_bots_stderr_names_nobody_and_says_where_emails_go(
    api: LocalBotApi, tmp_path: Path
) -> None:
    bot = BotProcess(api, tmp_path)
    await bot.start()
    person = Person(api, 4243, first_name=FIRST)
    try:
        await person.sign_up()
        await api.wait_for(lambda: bool(eml_files(tmp_path / "outbox")), 20)
        api.blocked.add(person.user_id)
        await api.push(person.text(f"Je m’appelle {FIRST}, mon numéro est {person.phone}"))
        await api.wait_for(lambda: "Forbidden" in bot.logs(), 20)
        api.blocked.clear()
        await api.push(person.text("/supprimer"))
        await api.wait_for(lambda: "erase.confirm" in str(person.buttons()), 20)
        await api.push(person.press("erase.confirm"))
        await api.wait_for(lambda: "effacé" in api.texts_to(person.user_id)[-1], 20)
        await api.wait_for(lambda: not eml_files(tmp_path / "outbox"), 20)
    finally:
        await bot.stop()
    logs = bot.logs()
    assert "SMTP_URL is not set: emails are NOT sent" in logs
    assert str(tmp_path / "outbox") in logs and "written to" in logs
    for value in (FIRST, "Martin", person.email, person.phone, person.phone[3:]):
        assert value not in logs, value
    assert "Traceback" not in logs
