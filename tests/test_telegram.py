"""The bot through the real python-telegram-bot Application, against an in-process Bot API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.settings import Settings
from tests.telegram_fakes import FakeBotApi, Updates, running_bot

USER_ID = 5551234


def signup_updates(updates: Updates, user: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole signup as a phone would send it: buttons, a shared contact, typed answers."""
    uid = user["id"]
    return [
        updates.text(user, "/start"),
        updates.press(user, "welcome.join"),
        updates.press(user, "consent.rules"),
        updates.press(user, "consent.processing"),
        updates.press(user, "consent.adult"),
        updates.press(user, "consent.continue"),
        updates.press(user, "name.profile"),
        updates.text(user, "Martin"),
        updates.contact(user, "33612345678", owner_id=uid),
        updates.text(user, "Zoe.Martin+cafe@Gmail.com"),
        updates.text(user, "69003"),
        updates.press(user, "friends.add"),
        updates.text(user, "ami@orange.fr"),
        updates.press(user, "friends.done"),
        updates.text(user, "Que ferez-vous pour les trains de nuit ?"),
        updates.press(user, "summary.confirm"),
    ]


async def test_full_signup_is_stored_and_shown_by_mesdonnees(settings: Settings) -> None:
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(USER_ID, "Zoé")
    async with running_bot(settings, api) as bot:
        await bot.feed(*signup_updates(updates, user))
        await bot.feed(updates.text(user, "/mesdonnees"))

    texts = api.texts_to(USER_ID)
    assert any(text.startswith("🎉 Merci") for text in texts)
    [document] = api.documents_to(USER_ID)
    data = json.loads(document)
    signup = data["profile"]
    assert signup["signup_step"] == "complete" and signup["completed_at"]
    assert signup["first_name"] == "Zoé" and signup["last_name"] == "Martin"
    assert signup["phone"] == "+33612345678"
    assert signup["email"] == "Zoe.Martin+cafe@gmail.com"
    assert (signup["postcode"], signup["departement"], signup["area"]) == (
        "69003",
        "69",
        "province",
    )
    assert signup["question"] == "Que ferez-vous pour les trains de nuit ?"
    assert data["friends_you_invited"] == ["ami@orange.fr"]
    assert {consent["kind"] for consent in data["consents"]} == {"rules", "processing", "adult"}
    assert all(consent["version"].startswith("fr-") for consent in data["consents"])


async def test_keyboards_match_the_step(settings: Settings) -> None:
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(USER_ID)
    async with running_bot(settings, api) as bot:
        await bot.feed(*signup_updates(updates, user)[:8])
        phone_prompt = api.to_chat(USER_ID)[-1]
        assert phone_prompt.params["reply_markup"]["keyboard"][0][0]["request_contact"] is True
        await bot.feed(updates.text(user, "06 12 34 56 78"))
        saved = api.to_chat(USER_ID)[-2]
        assert saved.params["reply_markup"] == {"remove_keyboard": True}

    ticks = [c for c in api.to_chat(USER_ID) if c.method == "editMessageText"]
    # Each consent tick edits the consent message in place instead of sending a new one.
    assert len(ticks) == 3
    answered = [c for c in api.calls if c.method == "answerCallbackQuery"]
    assert len(answered) == 6


async def test_restart_mid_signup_resumes_at_the_same_step(settings: Settings) -> None:
    updates = Updates()
    user = Updates.user(USER_ID)
    steps = signup_updates(updates, user)
    async with running_bot(settings, FakeBotApi()) as bot:
        await bot.feed(*steps[:10])  # up to the email

    api = FakeBotApi()
    async with running_bot(settings, api) as bot:
        await bot.feed(updates.text(user, "/start"))
        assert "Étape 6/8" in api.texts_to(USER_ID)[-1]
        await bot.feed(*steps[10:])
        await bot.feed(updates.text(user, "/mesdonnees"))
    data = json.loads(api.documents_to(USER_ID)[0])
    assert data["profile"]["signup_step"] == "complete"
    assert data["profile"]["email"] == "Zoe.Martin+cafe@gmail.com"


async def test_the_same_update_twice_acts_once(settings: Settings) -> None:
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(USER_ID)
    start, join = updates.text(user, "/start"), updates.press(user, "welcome.join")
    async with running_bot(settings, api) as bot:
        await bot.feed(start, join)
        sent = len(api.texts_to(USER_ID))
        await bot.feed(join, start)
    assert len(api.texts_to(USER_ID)) == sent


async def test_bad_input_is_explained_and_changes_nothing(settings: Settings) -> None:
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(USER_ID)
    async with running_bot(settings, api) as bot:
        await bot.feed(*signup_updates(updates, user)[:7])  # now at the last name
        for update in (
            updates.sticker(user),
            updates.location(user),
            updates.edited(user, "Martin"),
            updates.press(user, "summary.confirm"),
            updates.text(user, "<b>Robert'); DROP TABLE participants;--</b>"),
            updates.contact(user, "+33612345678", owner_id=USER_ID),
        ):
            await bot.feed(update)
            assert "Étape 3/8" in api.texts_to(USER_ID)[-1] or "nom" in api.texts_to(USER_ID)[-1]
        await bot.feed(updates.text(user, "Martin"), updates.text(user, "/mesdonnees"))
    data = json.loads(api.documents_to(USER_ID)[0])
    assert data["profile"]["last_name"] == "Martin"
    assert data["profile"]["signup_step"] == "phone"
    # Replies are plain text: what the person typed is never parsed as markup.
    assert all("parse_mode" not in call.params for call in api.calls)


