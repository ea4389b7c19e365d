"""Electoral silence: only direct answers leave; campaign mail waits in the outbox."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.settings import Settings
from conversations.catalogue import Catalogue
from conversations.model import QueueEmail
from storage import Storage
from tests.conftest import NOW
from tests.smtp_server import smtp_server
from tests.telegram_fakes import FakeBotApi, Updates, running_bot
from tests.test_admin import ADMIN, admin_settings
from tests.test_mail import Clock, confirmation, mailer_for, queue, store

__all__ = ["store"]  # the fixture, shared with the outbox tests


def winner_email(user_id: int) -> QueueEmail:
    params = (("first_name", "Zoé"), ("ticket", "TK1"), ("deadline", "demain"), ("travel", "—"))
    return QueueEmail("winner", f"p{user_id}@free.fr", "fr", params, key=f"winner:TK{user_id}")


async def test_during_silence_only_confirmations_leave_and_the_rest_waits(
    settings: Settings, store: Storage, texts: Catalogue
) -> None:
    silence = f"{NOW.isoformat()}/{(NOW + timedelta(hours=2)).isoformat()}"
    settings = settings.replace(silence_periods=silence)
    clock = Clock()
    await queue(store, 1, confirmation(1))
    await queue(store, 2, winner_email(2))
    with smtp_server() as (inbox, port):
        mailer = mailer_for(settings, store, texts, clock, port)
        assert await mailer.send_due() == 1
        assert [m["To"] for m in inbox.messages] == ["zoe@orange.fr"]
        clock.advance(3600)
        assert await mailer.send_due() == 0
        assert await store.outbox.counts() == {"sent": 1, "pending": 1}
        clock.advance(3600)  # the silence is over
        assert await mailer.send_due() == 1
        assert [m["To"] for m in inbox.messages] == ["zoe@orange.fr", "p2@free.fr"]


async def test_a_meeting_cannot_be_announced_during_silence(
    settings: Settings, tmp_path: Path
) -> None:
    silence = f"{NOW.isoformat()}/{(NOW + timedelta(hours=2)).isoformat()}"
    settings = admin_settings(settings, tmp_path).replace(silence_periods=silence)
    api, updates = FakeBotApi(), Updates()
    admin = Updates.user(ADMIN)
    async with running_bot(settings, api, Clock(NOW + timedelta(minutes=5))) as bot:
        await bot.feed(updates.text(admin, "/rendezvous 2026-12-10 15:30 QG"))
        await bot.feed(updates.text(admin, "/rendezvous"))
    said, current = api.texts_to(ADMIN)[-2:]
    assert "silence électoral jusqu’au jeudi 26 novembre 2026 à 13 h, heure de Paris" in said
    assert "Aucun rendez-vous" in current
