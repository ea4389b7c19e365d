"""Electoral silence: only direct answers leave; campaign mail waits in the outbox."""

from __future__ import annotations

from datetime import timedelta

from bot.settings import Settings
from conversations.catalogue import Catalogue
from conversations.model import QueueEmail
from storage.sqlite import SqliteStore
from tests.conftest import NOW
from tests.smtp_server import smtp_server
from tests.test_mail import Clock, confirmation, mailer_for, queue, store

__all__ = ["store"]  # the fixture, shared with the outbox tests


def winner_email(user_id: int) -> QueueEmail:
    params = (("first_name", "Zoé"), ("ticket", "TK1"), ("deadline", "demain"), ("travel", "—"))
    return QueueEmail("winner", f"p{user_id}@free.fr", "fr", params, key=f"winner:TK{user_id}")


async def test_during_silence_only_confirmations_leave_and_the_rest_waits(
    settings: Settings, store: SqliteStore, texts: Catalogue
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
        assert await store.outbox_counts() == {"sent": 1, "pending": 1}
        clock.advance(3600)  # the silence is over
        assert await mailer.send_due() == 1
        assert [m["To"] for m in inbox.messages] == ["zoe@orange.fr", "p2@free.fr"]
