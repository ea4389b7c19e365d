"""Entries and phases through the real Application, as a person on a phone would try them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from bot.settings import Settings
from tests.smtp_server import smtp_server
from tests.telegram_fakes import FakeBotApi, Updates, running_bot
from tests.test_email_loop import confirmation_token, mail_to
from tests.test_telegram import signup_updates

ZOE_ID = 1001


async def test_a_link_cannot_confirm_an_address_it_was_not_sent_to(settings: Settings) -> None:
    with smtp_server() as (inbox, port):
        settings = settings.replace(smtp_url=f"smtp://127.0.0.1:{port}", outbox_poll_seconds=0.05)
        api, updates = FakeBotApi(), Updates()
        zoe = Updates.user(ZOE_ID, "Zoé")
        async with running_bot(settings, api) as bot:
            await bot.feed(*signup_updates(updates, zoe))
            token_a = confirmation_token(await mail_to(inbox, "Zoe.Martin+cafe@gmail.com"))
            # Change the address on the summary, then open the first address's link.
            await bot.feed(
                updates.text(zoe, "/modifier"),
                updates.press(zoe, "edit.email"),
                updates.text(zoe, "lea@free.fr"),
                updates.text(zoe, f"/start c_{token_a}"),
                updates.text(zoe, "/mesdonnees"),
            )
            data = json.loads(api.documents_to(ZOE_ID)[-1])
            assert data["entry"]["email"] == "Zoe.Martin+cafe@gmail.com"
            assert data["profile"]["email"] == "lea@free.fr"
            # Confirming the summary sends B its own email; the entry keeps A until B confirms.
            await bot.feed(updates.press(zoe, "summary.confirm"), updates.text(zoe, "/statut"))
            token_b = confirmation_token(await mail_to(inbox, "lea@free.fr"))
            assert "lea@free.fr en attente de confirmation" in api.texts_to(ZOE_ID)[-1]
            await bot.feed(
                updates.text(zoe, f"/start c_{token_b}"), updates.text(zoe, "/mesdonnees")
            )
            data = json.loads(api.documents_to(ZOE_ID)[-1])
            assert data["entry"]["email"] == "lea@free.fr"
            assert len(inbox.to("lea@free.fr")) == 1
            assert len(inbox.to("Zoe.Martin+cafe@gmail.com")) == 1


async def test_edits_after_confirmation_send_nothing_again(settings: Settings) -> None:
    with smtp_server() as (inbox, port):
        settings = settings.replace(smtp_url=f"smtp://127.0.0.1:{port}", outbox_poll_seconds=0.05)
        api, updates = FakeBotApi(), Updates()
        zoe = Updates.user(ZOE_ID, "Zoé")
        async with running_bot(settings, api) as bot:
            await bot.feed(*signup_updates(updates, zoe))
            token = confirmation_token(await mail_to(inbox, "Zoe.Martin+cafe@gmail.com"))
            await bot.feed(updates.text(zoe, f"/start c_{token}"))
            await mail_to(inbox, "ami@orange.fr")
            for round_ in range(3):
                await bot.feed(
                    updates.text(zoe, "/modifier"),
                    updates.press(zoe, "edit.friends"),
                    *(
                        step
                        for n in range(3)
                        for step in (
                            updates.press(zoe, "friends.add"),
                            updates.text(zoe, f"ami{round_}{n}@orange.fr"),
                        )
                    ),
                    updates.press(zoe, "friends.done"),
                    updates.press(zoe, "summary.confirm"),
                )
            await bot.feed(updates.text(zoe, "/modifier"), updates.text(zoe, "/annuler"))
            await bot.feed(updates.text(zoe, "/monticket"))
            assert "Vous participez au tirage" in api.texts_to(ZOE_ID)[-1]
            await asyncio.sleep(0.3)  # time for any wrongly queued email to leave
    sent_to = [message["To"] for message in inbox.messages]
    assert sent_to.count("Zoe.Martin+cafe@gmail.com") == 1
    # One friend in the signup, two more in the first round, then none: three in all.
    assert len([to for to in sent_to if to.startswith("ami")]) == 3


async def test_after_closing_a_newcomer_is_told_and_nothing_is_stored(settings: Settings) -> None:
    closed_at = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    settings = settings.replace(entries_close_at=closed_at)
    api, updates = FakeBotApi(), Updates()
    newcomer = Updates.user(1003, "Léa")
    async with running_bot(settings, api) as bot:
        await bot.feed(updates.text(newcomer, "/start"), updates.press(newcomer, "welcome.join"))
        await bot.feed(updates.text(newcomer, "/mesdonnees"))
    welcome, pressed = api.texts_to(1003)[:2]
    assert "🔒 Les inscriptions au tirage sont closes depuis le" in welcome
    assert "heure de Paris" in welcome
    assert "inline_keyboard" not in api.to_chat(1003)[0].params.get("reply_markup", {})
    assert "closes" in pressed
    data = json.loads(api.documents_to(1003)[-1])
    assert data["profile"] is None and data["entry"] is None
