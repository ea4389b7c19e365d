"""Enumeration, squatting and spam through the real Application: a taken phone or address
gets the same replies as a free one, a squatter locks nobody out, erase-and-redo loops stop,
and an hourly cap pauses the emails and tells the admins once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings
from conversations.model import Participant, Step
from conversations.quotas import Usage
from storage import open_database
from storage.participants import Participants
from tests.conftest import run_sql
from tests.smtp_server import body, smtp_server
from tests.telegram_fakes import FakeBotApi, Updates, running_bot
from tests.test_admin import ADMIN, admin_settings, seed
from tests.test_email_loop import confirmation_token, mail_to

ZOE, LEA, MAX, EVE = 1001, 1002, 1003, 1004


def signup(
    updates: Updates,
    user: dict[str, Any],
    email: str,
    phone: str | None = None,
    friend: str | None = None,
) -> list[dict[str, Any]]:
    """A whole signup; the phone typed, or shared with the contact button when None."""
    shared = updates.contact(user, "33612345678", owner_id=user["id"])
    friends = [updates.press(user, "friends.add"), updates.text(user, friend)] if friend else []
    return [
        updates.text(user, "/start"),
        updates.press(user, "welcome.join"),
        updates.press(user, "consent.rules"),
        updates.press(user, "consent.processing"),
        updates.press(user, "consent.adult"),
        updates.press(user, "consent.continue"),
        updates.press(user, "name.profile"),
        updates.text(user, "Martin"),
        updates.text(user, phone) if phone else shared,
        updates.text(user, email),
        updates.text(user, "69003"),
        *friends,
        updates.press(user, "friends.done"),
        updates.press(user, "question.skip"),
        updates.press(user, "summary.confirm"),
    ]


def erase(updates: Updates, user: dict[str, Any]) -> list[dict[str, Any]]:
    return [updates.text(user, "/supprimer"), updates.press(user, "erase.confirm")]


def said(api: FakeBotApi, chat_id: int, since: int = 0) -> list[str]:
    """What the bot sent the chat from its `since`th call: text and buttons, as data."""
    return [
        json.dumps(
            {key: call.params.get(key) for key in ("text", "reply_markup")},
            ensure_ascii=False,
            sort_keys=True,
            default=str,
        )
        for call in api.to_chat(chat_id)[since:]
    ]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_a_taken_phone_typed_gets_the_same_replies_as_a_free_one(
    settings: Settings,
) -> None:
    api, updates = FakeBotApi(), Updates()
    zoe, lea, max_ = (Updates.user(uid, "Zoé") for uid in (ZOE, LEA, MAX))
    async with running_bot(settings, api) as bot:
        # Zoé's number, vouched for by Telegram's contact button.
        await bot.feed(*signup(updates, zoe, "zoe@free.fr"))
        await bot.feed(*signup(updates, lea, "lea@free.fr", phone="06 12 34 56 78"))
        await bot.feed(*signup(updates, max_, "lea@free.fr", phone="06 98 76 54 32"))
        free = [text.replace("6 98 76 54 32", "6 12 34 56 78") for text in said(api, MAX)]
        assert said(api, LEA) == free
        await bot.feed(updates.text(lea, "/mesdonnees"))
        data = json.loads(api.documents_to(LEA)[-1])
        assert data["profile"]["phone"] == "+33612345678"
        assert data["profile"]["phone_shared_with_the_telegram_button"] is False


async def test_a_taken_address_gets_the_same_replies_and_its_mailbox_is_told(
    settings: Settings,
) -> None:
    with smtp_server() as (inbox, port):
        settings = settings.replace(smtp_url=f"smtp://127.0.0.1:{port}", outbox_poll_seconds=0.05)
        api, updates = FakeBotApi(), Updates()
        zoe, lea, max_ = (Updates.user(uid, "Zoé") for uid in (ZOE, LEA, MAX))
        async with running_bot(settings, api) as bot:
            await bot.feed(*signup(updates, zoe, "Zoe.Martin+cafe@gmail.com"))
            token = confirmation_token(await mail_to(inbox, "Zoe.Martin+cafe@gmail.com"))
            await bot.feed(updates.text(zoe, f"/start c_{token}"))
            # Another spelling of Zoé's confirmed mailbox, and a free address.
            await bot.feed(*signup(updates, lea, "zoemartin@gmail.com", phone="0611111111"))
            await bot.feed(*signup(updates, max_, "max.dupont@gmail.com", phone="0611111111"))
            free = [
                text.replace("max.dupont@gmail.com", "zoemartin@gmail.com")
                for text in said(api, MAX)
            ]
            assert said(api, LEA) == free
            notice = await mail_to(inbox, "zoemartin@gmail.com")
            await mail_to(inbox, "max.dupont@gmail.com")
        text = body(notice, "plain")
        assert "déjà confirmée pour un autre compte Telegram" in text
        assert "?start=c_" not in text and "code" not in notice["Subject"]
        assert not any(char.isdigit() for char in text.split("--")[0])


async def test_a_squatter_does_not_lock_the_owner_out(settings: Settings) -> None:
    with smtp_server() as (inbox, port):
        settings = settings.replace(smtp_url=f"smtp://127.0.0.1:{port}", outbox_poll_seconds=0.05)
        api, updates = FakeBotApi(), Updates()
        zoe, eve = Updates.user(ZOE, "Zoé"), Updates.user(EVE, "Ève")
        async with running_bot(settings, api) as bot:
            # Ève types Zoé's phone and address first, and confirms her summary.
            await bot.feed(*signup(updates, eve, "zoe@free.fr", phone="06 12 34 56 78"))
            await mail_to(inbox, "zoe@free.fr")
            # Zoé shares her number with the button and gives her address: both are accepted.
            await bot.feed(*signup(updates, zoe, "ZOE@free.fr"))
            await asyncio.sleep(0.2)
            mails = inbox.to("ZOE@free.fr")
            assert len(mails) == 1
            await bot.feed(updates.text(zoe, f"/start c_{confirmation_token(mails[0])}"))
            await bot.feed(updates.text(zoe, "/monticket"))
            assert "Vous participez au tirage" in api.texts_to(ZOE)[-1]
            # The link Ève had sent to Zoé's mailbox confirms nothing for Ève.
            eve_token = confirmation_token(inbox.to("zoe@free.fr")[0])
            await bot.feed(updates.text(eve, f"/start c_{eve_token}"))
            await bot.feed(updates.text(eve, "/monticket"))
            assert "Vous participez au tirage" not in api.texts_to(EVE)[-1]


async def test_erase_and_redo_sends_a_mailbox_no_more_than_its_daily_limit(
    settings: Settings,
) -> None:
    with smtp_server() as (inbox, port):
        settings = settings.replace(
            smtp_url=f"smtp://127.0.0.1:{port}",
            outbox_poll_seconds=0.05,
            confirmation_emails_per_address_per_day=2,
            erasures_per_week=100,
        )
        api, updates = FakeBotApi(), Updates()
        eve, max_ = Updates.user(EVE, "Ève"), Updates.user(MAX, "Max")
        async with running_bot(settings, api) as bot:
            for round_ in range(4):
                victim = f"victim+{round_}@gmail.com"
                await bot.feed(*signup(updates, eve, victim, "0611111111"))
                if round_ < 2:
                    # The attacker waits for it to leave: an erasure drops what is still queued.
                    await mail_to(inbox, victim)
                # The same words whether an email left or not: nothing tells of other accounts.
                assert api.texts_to(EVE)[-1].startswith(
                    f"📧 Un e-mail de confirmation part vers {victim}"
                )
                await bot.feed(*erase(updates, eve))
            # Another account, the same mailbox: still past the limit.
            await bot.feed(*signup(updates, max_, "Victim@gmail.com", "0622222222"))
            assert "Un e-mail de confirmation part vers Victim@gmail.com" in api.texts_to(MAX)[-1]
            await asyncio.sleep(0.3)  # time for any wrongly queued email to leave
        victims = [m for m in inbox.messages if "victim" in m["To"].casefold()]
        assert len(victims) == 2


async def test_erase_and_redo_invites_a_stranger_once(settings: Settings) -> None:
    with smtp_server() as (inbox, port):
        settings = settings.replace(
            smtp_url=f"smtp://127.0.0.1:{port}", outbox_poll_seconds=0.05, erasures_per_week=100
        )
        api, updates = FakeBotApi(), Updates()
        eve = Updates.user(EVE, "Ève")
        async with running_bot(settings, api) as bot:
            for round_ in range(3):
                own = f"eve{round_}@free.fr"
                friend = f"Stranger+{round_}@gmail.com" if round_ else "stranger@gmail.com"
                await bot.feed(*signup(updates, eve, own, "0611111111", friend=friend))
                token = confirmation_token(await mail_to(inbox, own))
                await bot.feed(updates.text(eve, f"/start c_{token}"))
                if round_ == 0:
                    await mail_to(inbox, "stranger@gmail.com")
                await bot.feed(*erase(updates, eve))
            await asyncio.sleep(0.3)
        strangers = [m for m in inbox.messages if "stranger" in m["To"].casefold()]
        assert len(strangers) == 1


async def test_a_new_signup_waits_a_week_after_too_many_erasures(settings: Settings) -> None:
    clock = Clock()
    settings = settings.replace(erasures_per_week=2)
    api, updates = FakeBotApi(), Updates()
    eve = Updates.user(EVE, "Ève")
    async with running_bot(settings, api, clock) as bot:
        for _ in range(2):
            await bot.feed(*signup(updates, eve, "eve@free.fr", "0611111111"))
            await bot.feed(*erase(updates, eve))
            assert "Vos données sont effacées" in api.texts_to(EVE)[-1]
        await bot.feed(updates.text(eve, "/start"), updates.press(eve, "welcome.join"))
        assert "plusieurs fois cette semaine" in api.texts_to(EVE)[-1]
        # Nothing was started, and the erasure itself is never refused.
        await bot.feed(*erase(updates, eve))
        assert "Vos données sont effacées" in api.texts_to(EVE)[-1]
        clock.now += timedelta(days=7, minutes=1)
        await bot.feed(updates.text(eve, "/start"), updates.press(eve, "welcome.join"))
        assert "plusieurs fois cette semaine" not in api.texts_to(EVE)[-1]
        assert "1/8" in api.texts_to(EVE)[-1]


async def test_the_hourly_cap_pauses_the_emails_and_tells_the_admins_once(
    settings: Settings,
) -> None:
    clock = Clock()
    admin = 9001
    with smtp_server() as (inbox, port):
        settings = settings.replace(
            smtp_url=f"smtp://127.0.0.1:{port}",
            outbox_poll_seconds=0.05,
            emails_per_hour=2,
            admin_ids=frozenset({admin}),
        )
        api, updates = FakeBotApi(), Updates()
        people = [Updates.user(2000 + n, "Zoé") for n in range(4)]
        async with running_bot(settings, api, clock) as bot:
            for n, person in enumerate(people):
                await bot.feed(*signup(updates, person, f"p{n}@free.fr", f"061111111{n}"))
            await asyncio.sleep(0.5)
            assert len(inbox.messages) == 2
            warnings = [t for t in api.texts_to(admin) if "Limite d’e-mails atteinte" in t]
            assert len(warnings) == 1
            clock.now += timedelta(hours=1, seconds=1)
            for _ in range(100):
                if len(inbox.messages) == 4:
                    break
                await asyncio.sleep(0.05)
            assert len(inbox.messages) == 4
        assert sorted(m["To"] for m in inbox.messages) == [f"p{n}@free.fr" for n in range(4)]


async def test_the_draw_preview_reports_entries_that_share_a_phone(
    settings: Settings, tmp_path: Path
) -> None:
    settings = admin_settings(settings, tmp_path).replace(winners=2)
    await seed(settings, 6)
    # Typed numbers prove nothing: 2 and 5 gave 1's number, 4 gave 3's.
    await run_sql(
        settings.database_url,
        "UPDATE entries SET phone = '+33612340001' WHERE user_id IN (2, 5)",
        "UPDATE entries SET phone = '+33612340003' WHERE user_id = 4",
        "UPDATE entries SET phone = '+33612340006', excluded_reason = 'other' WHERE user_id = 6",
    )
    api, updates = FakeBotApi(), Updates()
    admin = Updates.user(ADMIN)
    async with running_bot(settings, api) as bot:
        await bot.feed(updates.text(admin, "/draw 1"))
        preview = api.texts_to(ADMIN)[-1]
    assert "2 numéros de téléphone sont donnés par plusieurs entrées (5 tickets)" in preview
    assert "• TK00000001, TK00000002, TK00000005\n• TK00000003, TK00000004" in preview
    assert "+336" not in preview
    assert "{" not in preview


async def test_the_draw_preview_says_nothing_when_no_phone_is_shared(
    settings: Settings, tmp_path: Path
) -> None:
    settings = admin_settings(settings, tmp_path).replace(winners=2)
    await seed(settings, 3)
    api, updates = FakeBotApi(), Updates()
    admin = Updates.user(ADMIN)
    async with running_bot(settings, api) as bot:
        await bot.feed(updates.text(admin, "/draw 1"))
        preview = api.texts_to(ADMIN)[-1]
    assert "Tirage prêt" in preview and "téléphone" not in preview


async def test_of_two_codes_sent_to_one_mailbox_only_the_first_confirms(
    settings: Settings,
) -> None:
    """Both accounts asked before either confirmed, so the mailbox got two codes: whoever
    holds them owns the mailbox, and the second is told the address is already confirmed."""
    with smtp_server() as (inbox, port):
        settings = settings.replace(smtp_url=f"smtp://127.0.0.1:{port}", outbox_poll_seconds=0.05)
        api, updates = FakeBotApi(), Updates()
        zoe, lea = Updates.user(ZOE, "Zoé"), Updates.user(LEA, "Léa")
        async with running_bot(settings, api) as bot:
            await bot.feed(*signup(updates, zoe, "zoe@free.fr", phone="0611111111"))
            await bot.feed(*signup(updates, lea, "Zoe@Free.fr", phone="0622222222"))
            zoe_token = confirmation_token(await mail_to(inbox, "zoe@free.fr"))
            lea_token = confirmation_token(await mail_to(inbox, "Zoe@free.fr"))
            await bot.feed(updates.text(zoe, f"/start c_{zoe_token}"))
            await bot.feed(updates.text(lea, f"/start c_{lea_token}"))
            assert "déjà confirmée pour un autre compte" in api.texts_to(LEA)[-1]
            await bot.feed(updates.text(lea, "/monticket"), updates.text(zoe, "/monticket"))
            assert "Vous participez au tirage" not in api.texts_to(LEA)[-1]
            assert "Vous participez au tirage" in api.texts_to(ZOE)[-1]


async def test_two_accounts_racing_for_a_mailbox_s_last_email_send_it_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both steps read the mailbox's count before either commits (another replica, or a step
    waiting for its database): the count taken in the step's transaction decides, so one email
    leaves, and the other account gets the same words as if it had."""
    read = asyncio.Barrier(2)
    first_reads: set[int] = set()
    usage = Participants.usage

    async def racing_usage(
        store: Participants, state: Participant | None, user_id: int, now: datetime
    ) -> Usage:
        counted = await usage(store, state, user_id, now)
        if state is not None and state.step == Step.SUMMARY and user_id not in first_reads:
            first_reads.add(user_id)
            await asyncio.wait_for(read.wait(), 10)
        return counted

    monkeypatch.setattr(Participants, "usage", racing_usage)
    with smtp_server() as (inbox, port):
        settings = settings.replace(
            smtp_url=f"smtp://127.0.0.1:{port}",
            outbox_poll_seconds=0.05,
            confirmation_emails_per_address_per_day=1,
        )
        api, updates = FakeBotApi(), Updates()
        zoe, lea = Updates.user(ZOE, "Zoé"), Updates.user(LEA, "Léa")
        async with running_bot(settings, api) as bot:
            zoe_steps = signup(updates, zoe, "zoe@free.fr", phone="0611111111")
            lea_steps = signup(updates, lea, "Zoe@free.fr", phone="0622222222")
            await bot.feed(*zoe_steps[:-1], *lea_steps[:-1])
            await bot.feed(zoe_steps[-1], lea_steps[-1])
            assert first_reads == {ZOE, LEA}
            for _ in range(100):
                if inbox.messages:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # time for a second email to leave, were one queued
            for user, spelled in ((ZOE, "zoe@free.fr"), (LEA, "Zoe@free.fr")):
                assert api.texts_to(user)[-1].startswith(
                    f"📧 Un e-mail de confirmation part vers {spelled}"
                )
        assert len([m for m in inbox.messages if "zoe@free.fr" in m["To"].casefold()]) == 1
    database = await open_database(settings.database_url)
    try:
        counted = await database.fetch(
            "SELECT count FROM quota_counts WHERE quota = 'confirmation_emails'"
        )
    finally:
        await database.close()
    assert [row[0] for row in counted] == [1]
