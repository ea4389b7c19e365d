"""The admin tools through the real Application: the draw, winners, meeting, figures."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bot.app import open_migrated_store
from bot.settings import Settings
from conversations.draw import verify
from conversations.model import Area, RecordConsent
from tests.conftest import NOW
from tests.factories import entered
from tests.telegram_fakes import FakeBotApi, Updates, running_bot
from tests.test_console import coffeebot
from tests.test_mail import Clock

ADMIN = 900
AREAS = [Area.PROVINCE, Area.PARIS, Area.CORSICA, Area.OVERSEAS, Area.ILE_DE_FRANCE, Area.PROVINCE]


async def seed(settings: Settings, count: int) -> list[int]:
    """Confirmed participants with tickets, written straight to the database."""
    store = await open_migrated_store(settings, Clock())
    try:
        for n in range(1, count + 1):
            person = entered(
                n, first_name=f"Prénom{n}", last_name="Nom", phone=f"+336123400{n:02d}",
                area=AREAS[n % len(AREAS)], ticket=f"TK{n:08d}", question=f"Question {n} ?",
            )  # fmt: skip
            await store.save(person, 0, [RecordConsent(c) for c in person.consents], None, NOW)
    finally:
        await store.close()
    return list(range(1, count + 1))


def admin_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.replace(
        admin_ids=frozenset({ADMIN}),
        mail_outbox_dir=str(tmp_path / "outbox"),
        draw_check_seconds=0.02,
    )


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in 3 s")


def winner_chats(api: FakeBotApi) -> list[int]:
    return [
        call.params["chat_id"]
        for call in api.calls
        if call.method == "sendMessage"
        and "win.accept" in json.dumps(call.params.get("reply_markup"))
    ]


async def test_admin_commands_do_not_exist_for_others(settings: Settings, tmp_path: Path) -> None:
    api, updates = FakeBotApi(), Updates()
    someone = Updates.user(5)
    async with running_bot(admin_settings(settings, tmp_path), api) as bot:
        for command in ("/draw", "/stats", "/export", "/exclure TK1 x", "/nimportequoi"):
            await bot.feed(updates.text(someone, command))
        await bot.feed(updates.press(someone, "admin.draw.confirm"))
        for command in ("/draw", "/nimportequoi"):
            await bot.feed(updates.in_group(Updates.user(ADMIN), command, group_id=-7))
    answers = api.texts_to(5)
    assert answers[:5] == [answers[4]] * 5 and "Je ne connais pas" in answers[0]
    assert "plus actif" in answers[5]
    group = [call.params["text"] for call in api.to_chat(-7)]
    assert group[0] == group[1]


async def test_a_double_confirmation_makes_one_verifiable_draw(
    settings: Settings, tmp_path: Path
) -> None:
    settings = admin_settings(settings, tmp_path)
    people = await seed(settings, 8)
    api, updates = FakeBotApi(), Updates()
    admin = Updates.user(ADMIN)
    async with running_bot(settings, api) as bot:
        await bot.feed(updates.text(admin, "/draw 2 3"))
        preview = api.texts_to(ADMIN)[-1]
        assert "Tickets dans le tirage : 8" in preview
        assert api.last_buttons(ADMIN)["✅ Confirmer le tirage"] == "admin.draw.confirm"
        await bot.feed(
            updates.press(admin, "admin.draw.confirm"), updates.press(admin, "admin.draw.confirm")
        )
        await bot.feed(updates.text(admin, "/draw"))
        assert "déjà eu lieu" in api.texts_to(ADMIN)[-1]
        for user in people:
            await bot.feed(updates.text(Updates.user(user), "/monticket"))
    [certificate_file] = [
        v for k, v in api.named_documents_to(ADMIN).items() if k.endswith(".json")
    ]
    certificate = json.loads(certificate_file)
    tickets = [f"TK{n:08d}" for n in people]
    assert verify(certificate, tickets) == [] and certificate["tickets"] == 8
    assert len(certificate["winners"]) == 2 and len(certificate["reserves"]) == 3
    assert sorted(winner_chats(api)) == sorted(int(t[2:]) for t in certificate["winners"])
    result = next(text for text in api.texts_to(ADMIN) if text.startswith("🎉 Résultat"))
    assert f"1. {certificate['winners'][0]} — gagnant — Prénom" in result
    first_reserve = int(certificate["reserves"][0][2:])
    assert "suppléant n°1" in api.texts_to(first_reserve)[-1]
    drawn = {int(t[2:]) for t in certificate["winners"] + certificate["reserves"]}
    not_drawn = next(user for user in people if user not in drawn)
    assert "n'a pas été tiré" in api.texts_to(not_drawn)[-1]
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2  # the winners' emails


async def test_reserves_are_promoted_on_decline_and_on_deadline(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    settings = admin_settings(settings, tmp_path)
    await seed(settings, 6)
    api, updates = FakeBotApi(), Updates()
    admin = Updates.user(ADMIN)
    async with running_bot(settings, api, clock) as bot:
        await bot.feed(updates.text(admin, "/draw 2 2"), updates.press(admin, "admin.draw.confirm"))
        first, second = winner_chats(api)
        await bot.feed(updates.press(Updates.user(first), "win.decline"))
        assert "suppléant suivant" in api.texts_to(first)[-1]
        await until(lambda: len(winner_chats(api)) == 3)
        reserve_one = winner_chats(api)[2]
        await bot.feed(updates.press(Updates.user(reserve_one), "win.accept"))
        assert "Merci, c'est noté" in api.texts_to(reserve_one)[-1]
        clock.advance(73 * 3600)  # past the 72-hour deadline: the second winner never answered
        await until(lambda: len(winner_chats(api)) == 4)
        await bot.feed(updates.press(Updates.user(second), "win.accept"))
        assert "Le délai pour répondre est dépassé" in api.texts_to(second)[-1]
        await bot.feed(updates.text(admin, "/gagnants"))
    admin_texts = "\n".join(api.texts_to(ADMIN))
    assert "décline" in admin_texts and "n'a pas répondu à temps" in admin_texts
    assert admin_texts.count("devient gagnant") == 2
    listing = api.texts_to(ADMIN)[-1]
    assert "décliné" in listing and "délai dépassé" in listing and "accepté" in listing


async def test_the_meeting_reaches_accepted_winners_with_a_calendar_file(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    settings = admin_settings(settings, tmp_path)
    await seed(settings, 3)
    api, updates = FakeBotApi(), Updates()
    admin = Updates.user(ADMIN)
    async with running_bot(settings, api, clock) as bot:
        await bot.feed(updates.text(admin, "/draw 1 0"), updates.press(admin, "admin.draw.confirm"))
        [winner] = winner_chats(api)
        await bot.feed(updates.press(Updates.user(winner), "win.accept"))
        await bot.feed(
            updates.text(
                admin, "/rendezvous 2026-12-10 15:30 QG, 10 rue de Solférino; pièce d'identité"
            )
        )
        assert "1 gagnant(s) prévenu(s)" in api.texts_to(ADMIN)[-1]
        assert "le 10/12/2026 15:30" in api.texts_to(winner)[-1]
        ics = api.named_documents_to(winner)["rendez-vous.ics"].decode()
        assert "DTSTART:20261210T143000Z" in ics
        await bot.feed(updates.text(admin, "/rendezvous 2026-12-11 10:00 QG, 10 rue de Solférino"))
        assert "change" in api.texts_to(winner)[-1]
        clock.now = NOW.replace(month=12, day=10, hour=12)  # the day before
        await until(lambda: "C'est demain" in api.texts_to(winner)[-1])
        await asyncio.sleep(0.1)
    assert sum("C'est demain" in text for text in api.texts_to(winner)) == 1


async def test_figures_lists_and_exclusion(settings: Settings, tmp_path: Path) -> None:
    settings = admin_settings(settings, tmp_path)
    await seed(settings, 4)
    api, updates = FakeBotApi(), Updates()
    admin = Updates.user(ADMIN)
    async with running_bot(settings, api) as bot:
        await bot.feed(updates.text(admin, "/exclure tk00000002 membre de l'équipe"))
        await bot.feed(updates.text(Updates.user(2), "/monticket"))
        for command in ("/stats", "/export", "/questions", "/journal"):
            await bot.feed(updates.text(admin, command))
    texts = api.texts_to(ADMIN)
    assert "TK00000002 est écarté" in texts[0]
    assert "écarté du tirage par l'organisation" in api.texts_to(2)[-1]
    stats = next(text for text in texts if text.startswith("📊"))
    assert "Confirmées : 4" in stats and "Dans le tirage : 3" in stats
    assert "Données effacées à la demande : 0" in stats
    assert [call.method for call in api.to_chat(ADMIN)].count("sendPhoto") == 1
    rows = list(
        csv.reader(
            io.StringIO(api.named_documents_to(ADMIN)["participants.csv"].decode("utf-8-sig")),
            delimiter=";",
        )
    )
    assert len(rows) == 5 and rows[0][0] == "ticket"
    assert "• 69003 — Question" in next(text for text in texts if text.startswith("❓"))
    journal = next(text for text in texts if text.startswith("📒"))
    assert "exclude TK00000002 membre de l'équipe" in journal and "export" in journal


async def test_a_committed_seed_is_revealed_by_the_draw(settings: Settings, tmp_path: Path) -> None:
    settings = admin_settings(settings, tmp_path)
    await seed(settings, 5)
    api, updates = FakeBotApi(), Updates()
    admin = Updates.user(ADMIN)
    async with running_bot(settings, api) as bot:
        await bot.feed(updates.text(admin, "/draw commit"))
        commitment = api.texts_to(ADMIN)[-1].split("\n")[1]
        await bot.feed(updates.text(admin, "/draw commit"), updates.text(admin, "/draw 1 1"))
        assert commitment in api.texts_to(ADMIN)[-1]
        await bot.feed(updates.press(admin, "admin.draw.cancel"), updates.text(admin, "/draw 1 1"))
        await bot.feed(updates.press(admin, "admin.draw.confirm"))
    certificate = json.loads(next(iter(api.named_documents_to(ADMIN).values())))
    assert certificate["commitment"] == commitment
    assert hashlib.sha256(bytes.fromhex(certificate["seed"])).hexdigest() == commitment


async def test_a_second_admin_can_be_required(settings: Settings, tmp_path: Path) -> None:
    settings = replace(
        admin_settings(settings, tmp_path),
        admin_ids=frozenset({ADMIN, ADMIN + 1}),
        draw_requires_second_admin=True,
    )
    await seed(settings, 3)
    api, updates = FakeBotApi(), Updates()
    async with running_bot(settings, api) as bot:
        await bot.feed(
            updates.text(Updates.user(ADMIN), "/draw 1 1"),
            updates.press(Updates.user(ADMIN), "admin.draw.confirm"),
        )
        assert "Un autre admin" in api.texts_to(ADMIN)[-1]
        await bot.feed(updates.press(Updates.user(ADMIN + 1), "admin.draw.confirm"))
    assert len(api.named_documents_to(ADMIN + 1)) == 1


async def test_anyone_can_verify_with_the_command_line(settings: Settings, tmp_path: Path) -> None:
    settings = admin_settings(settings, tmp_path)
    await seed(settings, 6)
    api, updates = FakeBotApi(), Updates()
    async with running_bot(settings, api) as bot:
        await bot.feed(
            updates.text(Updates.user(ADMIN), "/draw"),
            updates.press(Updates.user(ADMIN), "admin.draw.confirm"),
        )
    (tmp_path / "certificate.json").write_bytes(next(iter(api.named_documents_to(ADMIN).values())))
    env = {"DATABASE_URL": settings.database_url}
    listed = coffeebot(tmp_path, "draw", "tickets", "-o", "tickets.txt", env=env)
    assert listed.returncode == 0, listed.stderr
    ok = coffeebot(tmp_path, "draw", "verify", "certificate.json", "tickets.txt")
    assert ok.returncode == 0 and ok.stdout.startswith("OK: 6 tickets")
    (tmp_path / "tickets.txt").write_text("".join(f"TK{n:08d}\n" for n in range(1, 6)))
    tampered = coffeebot(tmp_path, "draw", "verify", "certificate.json", "tickets.txt")
    assert tampered.returncode == 1 and "MISMATCH" in tampered.stdout
    exported = coffeebot(tmp_path, "export", env=env)
    assert exported.stdout.startswith("\ufeffticket;first_name")
