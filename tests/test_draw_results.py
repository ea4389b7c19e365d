"""After the draw: every entrant told once, the entitlement frozen, entries closed by /draw."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.bootstrap import open_migrated_storage
from bot.settings import Settings
from conversations.model import Area, RecordConsent
from tests.conftest import NOW
from tests.factories import entered
from tests.fake_beacon import running_drand
from tests.telegram_fakes import FakeBotApi, Updates, running_bot
from tests.test_admin import ADMIN, admin_settings, certificates, draw_at, until
from tests.test_mail import Clock


async def seed_areas(settings: Settings, areas: list[Area]) -> list[int]:
    store = await open_migrated_storage(settings, Clock())
    try:
        for n, area in enumerate(areas, 1):
            postcode, departement = ("75011", "75") if area == Area.PARIS else ("69003", "69")
            person = entered(
                n, phone=f"+336123400{n:02d}", area=area, postcode=postcode,
                departement=departement, ticket=f"TK{n:08d}",
            )  # fmt: skip
            await store.participants.save(
                person, 0, [RecordConsent(c) for c in person.consents], None, NOW
            )
    finally:
        await store.close()
    return list(range(1, len(areas) + 1))


def results_told(api: FakeBotApi, user_id: int) -> list[str]:
    keys = ("Félicitations", "suppléant n°", "n’a pas été tiré cette fois-ci")
    return [text for text in api.texts_to(user_id) if any(key in text for key in keys)]


async def test_every_entrant_learns_their_own_result_once(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=2)
        people = await seed_areas(settings, [Area.PROVINCE] * 9)
        api, updates = FakeBotApi(), Updates()
        admin = Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await draw_at(bot, clock, api, "/draw 3")
            await until(lambda: all(results_told(api, n) for n in people))
            await asyncio.sleep(0.2)  # nothing more arrives
            await bot.feed(updates.text(admin, "/gagnants"))
    [certificate] = certificates(api)
    for n in people:
        [told] = results_told(api, n)
        ticket = f"TK{n:08d}"
        if ticket in certificate["winners"]:
            assert "Félicitations" in told and "heure de Paris" in told
        elif ticket in certificate["reserves"]:
            rank = certificate["reserves"].index(ticket) + 1
            assert f"suppléant n°{rank}" in told
        else:
            assert "n’a pas été tiré" in told and "/engagement" in told
    assert "Résultats envoyés aux participants\u00a0: 9 sur 9" in api.texts_to(ADMIN)[-1]


async def test_the_preview_offers_the_reserves_there_are_and_closes_entries(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=2)
        await seed_areas(settings, [Area.PROVINCE] * 3)
        api, updates = FakeBotApi(), Updates()
        admin, newcomer = Updates.user(ADMIN), Updates.user(4242, "Léa")
        async with running_bot(settings, api, clock) as bot:
            await bot.feed(updates.text(admin, "/draw 2 3"))
            assert "Usage\u00a0: /draw [suppléants]" in api.texts_to(ADMIN)[-1]
            await bot.feed(updates.text(admin, "/draw 5"))
            preview = api.texts_to(ADMIN)[-1]
            assert "Gagnants\u00a0: 2 — suppléants\u00a0: 1" in preview
            assert "elles sont closes désormais" in preview
            await bot.feed(updates.press(admin, "admin.draw.cancel"))
            await bot.feed(updates.text(newcomer, "/start"))
    assert "Les inscriptions au tirage sont closes depuis le" in api.texts_to(4242)[-1]


async def test_a_winner_who_moves_after_the_draw_keeps_the_entitlement_drawn(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed_areas(settings, [Area.PARIS])
        api, updates = FakeBotApi(), Updates()
        winner, admin = Updates.user(1, "Zoé"), Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await draw_at(bot, clock, api, "/draw 0")
            await until(lambda: bool(results_told(api, 1)))
            await bot.feed(
                updates.text(winner, "/modifier"),
                updates.press(winner, "edit.postcode"),
                updates.text(winner, "13001"),
            )
            assert "garde la zone Paris" in api.texts_to(1)[-2]
            await bot.feed(
                updates.press(winner, "summary.confirm"), updates.text(admin, "/gagnants")
            )
    listing = api.texts_to(ADMIN)[-1]
    assert "75011 (Paris)" in listing and "Pas de prise en charge" in listing
    assert "Aller-retour en train" not in listing
    assert "Pas de prise en charge" in api.texts_to(1)[-1]  # the status after confirming


async def test_an_unanswered_winner_is_reminded_once_and_one_who_answered_never(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=2)
        await seed_areas(settings, [Area.PROVINCE] * 2)
        api, updates = FakeBotApi(), Updates()
        async with running_bot(settings, api, clock) as bot:
            await draw_at(bot, clock, api, "/draw 0")
            await until(lambda: all(results_told(api, n) for n in (1, 2)))
            await bot.feed(updates.press(Updates.user(1), "win.accept"))
            clock.advance(49 * 3600)  # the reminder is due 24 hours before the 72-hour deadline
            await until(lambda: any("⏰ Rappel" in text for text in api.texts_to(2)))
            await asyncio.sleep(0.3)
    assert sum("⏰ Rappel" in text for text in api.texts_to(2)) == 1
    assert not any("⏰ Rappel" in text for text in api.texts_to(1))


async def test_winners_and_reserves_are_told_before_the_thanks_to_everyone_else(
    settings: Settings, tmp_path: Path
) -> None:
    """The draw queues a message for every entrant at once: those not drawn (thousands) are a
    bulk batch, sent after the winners' and reserves' own messages, whose deadline runs."""
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        people = await seed_areas(settings, [Area.PROVINCE] * 12)
        api = FakeBotApi()
        async with running_bot(settings, api, clock) as bot:
            await draw_at(bot, clock, api, "/draw 1")
            await until(lambda: all(results_told(api, n) for n in people))
    [certificate] = certificates(api)
    drawn = {int(t[2:]) for t in [*certificate["winners"], *certificate["reserves"]]}
    order = [
        call.params["chat_id"]
        for call in api.calls
        if call.method == "sendMessage" and call.params["chat_id"] in people
    ]
    assert set(order[:2]) == drawn, order