async def test_a_contact_that_is_not_the_senders_is_refused(settings: Settings) -> None:
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(USER_ID)
    async with running_bot(settings, api) as bot:
        await bot.feed(*signup_updates(updates, user)[:8])
        await bot.feed(updates.contact(user, "+33611111111", owner_id=999))
        assert "votre propre numéro" in api.texts_to(USER_ID)[-1]
        await bot.feed(updates.contact(user, "+33611111111", owner_id=None))
        await bot.feed(updates.text(user, "/statut"))
    assert "étape 4/8" in api.texts_to(USER_ID)[-1]


async def test_a_phone_used_by_another_account_is_refused_neutrally(settings: Settings) -> None:
    api, updates = FakeBotApi(), Updates()
    first, second = Updates.user(1001), Updates.user(1002)
    async with running_bot(settings, api) as bot:
        await bot.feed(*signup_updates(updates, first)[:9])
        await bot.feed(*signup_updates(updates, second)[:9])
        refusal = api.texts_to(1002)[-1]
        await bot.feed(updates.text(second, "07 81 22 33 44"))
    # Telegram vouched for the number twice (a number given to someone new, say): the second
    # account is told, without learning whose it is.
    assert refusal.startswith("Ce numéro est déjà celui d’une autre inscription")
    assert "1001" not in refusal and "Zoé" not in refusal
    assert "Étape 5/8" in api.texts_to(1002)[-1]


async def test_groups_get_a_link_to_a_private_chat_and_nothing_is_stored(
    settings: Settings,
) -> None:
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(USER_ID)
    async with running_bot(settings, api) as bot:
        await bot.feed(updates.in_group(user, "/start", group_id=-100123))
        await bot.feed(updates.in_group(user, "bonjour", group_id=-100123))
        await bot.feed(updates.text(user, "/mesdonnees"))
    [group_reply] = api.to_chat(-100123)
    assert "https://t.me/coffee_test_bot" in group_reply.params["text"]
    assert json.loads(api.documents_to(USER_ID)[0])["profile"] is None


async def test_english_speakers_get_english_and_can_switch(settings: Settings) -> None:
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(USER_ID, "John", language="en")
    async with running_bot(settings, api) as bot:
        await bot.feed(updates.text(user, "/start"))
        assert api.texts_to(USER_ID)[-1].startswith("☕ Have a coffee")
        await bot.feed(updates.text(user, "/langue"), updates.press(user, "lang.fr"))
    assert api.texts_to(USER_ID)[-1].startswith("☕ Prenez un café")


async def test_command_menu_is_registered_in_french_and_english(settings: Settings) -> None:
    api = FakeBotApi()
    async with running_bot(settings, api):
        pass
    menus = {
        call.params.get("language_code"): [c["command"] for c in call.params["commands"]]
        for call in api.calls
        if call.method == "setMyCommands"
    }
    assert "mesdonnees" in menus["fr"] and "mydata" in menus["en"]
    assert menus[None] == menus["fr"]


async def test_a_flood_gets_one_warning_and_other_users_are_served(settings: Settings) -> None:
    settings = settings.replace(flood_max_messages=5, flood_window_seconds=60)
    api, updates = FakeBotApi(), Updates()
    flooder, other = Updates.user(1), Updates.user(2)
    async with running_bot(settings, api) as bot:
        await bot.feed(
            *[updates.text(flooder, f"/statut {n}") for n in range(30)],
            updates.text(other, "/start"),
        )
    flooder_texts = api.texts_to(1)
    assert len(flooder_texts) == 6
    assert sum("beaucoup de messages" in text for text in flooder_texts) == 1
    assert api.texts_to(2)[-1].startswith("☕")


@pytest.mark.parametrize("payload", ["c_abcdef", "r_friend42", "something-else"])
async def test_start_payloads_are_routed(settings: Settings, payload: str) -> None:
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(USER_ID)
    async with running_bot(settings, api) as bot:
        await bot.feed(updates.text(user, f"/start {payload}"), updates.press(user, "welcome.join"))
        await bot.feed(updates.text(user, "/mesdonnees"))
    texts = api.texts_to(USER_ID)
    assert ("pas valable pour ce compte" in texts[0]) == payload.startswith("c_")
    referrer = json.loads(api.documents_to(USER_ID)[0])["profile"]["referred_by_code"]
    assert referrer == ("friend42" if payload.startswith("r_") else None)


async def test_a_crash_in_a_step_is_apologised_for_and_loses_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(USER_ID)
    async with running_bot(settings, api) as bot:
        await bot.feed(*signup_updates(updates, user)[:9])  # answered up to the phone

        def broken(*arguments: object) -> None:
            raise RuntimeError("bug in a step")

        with monkeypatch.context() as patch:
            patch.setattr("bot.service.step", broken)
            await bot.feed(updates.text(user, "zoe@orange.fr"))
        assert "problème technique" in api.texts_to(USER_ID)[-1]
        await bot.feed(updates.text(user, "zoe@orange.fr"), updates.text(user, "/mesdonnees"))
    data = json.loads(api.documents_to(USER_ID)[0])
    assert (data["profile"]["phone"], data["profile"]["email"]) == ("+33612345678", "zoe@orange.fr")
