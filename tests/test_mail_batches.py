"""A batch of emails leaves the event loop free between emails: with a mail transport that
never waits (the .eml files, a fast local server), a batch of a hundred would otherwise hold
every person's steps until its end."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.bootstrap import build_mailer, open_migrated_storage
from bot.settings import Settings
from conversations.catalogue import Catalogue
from tests.test_mail import Clock, confirmation, queue


async def test_steps_run_between_the_emails_of_a_batch(
    settings: Settings, texts: Catalogue, tmp_path: Path
) -> None:
    store = await open_migrated_storage(settings, Clock())
    try:
        for user_id in range(1, 6):
            await queue(store, user_id, confirmation(user_id, f"p{user_id}@free.fr"))
        folder = tmp_path / "outbox"
        mailer = build_mailer(
            settings.replace(mail_outbox_dir=str(folder)), store, texts, "coffee_test_bot", Clock()
        )
        written_when_a_step_ran: list[int] = []

        async def steps() -> None:
            while True:
                written_when_a_step_ran.append(len(list(folder.glob("*.eml"))))
                await asyncio.sleep(0)

        stepping = asyncio.create_task(steps())
        await asyncio.sleep(0)
        assert await mailer.send_due() == 5
        stepping.cancel()
        await asyncio.gather(stepping, return_exceptions=True)
        assert {1, 2, 3, 4} <= set(written_when_a_step_ran), written_when_a_step_ran
    finally:
        await store.close()
