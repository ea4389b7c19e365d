"""The announcements' store on every backend: who each audience reaches, one batch per
confirmation whatever the presses, each person once, cancelling, blocked chats, counts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from conversations.announcements import Announcement, AnnouncementStep, Audience
from conversations.model import Consent, ConsentKind, Participant, RecordConsent
from conversations.outgoing import TelegramKind, TelegramMessage
from storage import Storage, open_storage
from storage.announcements import AnnouncementStore, StoredAnnouncement
from storage.migrator import migrate
from tests.conftest import NOW
from tests.factories import entered
from tests.test_storage import BACKENDS, backend_url

TEXT = "Merci à tous\u202f! <b>{candidate}</b>"


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    url = backend_url(request, tmp_path)
    opened = await open_storage(url)
    await migrate(opened.database, NOW)
    yield opened
    await opened.close()


async def save(store: Storage, person: Participant) -> None:
    await store.participants.save(person, 0, [RecordConsent(c) for c in person.consents], None, NOW)


async def people(store: Storage) -> None:
    """1 to 4 are entrants (2 and 3 agreed to news on Telegram, 3 and 4 by email), 5 not confirmed
    but agreed to news on Telegram, 6 withdrew its Telegram consent."""
    news = {
        2: [ConsentKind.NEWS_TELEGRAM],
        3: [ConsentKind.NEWS_TELEGRAM, ConsentKind.NEWS_EMAIL],
        4: [ConsentKind.NEWS_EMAIL],
    }
    for user_id in range(1, 5):
        person = entered(user_id)
        extra = tuple(Consent(kind, "v1", NOW) for kind in news.get(user_id, ()))
        await save(store, replace(person, consents=person.consents + extra))
    unconfirmed = Participant(user_id=5, language="en", created_at=NOW)
    await save(
        store, replace(unconfirmed, consents=(Consent(ConsentKind.NEWS_TELEGRAM, "v1", NOW),))
    )
    await save(store, entered(6, consents=(Consent(ConsentKind.NEWS_TELEGRAM, "v1", NOW),)))
    await store.database.run(
        [("UPDATE consents SET withdrawn_at = ? WHERE user_id = 6", (NOW.isoformat(),))]
    )


def draft(number: int = 1, admin: int = 900) -> Announcement:
    return Announcement(number, admin, NOW)


async def confirmed(
    store: Storage, audience: Audience, number: int = 1
) -> tuple[StoredAnnouncement, Announcement]:
    announcements = store.announcements
    assert await announcements.save(draft(number), await announcements.latest(), NOW)
    stored = await announcements.latest()
    assert stored is not None
    ready = replace(
        stored.announcement,
        step=AnnouncementStep.PREVIEW,
        text=TEXT,
        audience=audience,
        recipients=3,
    )
    assert await announcements.save(ready, stored, NOW)
    previewed = await announcements.latest()
    assert previewed is not None
    return previewed, replace(ready, step=AnnouncementStep.SENDING, confirmed_by=901)


async def telegram_rows(store: Storage, batch: str) -> list[tuple[int, str, str]]:
    rows = await store.database.fetch(
        "SELECT user_id, status, params FROM telegram_outbox WHERE batch = ? ORDER BY user_id",
        (batch,),
    )
    return [(row[0], row[1], row[2]) for row in rows]


async def test_each_audience_counts_whom_it_reaches(store: Storage) -> None:
    await people(store)
    assert await store.announcements.recipients() == {
        Audience.ENTRANTS: 5,
        Audience.NEWS_TELEGRAM: 3,
        Audience.NEWS_EMAIL: 2,
    }


async def test_two_confirmations_of_one_preview_queue_one_batch_each_person_once(
    store: Storage,
) -> None:
    await people(store)
    previewed, sending = await confirmed(store, Audience.NEWS_TELEGRAM)
    assert await store.announcements.save(sending, previewed, NOW)
    # The second press read the same preview: it changes nothing.
    assert not await store.announcements.save(sending, previewed, NOW + timedelta(seconds=1))
    rows = await telegram_rows(store, "announce:1")
    assert [(user, status) for user, status, _ in rows] == [
        (2, "pending"),
        (3, "pending"),
        (5, "pending"),
    ]
    # Each row names the announcement; its text is read when the messages fall due.
    assert all(json.loads(params) == {"announcement": 1} for _, _, params in rows)
    due = await store.telegram.due(NOW, 10, hold_campaign=False)
    assert [queued.message.params for queued in due] == [{"text": TEXT}] * 3
    assert await store.telegram.due(NOW, 10, hold_campaign=True) == []
    keys = await store.database.fetch(
        "SELECT idempotency_key, campaign, text_key FROM telegram_outbox ORDER BY user_id"
    )
    assert [tuple(row) for row in keys] == [
        ("announce:1:2", 1, "announce.message"),
        ("announce:1:3", 1, "announce.message"),
        ("announce:1:5", 1, "announce.message"),
    ]
    latest = await store.announcements.latest()
    assert latest is not None and latest.announcement == sending


async def test_cancelling_drops_what_has_not_left_and_counts_stay(store: Storage) -> None:
    await people(store)
    previewed, sending = await confirmed(store, Audience.ENTRANTS)
    assert await store.announcements.save(sending, previewed, NOW)
    await store.telegram.mark_sent("announce:1:1", NOW)
    assert await store.telegram.start_sending("announce:1:2")
    await store.telegram.mark_blocked("announce:1:2", 1, NOW)
    stored = await store.announcements.latest()
    assert stored is not None
    progress = await store.announcements.progress(stored)
    assert (progress.queued, progress.sent, progress.blocked, progress.waiting) == (5, 1, 1, 3)
    cancelled = replace(sending, step=AnnouncementStep.CANCELLED)
    stored = await store.announcements.latest()
    assert stored is not None
    assert await store.announcements.save(cancelled, stored, NOW)
    statuses = [status for _, status, _ in await telegram_rows(store, "announce:1")]
    assert statuses == ["sent", "blocked", "cancelled", "cancelled", "cancelled"]
    stored = await store.announcements.latest()
    assert stored is not None
    progress = await store.announcements.progress(stored)
    assert (progress.sent, progress.blocked, progress.cancelled, progress.waiting) == (1, 1, 3, 0)
    # The outbox purged: the counts last seen stay on the announcement.
    await store.database.run([("DELETE FROM telegram_outbox", ())])
    stored = await store.announcements.latest()
    assert stored is not None and stored.announcement.step == AnnouncementStep.CANCELLED
    assert await store.announcements.progress(stored) == progress


async def test_a_batch_all_gone_makes_the_announcement_sent(store: Storage) -> None:
    await people(store)
    previewed, sending = await confirmed(store, Audience.NEWS_TELEGRAM)
    assert await store.announcements.save(sending, previewed, NOW)
    for user_id in (2, 3, 5):
        await store.telegram.mark_sent(f"announce:1:{user_id}", NOW)
    stored = await store.announcements.latest()
    assert stored is not None
    progress = await store.announcements.progress(stored)
    assert progress.done and progress.sent == 3
    after = await store.announcements.latest()
    assert after is not None and after.announcement.step == AnnouncementStep.SENT
    assert [s.announcement.number for s in await store.announcements.recent(5)] == [1]


async def test_a_person_who_blocked_the_bot_is_left_out_until_they_write_again(
    store: Storage,
) -> None:
    await people(store)
    previewed, sending = await confirmed(store, Audience.NEWS_TELEGRAM)
    assert await store.announcements.save(sending, previewed, NOW)
    assert await store.telegram.start_sending("announce:1:3")
    await store.telegram.mark_blocked("announce:1:3", 1, NOW + timedelta(minutes=1))
    assert (await store.announcements.recipients())[Audience.NEWS_TELEGRAM] == 2
    assert (await store.announcements.recipients())[Audience.ENTRANTS] == 4
    stored = await store.announcements.latest()
    assert stored is not None
    done = replace(sending, step=AnnouncementStep.SENT)
    assert await store.announcements.save(done, stored, NOW)
    previewed, sending = await confirmed(store, Audience.NEWS_TELEGRAM, number=2)
    assert await store.announcements.save(sending, previewed, NOW + timedelta(minutes=2))
    assert [user for user, _, _ in await telegram_rows(store, "announce:2")] == [2, 5]
    # They wrote to the bot again: their row changed after the refusal.
    person = await store.participants.load(3)
    assert person is not None
    await store.participants.save(person, 1, [], None, NOW + timedelta(minutes=3))
    assert (await store.announcements.recipients())[Audience.NEWS_TELEGRAM] == 3


async def test_an_email_batch_goes_to_confirmed_addresses_that_agreed(store: Storage) -> None:
    await people(store)
    previewed, sending = await confirmed(store, Audience.NEWS_EMAIL)
    assert await store.announcements.save(sending, previewed, NOW)
    rows = await store.database.fetch(
        "SELECT idempotency_key, user_id, kind, recipient, status FROM outbox"
        " WHERE batch = 'announce:1' ORDER BY user_id"
    )
    assert [tuple(row) for row in rows] == [
        ("announce:1:3", 3, "announcement", "p3@free.fr", "pending"),
        ("announce:1:4", 4, "announcement", "p4@free.fr", "pending"),
    ]
    due = await store.outbox.due(NOW, 10)
    assert sorted((email.recipient, email.params["text"]) for email in due) == [
        ("p3@free.fr", TEXT),
        ("p4@free.fr", TEXT),
    ]
    stored = await store.announcements.latest()
    assert stored is not None
    assert await store.announcements.save(
        replace(sending, step=AnnouncementStep.CANCELLED), stored, NOW
    )
    statuses = await store.database.fetch("SELECT status, recipient FROM outbox")
    assert [tuple(row) for row in statuses] == [("cancelled", None)] * 2


async def test_a_new_draft_replaces_a_draft_but_keeps_one_that_was_sent(store: Storage) -> None:
    announcements: AnnouncementStore = store.announcements
    assert await announcements.save(draft(1), None, NOW)
    # Another admin's /annonce at the same time, numbered the same: refused.
    assert not await announcements.save(draft(1, admin=901), None, NOW)
    first = await announcements.latest()
    assert first is not None and first.announcement.requested_by == 900
    assert await announcements.save(draft(2, admin=901), first, NOW)
    rows = await store.database.fetch("SELECT number, requested_by FROM announcements")
    assert [tuple(row) for row in rows] == [(2, 901)]
    second = await announcements.latest()
    assert second is not None
    sent = replace(second.announcement, step=AnnouncementStep.SENT)
    assert await announcements.save(sent, second, NOW)
    after = await announcements.latest()
    assert after is not None
    assert await announcements.save(draft(3), after, NOW)
    rows = await store.database.fetch("SELECT number FROM announcements ORDER BY number")
    assert [row[0] for row in rows] == [2, 3]
    # Discarded: the draft is gone.
    latest = await announcements.latest()
    assert await announcements.save(None, latest, NOW)
    assert [s.announcement.number for s in await announcements.recent(5)] == []


async def test_counting_never_undoes_a_cancellation_written_meanwhile(store: Storage) -> None:
    await people(store)
    previewed, sending = await confirmed(store, Audience.NEWS_TELEGRAM)
    assert await store.announcements.save(sending, previewed, NOW)
    read_before = await store.announcements.latest()
    assert read_before is not None
    cancelled = replace(sending, step=AnnouncementStep.CANCELLED)
    assert await store.announcements.save(cancelled, read_before, NOW)
    # /stats had read the announcement sending, before the cancellation.
    progress = await store.announcements.progress(read_before)
    assert progress.done and progress.cancelled == 3
    after = await store.announcements.latest()
    assert after is not None and after.announcement.step == AnnouncementStep.CANCELLED


async def test_a_message_whose_announcement_is_gone_is_cancelled_not_sent_empty(
    store: Storage,
) -> None:
    await people(store)
    previewed, sending = await confirmed(store, Audience.NEWS_TELEGRAM)
    assert await store.announcements.save(sending, previewed, NOW)
    previewed, sending = await confirmed(store, Audience.NEWS_EMAIL, number=2)
    assert await store.announcements.save(
        replace(sending, step=AnnouncementStep.SENDING), previewed, NOW
    )
    # Say a purge removed the first announcement while its batch was waiting.
    await store.database.run([("DELETE FROM announcements WHERE number = 1", ())])
    assert await store.telegram.due(NOW, 10, hold_campaign=False) == []
    statuses = await telegram_rows(store, "announce:1")
    assert [status for _, status, _ in statuses] == ["cancelled"] * 3
    await store.database.run([("DELETE FROM announcements WHERE number = 2", ())])
    assert await store.outbox.due(NOW, 10) == []
    rows = await store.database.fetch("SELECT status, recipient FROM outbox")
    assert [tuple(row) for row in rows] == [("cancelled", None)] * 2


async def test_a_person_s_own_email_is_not_kept_waiting_behind_an_announcement(
    store: Storage,
) -> None:
    """An email announcement queues every recipient at once, and EMAILS_PER_HOUR lets 1,000 go
    an hour: a confirmation code asked for just after waited behind all of them (five hours
    behind 5,000 news contacts). The emails of no batch go first."""
    await people(store)
    previewed, sending = await confirmed(store, Audience.NEWS_EMAIL)
    assert await store.announcements.save(sending, previewed, NOW)
    later = (NOW + timedelta(seconds=1)).isoformat()
    await store.database.run(
        [
            (
                "INSERT INTO outbox (idempotency_key, user_id, kind, recipient, language, params,"
                " status, attempts, next_attempt_at, created_at)"
                " VALUES ('confirmation:1:x', 1, 'confirmation', 'p1@free.fr', 'fr', '{}',"
                " 'pending', 0, ?, ?)",
                (later, later),
            )
        ]
    )
    [first] = await store.outbox.due(NOW + timedelta(seconds=2), 1)
    assert first.key == "confirmation:1:x"
    every = await store.outbox.due(NOW + timedelta(seconds=2), 10)
    assert every[0].key == "confirmation:1:x"
    assert sorted(email.key for email in every[1:]) == ["announce:1:3", "announce:1:4"]


async def test_a_message_to_one_person_is_not_kept_waiting_behind_a_telegram_announcement(
    store: Storage,
) -> None:
    """A Telegram announcement queues every recipient at once, sent at 20 a second: a winner's
    notice, a reminder or a payment notice queued just after waited behind all of them. The
    messages queued one by one go before those queued for many (announcements, the draw's
    thanks to everyone not drawn)."""
    await people(store)
    previewed, sending = await confirmed(store, Audience.ENTRANTS)
    assert await store.announcements.save(sending, previewed, NOW)
    later = NOW + timedelta(seconds=1)
    one_by_one = [
        TelegramMessage(
            key="winner:TK1",
            user_id=1,
            kind=TelegramKind.DRAW_RESULT,
            language="fr",
            text_key="winner.notify",
            campaign=True,
            batch="draw-result",
        ),
        TelegramMessage(
            key="expense-paid:TK2:1",
            user_id=2,
            kind=TelegramKind.EXPENSE_PAID,
            language="fr",
            text_key="expense.paid",
        ),
    ]
    await store.telegram.queue(one_by_one, later)
    soon = NOW + timedelta(seconds=2)
    [first] = await store.telegram.due(soon, 1, hold_campaign=False)
    assert first.message.key == "expense-paid:TK2:1"
    every = [queued.message.key for queued in await store.telegram.due(soon, 10, False)]
    assert every[:2] == ["expense-paid:TK2:1", "winner:TK1"]
    assert sorted(every[2:]) == [f"announce:1:{n}" for n in (1, 2, 3, 4, 6)]
