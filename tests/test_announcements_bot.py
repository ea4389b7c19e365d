"""`/annonce` through the real Application: the preview and its count, the audiences, a
second admin, double taps, electoral silence, people who blocked the bot, cancelling while
sending, /stats, and the email broadcast with its one-click unsubscribe."""

from __future__ import annotations

import asyncio
import email
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.bootstrap import migrated_storage, open_migrated_storage
from bot.mail.unsubscribe import OneClickLinks, Unsubscriptions
from bot.settings import Settings, SettingsError
from conversations.announcements import Audience
from conversations.model import Area, Consent, ConsentKind, Participant, RecordConsent
from conversations.winners import PlaceStatus
from tests.conftest import NOW
from tests.factories import entered
from tests.fake_beacon import running_drand
from tests.telegram_fakes import ApiCall, FakeBotApi, Updates, running_bot
from tests.test_admin import ADMIN, admin_settings, draw_at, winner_chats
from tests.test_draw_results import seed_areas
from tests.test_mail import Clock

OTHER_ADMIN = 901
# Markup and braces: sent as they are, never read as markup or filled as a template.
MESSAGE = "Merci à tous\u202f! <b>Rendez-vous</b> *dimanche* {candidate} 🎉\nÀ bientôt."


class BlockingBotApi(FakeBotApi):
    """Telegram as it answers a bot that these people blocked."""

    def __init__(self, blocked: set[int], **options: Any) -> None:
        super().__init__(**options)
        self.blocked = blocked

    async def do_request(self, url: str, method: str, request_data: Any = None, **rest: Any) -> Any:
        endpoint = url.rsplit("/", 1)[-1]
        params = dict(request_data.parameters) if request_data else {}
        if endpoint == "sendMessage" and params.get("chat_id") in self.blocked:
            self.calls.append(ApiCall(endpoint, params))
            body = {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked"}
            return 403, json.dumps(body).encode()
        return await super().do_request(url, method, request_data, **rest)


async def seed(settings: Settings, news: dict[int, tuple[ConsentKind, ...]], count: int) -> None:
    """Entrants 1..count, and whoever `news` names with those news consents (people above
    `count` have not confirmed an address)."""
    store = await open_migrated_storage(settings, Clock())
    try:
        for user_id in sorted(set(range(1, count + 1)) | set(news)):
            person: Participant = entered(user_id)
            if user_id > count:
                person = Participant(user_id=user_id, language="fr", created_at=NOW)
            extra = tuple(Consent(kind, "v1", NOW) for kind in news.get(user_id, ()))
            person = replace(person, consents=person.consents + extra)
            await store.participants.save(
                person, 0, [RecordConsent(c) for c in person.consents], None, NOW
            )
    finally:
        await store.close()


def announced(api: FakeBotApi, user_id: int) -> list[str]:
    return [text for text in api.texts_to(user_id) if text == MESSAGE]


async def until(condition: Callable[[], bool], seconds: float = 5) -> None:
    for _ in range(int(seconds * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met in {seconds} s")


def settings_for(settings: Settings, tmp_path: Path, **changes: Any) -> Settings:
    return admin_settings(settings, tmp_path).replace(**changes)


async def prepare(bot: Any, updates: Updates, admin: dict[str, Any], audience: str) -> None:
    await bot.feed(updates.text(admin, "/annonce"), updates.text(admin, MESSAGE))
    await bot.feed(updates.press(admin, f"announce.audience.{audience}"))


async def test_the_preview_shows_the_message_and_its_count_and_a_double_tap_sends_once(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings_for(settings, tmp_path)
    telegram = (ConsentKind.NEWS_TELEGRAM,)
    await seed(settings, {2: telegram, 3: telegram, 9: telegram}, count=6)
    api, updates, admin = FakeBotApi(), Updates(), Updates.user(ADMIN)
    async with running_bot(settings, api, Clock()) as bot:
        await bot.feed(updates.text(admin, "/annonce"))
        assert "au plus 4096 caractères" in api.texts_to(ADMIN)[-1]
        await bot.feed(updates.text(admin, "x" * 4097))
        assert "trop long" in api.texts_to(ADMIN)[-1]
        await bot.feed(updates.text(admin, MESSAGE))
        buttons = api.last_buttons(ADMIN)
        assert buttons["Tous les participants (6)"] == "announce.audience.entrants"
        assert buttons["Abonnés aux nouvelles sur Telegram (3)"] == (
            "announce.audience.news_telegram"
        )
        assert buttons["Abonnés aux nouvelles par e-mail (0)"] == "announce.audience.news_email"
        await bot.feed(updates.press(admin, "announce.audience.news_telegram"))
        shown, preview = api.texts_to(ADMIN)[-2:]
        assert shown == MESSAGE
        assert "abonnés aux nouvelles sur Telegram, soit 3 personne(s)" in preview
        # The double tap: two presses of the same button.
        await bot.feed(
            updates.press(admin, "announce.confirm"), updates.press(admin, "announce.confirm")
        )
        await until(lambda: all(announced(api, user) for user in (2, 3, 9)))
        await asyncio.sleep(0.3)  # time for any second copy to show
        await bot.feed(updates.text(admin, "/stats"))
    assert "Envoi en cours à 3 personne(s)" in "\n".join(api.texts_to(ADMIN))
    assert "déjà" in api.texts_to(ADMIN)[-2] or "en cours" in api.texts_to(ADMIN)[-2]
    for user in (2, 3, 9):
        assert len(announced(api, user)) == 1
    for user in (1, 4, 5, 6):
        assert announced(api, user) == []
    sent = [c for c in api.calls if c.method == "sendMessage" and c.params["text"] == MESSAGE]
    assert all("parse_mode" not in call.params for call in sent)
    stats = next(text for text in api.texts_to(ADMIN) if "Annonce n°1" in text)
    assert "Annonce n°1 à abonnés aux nouvelles sur Telegram (envoyée)" in stats
    assert "3 envoyée(s) sur 3, 0 en attente, 0 bot bloqué, 0 annulée(s)" in stats
    store = await open_migrated_storage(settings, Clock())
    try:
        rows = await store.database.fetch("SELECT action FROM audit_log ORDER BY seq")
        assert [row[0] for row in rows].count("announce.send") == 1
        count = await store.database.fetch("SELECT COUNT(*) FROM telegram_outbox")
        assert count[0][0] == 3
    finally:
        await store.close()


async def test_with_two_admins_the_other_one_confirms(settings: Settings, tmp_path: Path) -> None:
    settings = settings_for(settings, tmp_path, admin_ids=frozenset({ADMIN, OTHER_ADMIN}))
    await seed(settings, {}, count=3)
    api, updates = FakeBotApi(), Updates()
    admin, other = Updates.user(ADMIN), Updates.user(OTHER_ADMIN)
    async with running_bot(settings, api, Clock()) as bot:
        await prepare(bot, updates, admin, "entrants")
        # Another admin cannot act on someone's draft.
        await bot.feed(updates.press(other, "announce.confirm"))
        assert "un autre admin" in api.texts_to(OTHER_ADMIN)[-1]
        await bot.feed(updates.press(admin, "announce.confirm"))
        assert "second admin doit confirmer" in api.texts_to(ADMIN)[-1]
        shown, asked = api.texts_to(OTHER_ADMIN)[-2:]
        assert shown == MESSAGE and "Annonce n°1 à confirmer, pour 3 personne(s)" in asked
        await bot.feed(updates.press(admin, "announce.confirm"))
        assert "autre admin que vous" in api.texts_to(ADMIN)[-1]
        await asyncio.sleep(0.2)
        assert all(announced(api, user) == [] for user in (1, 2, 3))
        await bot.feed(updates.press(other, "announce.confirm"))
        await until(lambda: all(announced(api, user) for user in (1, 2, 3)))
    assert "Envoi en cours à 3" in api.texts_to(OTHER_ADMIN)[-1]
    store = await open_migrated_storage(settings, Clock())
    try:
        rows = await store.database.fetch("SELECT admin_id, action FROM audit_log ORDER BY seq")
        actions = [(row[0], row[1]) for row in rows if row[1].startswith("announce.")]
        assert actions == [(ADMIN, "announce.request"), (OTHER_ADMIN, "announce.send")]
        saved = await store.announcements.latest()
        assert saved is not None
        assert (saved.announcement.requested_by, saved.announcement.confirmed_by) == (
            ADMIN,
            OTHER_ADMIN,
        )
    finally:
        await store.close()


async def test_nothing_starts_during_silence_and_a_batch_waits_out_one_that_begins(
    settings: Settings, tmp_path: Path
) -> None:
    starts, ends = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    settings = settings_for(
        settings,
        tmp_path,
        silence_periods=f"{starts.isoformat()}/{ends.isoformat()}",
        telegram_outbox_messages_per_second=20,
    )
    await seed(settings, {}, count=12)
    clock = Clock(NOW + timedelta(minutes=90))
    api, updates, admin = FakeBotApi(), Updates(), Updates.user(ADMIN)
    async with running_bot(settings, api, clock) as bot:
        await bot.feed(updates.text(admin, "/annonce"))
        assert "silence électoral" in api.texts_to(ADMIN)[-1]
        assert "26 novembre 2026 à 13 h" in api.texts_to(ADMIN)[-1]
        clock.now = NOW
        await prepare(bot, updates, admin, "entrants")

        def silence_begins(call: Any) -> None:
            if call.params.get("text") == MESSAGE:
                clock.now = starts + timedelta(minutes=1)

        api._listener = silence_begins
        await bot.feed(updates.press(admin, "announce.confirm"))
        await until(lambda: sum(len(announced(api, user)) for user in range(1, 13)) >= 1)
        await asyncio.sleep(0.5)
        told = sum(len(announced(api, user)) for user in range(1, 13))
        assert told == 1, told  # the one leaving when the silence began
        api._listener = None
        clock.now = ends + timedelta(seconds=1)
        await until(lambda: all(announced(api, user) for user in range(1, 13)))
    assert all(len(announced(api, user)) == 1 for user in range(1, 13))


async def test_who_blocked_the_bot_is_marked_and_left_out_of_the_next_announcement(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings_for(settings, tmp_path)
    await seed(settings, {}, count=4)
    api, updates, admin = BlockingBotApi({2}), Updates(), Updates.user(ADMIN)
    async with running_bot(settings, api, Clock()) as bot:
        await prepare(bot, updates, admin, "entrants")
        assert "soit 4 personne(s)" in api.texts_to(ADMIN)[-1]
        await bot.feed(updates.press(admin, "announce.confirm"))
        await until(lambda: all(announced(api, user) for user in (1, 3, 4)))
        await until(lambda: len(api.to_chat(2)) == 1)
        await asyncio.sleep(0.2)
        await bot.feed(updates.text(admin, "/stats"))
        stats = next(text for text in api.texts_to(ADMIN) if "Annonce n°1" in text)
        assert "3 envoyée(s) sur 4, 0 en attente, 1 bot bloqué" in stats
        await prepare(bot, updates, admin, "entrants")
        assert "Tous les participants (3)" in json.dumps(
            api.to_chat(ADMIN)[-3].params, ensure_ascii=False
        )
        assert "soit 3 personne(s)" in api.texts_to(ADMIN)[-1]
        await bot.feed(updates.press(admin, "announce.confirm"))
        await until(lambda: all(len(announced(api, user)) == 2 for user in (1, 3, 4)))
        await asyncio.sleep(0.2)
    assert len(api.to_chat(2)) == 1  # tried once, never again


async def test_an_announcement_is_cancelled_while_sending_and_counts_stay(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings_for(settings, tmp_path, telegram_outbox_messages_per_second=10)
    await seed(settings, {}, count=30)
    api, updates, admin = FakeBotApi(), Updates(), Updates.user(ADMIN)
    people = range(1, 31)
    async with running_bot(settings, api, Clock()) as bot:
        await prepare(bot, updates, admin, "entrants")
        await bot.feed(updates.press(admin, "announce.confirm"))
        await until(lambda: sum(len(announced(api, user)) for user in people) >= 3)
        await bot.feed(updates.text(admin, "/annonce"))
        assert "en cours d’envoi" in api.texts_to(ADMIN)[-1]
        assert api.last_buttons(ADMIN) == {"✖️ Annuler": "announce.cancel:1"}
        await bot.feed(updates.press(admin, "announce.cancel:1"))
        assert "Annonce annulée" in api.texts_to(ADMIN)[-1]
        told = sum(len(announced(api, user)) for user in people)
        await asyncio.sleep(0.5)
        # At most the one leaving when the cancellation was written.
        later = sum(len(announced(api, user)) for user in people)
        assert later - told <= 1 and later < 30
        await bot.feed(updates.text(admin, "/stats"))
        # A new announcement may start once this one is cancelled.
        await bot.feed(updates.text(admin, "/annonce"))
        assert "Écrivez le message" in api.texts_to(ADMIN)[-1]
    stats = next(text for text in api.texts_to(ADMIN) if "Annonce n°1" in text)
    assert f"(annulée)\u00a0: {later} envoyée(s) sur 30, 0 en attente" in stats
    assert f"{30 - later} annulée(s)" in stats


async def test_an_email_broadcast_reaches_consenting_addresses_escaped_with_one_click(
    settings: Settings, tmp_path: Path
) -> None:
    public = "https://cafe.example.org"
    settings = settings_for(settings, tmp_path, public_url=public)
    by_email = (ConsentKind.NEWS_EMAIL,)
    await seed(settings, {1: by_email, 3: by_email, 8: by_email}, count=4)
    api, updates, admin = FakeBotApi(), Updates(), Updates.user(ADMIN)
    outbox = tmp_path / "outbox"
    async with running_bot(settings, api, Clock()) as bot:
        await prepare(bot, updates, admin, "news_email")
        assert "abonnés aux nouvelles par e-mail, soit 2 personne(s)" in api.texts_to(ADMIN)[-1]
        await bot.feed(
            updates.press(admin, "announce.confirm"), updates.press(admin, "announce.confirm")
        )
        await until(lambda: len(list(outbox.glob("*.eml"))) >= 2)
        await asyncio.sleep(0.3)
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 2
    messages = [email.message_from_bytes(path.read_bytes()) for path in files]
    assert sorted(str(m["To"]) for m in messages) == ["p1@free.fr", "p3@free.fr"]
    for message in messages:
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert str(message["List-Unsubscribe"]).strip().startswith(f"<{public}/unsubscribe/")
        parts = {
            part.get_content_type(): part.get_payload(decode=True).decode()
            for part in message.walk()
            if not part.is_multipart()
        }
        assert MESSAGE in parts["text/plain"]
        assert "&lt;b&gt;Rendez-vous&lt;/b&gt;" in parts["text/html"]
        assert "<b>Rendez-vous" not in parts["text/html"]
        assert "{candidate}" in parts["text/html"]
        assert "Telegram" not in str(message["Subject"])
    assert api.texts_to(1) == []  # email only
    # One click on the link in the first email withdraws that person's consent.
    store = await open_migrated_storage(settings, Clock())
    try:
        links = OneClickLinks(public, store.participants.address_hash)
        token = str(messages[0]["List-Unsubscribe"]).strip().strip("<>").rsplit("/", 1)[1]
        key = links.email_key(token)
        assert key is not None and key.startswith("announce:1:")
        unsubscriptions = Unsubscriptions(store, "fr")
        subject = await unsubscriptions.subject(key)
        assert subject is not None
        await unsubscriptions.withdraw(subject, NOW)
        assert (await store.announcements.recipients())[Audience.NEWS_EMAIL] == 1
    finally:
        await store.close()


async def test_the_questionnaire_stores_the_telegram_news_consent_and_unsubscribing_ends_it(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings_for(settings, tmp_path)
    await seed(settings, {}, count=2)
    api, updates, admin = FakeBotApi(), Updates(), Updates.user(ADMIN)
    zoe = Updates.user(1, "Zoé")
    async with running_bot(settings, api, Clock()) as bot:
        await bot.feed(
            updates.text(zoe, "/engagement"),
            updates.press(zoe, "engage.actions_skip"),
            updates.press(zoe, "news.news_telegram"),
            updates.press(zoe, "engage.news_done"),
        )
        await bot.feed(updates.text(admin, "/annonce"), updates.text(admin, MESSAGE))
        assert "Abonnés aux nouvelles sur Telegram (1)" in api.last_buttons(ADMIN)
        await bot.feed(updates.press(admin, "announce.cancel"), updates.text(zoe, "/desabonner"))
        assert "vous ne recevrez plus de nouvelles" in api.texts_to(1)[-1]
        await bot.feed(updates.text(admin, "/annonce"), updates.text(admin, MESSAGE))
        assert "Abonnés aux nouvelles sur Telegram (0)" in api.last_buttons(ADMIN)
        await bot.feed(updates.press(admin, "announce.audience.news_telegram"))
        assert "Personne ne fait partie de ce public" in api.texts_to(ADMIN)[-1]
    store = await open_migrated_storage(settings, Clock())
    try:
        rows = await store.database.fetch(
            "SELECT kind, withdrawn_at FROM consents WHERE user_id = 1 AND kind LIKE 'news%'"
        )
        assert [(row[0], row[1] is not None) for row in rows] == [("news_telegram", True)]
    finally:
        await store.close()


def test_a_length_telegram_would_refuse_stops_the_bot_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match="ANNOUNCEMENT_MAX_LENGTH must be 1 to 4096"):
        Settings.from_env({"TELEGRAM_BOT_TOKEN": "1:x", "ANNOUNCEMENT_MAX_LENGTH": "5000"})


async def test_for_anyone_else_the_command_and_its_buttons_do_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings_for(settings, tmp_path)
    await seed(settings, {}, count=2)
    api, updates, someone = FakeBotApi(), Updates(), Updates.user(2)
    async with running_bot(settings, api, Clock()) as bot:
        await bot.feed(
            updates.text(someone, "/annonce"),
            updates.press(someone, "announce.audience.entrants"),
            updates.press(someone, "announce.confirm"),
        )
    store = await open_migrated_storage(settings, Clock())
    try:
        assert await store.announcements.latest() is None
        assert (await store.database.fetch("SELECT COUNT(*) FROM telegram_outbox"))[0][0] == 0
    finally:
        await store.close()
    assert "Je ne connais pas" in api.texts_to(2)[0]
    assert api.texts_to(ADMIN) == []


async def test_two_other_admins_confirming_at_once_make_one_batch(
    settings: Settings, tmp_path: Path
) -> None:
    third = 902
    admins = frozenset({ADMIN, OTHER_ADMIN, third})
    settings = settings_for(settings, tmp_path, admin_ids=admins)
    await seed(settings, {}, count=5)
    api, updates = FakeBotApi(), Updates()
    admin, other, last = Updates.user(ADMIN), Updates.user(OTHER_ADMIN), Updates.user(third)
    async with running_bot(settings, api, Clock()) as bot:
        await prepare(bot, updates, admin, "entrants")
        await bot.feed(updates.press(admin, "announce.confirm"))
        # Different people's updates run at the same time.
        await bot.feed(
            updates.press(other, "announce.confirm"), updates.press(last, "announce.confirm")
        )
        await until(lambda: all(announced(api, user) for user in range(1, 6)))
        await asyncio.sleep(0.3)
    assert all(len(announced(api, user)) == 1 for user in range(1, 6))
    answers = [api.texts_to(OTHER_ADMIN)[-1], api.texts_to(third)[-1]]
    assert sum("Envoi en cours à 5" in answer for answer in answers) == 1
    store = await open_migrated_storage(settings, Clock())
    try:
        rows = await store.database.fetch("SELECT action FROM audit_log")
        assert [row[0] for row in rows].count("announce.send") == 1
    finally:
        await store.close()


async def test_any_other_admin_can_turn_down_a_request(settings: Settings, tmp_path: Path) -> None:
    settings = settings_for(settings, tmp_path, admin_ids=frozenset({ADMIN, OTHER_ADMIN}))
    await seed(settings, {}, count=2)
    api, updates = FakeBotApi(), Updates()
    admin, other = Updates.user(ADMIN), Updates.user(OTHER_ADMIN)
    async with running_bot(settings, api, Clock()) as bot:
        await prepare(bot, updates, admin, "entrants")
        await bot.feed(updates.press(admin, "announce.confirm"))
        await bot.feed(updates.text(admin, "/annonce"))
        assert "attend la confirmation d’un second admin" in api.texts_to(ADMIN)[-1]
        await bot.feed(updates.press(other, "announce.cancel"))
        assert "Annonce annulée" in api.texts_to(OTHER_ADMIN)[-1]
        await bot.feed(updates.press(other, "announce.confirm"))
        assert "annulée" in api.texts_to(OTHER_ADMIN)[-1]
        await asyncio.sleep(0.2)
    assert announced(api, 1) == [] and announced(api, 2) == []


async def test_who_unblocks_the_bot_and_only_asks_their_status_is_announced_to_again(
    settings: Settings, tmp_path: Path
) -> None:
    """Unblocking was seen only through a change to the person's row: one who unblocked the bot
    and sent only /statut (which changes nothing) stayed out of every announcement. Any update
    from them now clears the mark, in that update's transaction."""
    settings = settings_for(settings, tmp_path)
    await seed(settings, {}, count=3)
    api, updates, admin = BlockingBotApi({2}), Updates(), Updates.user(ADMIN)
    async with running_bot(settings, api, Clock()) as bot:
        await prepare(bot, updates, admin, "entrants")
        await bot.feed(updates.press(admin, "announce.confirm"))
        await until(lambda: all(announced(api, user) for user in (1, 3)))
        await until(lambda: len(api.to_chat(2)) == 1)
        store = await open_migrated_storage(settings, Clock())
        try:
            marked = await store.database.fetch("SELECT user_id FROM telegram_blocked")
        finally:
            await store.close()
        assert [row[0] for row in marked] == [2]
        api.blocked.clear()  # the person unblocks the bot…
        await bot.feed(updates.text(Updates.user(2), "/statut"))  # …and only asks
        await prepare(bot, updates, admin, "entrants")
        assert "soit 3 personne(s)" in api.texts_to(ADMIN)[-1]
        await bot.feed(updates.press(admin, "announce.confirm"))
        await until(lambda: len(announced(api, 2)) == 1)
    store = await open_migrated_storage(settings, Clock())
    try:
        rows = await store.database.fetch("SELECT COUNT(*) FROM telegram_blocked")
        versions = await store.database.fetch(
            "SELECT version FROM participants WHERE user_id IN (1, 2) ORDER BY user_id"
        )
    finally:
        await store.close()
    assert rows[0][0] == 0
    # The status changed nobody's row: only the mark went.
    assert [row[0] for row in versions] == [1, 1]


async def blocked_marks(settings: Settings) -> list[int]:
    store = await open_migrated_storage(settings, Clock())
    try:
        rows = await store.database.fetch("SELECT user_id FROM telegram_blocked ORDER BY user_id")
    finally:
        await store.close()
    return [row[0] for row in rows]


async def mark_blocked(settings: Settings, *user_ids: int) -> None:
    store = await open_migrated_storage(settings, Clock())
    try:
        await store.database.run(
            [
                ("INSERT INTO telegram_blocked (user_id, blocked_at) VALUES (?, ?)", (u, "x"))
                for u in user_ids
            ]
        )
    finally:
        await store.close()
    assert await blocked_marks(settings) == sorted(user_ids)


async def test_a_winner_s_accept_or_decline_press_clears_their_blocked_mark(
    settings: Settings, tmp_path: Path
) -> None:
    """A winner's "I accept" / "I decline" press is them writing to the bot, as a message or a
    command is: the mark that they blocked it goes, with their answer; a press that changes no
    place any more (answered already) clears it too. Before, it stayed, and they were left out
    of every announcement."""
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=2)
        await seed_areas(settings, [Area.PARIS] * 3)
        api, updates = FakeBotApi(), Updates(start=1500)
        async with running_bot(settings, api, clock) as bot:
            await draw_at(bot, clock, api, "/draw 1")
            await until(lambda: len(winner_chats(api)) == 2)
            accepting, declining = sorted(winner_chats(api))
            await mark_blocked(settings, accepting, declining)
            await bot.feed(updates.press(Updates.user(accepting), "win.accept"))
            assert any("c’est noté" in text for text in api.texts_to(accepting))
            assert await blocked_marks(settings) == [declining]
            await bot.feed(updates.press(Updates.user(declining), "win.decline"))
            await until(lambda: len(winner_chats(api)) == 3)  # the reserve is promoted
            assert await blocked_marks(settings) == []
            # Pressed again once answered: no place changes, and the mark still goes.
            await mark_blocked(settings, accepting)
            await bot.feed(updates.press(Updates.user(accepting), "win.accept"))
            assert "Aucune réponse n’est attendue" in api.texts_to(accepting)[-1]
            assert await blocked_marks(settings) == []
    async with migrated_storage(settings) as storage:
        places = {p.user_id: p.status for p in await storage.draws.places()}
    assert places[accepting] == PlaceStatus.ACCEPTED
    assert places[declining] == PlaceStatus.DECLINED
