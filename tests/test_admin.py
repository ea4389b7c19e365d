"""The admin tools through the real Application: the draw, winners, meeting, figures."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bot.bootstrap import open_migrated_storage, utc_now
from bot.settings import Settings
from conversations.draw import (
    BeaconSource,
    final_seed,
    first_drawn,
    ticket_list,
    tickets_sha256,
    verify,
)
from conversations.ledger import record_hash
from conversations.model import Area, RecordConsent
from tests.conftest import NOW, dump, run_sql
from tests.factories import entered
from tests.fake_beacon import FakeDrand, running_drand
from tests.telegram_fakes import BotHarness, FakeBotApi, Updates, running_bot
from tests.test_console import coffeebot
from tests.test_mail import Clock

ADMIN = 900
AREAS = [Area.PROVINCE, Area.PARIS, Area.CORSICA, Area.OVERSEAS, Area.ILE_DE_FRANCE, Area.PROVINCE]


async def seed(settings: Settings, count: int) -> list[int]:
    """Confirmed participants with tickets, written straight to the database."""
    store = await open_migrated_storage(settings, Clock())
    try:
        for n in range(1, count + 1):
            person = entered(
                n, first_name=f"Prénom{n}", last_name="Nom", phone=f"+336123400{n:02d}",
                area=AREAS[n % len(AREAS)], ticket=f"TK{n:08d}", question=f"Question {n} ?",
            )  # fmt: skip
            await store.participants.save(
                person, 0, [RecordConsent(c) for c in person.consents], None, NOW
            )
    finally:
        await store.close()
    return list(range(1, count + 1))


def admin_settings(settings: Settings, tmp_path: Path, drand: FakeDrand | None = None) -> Settings:
    return settings.replace(
        admin_ids=frozenset({ADMIN}),
        mail_outbox_dir=str(tmp_path / "outbox"),
        draw_check_seconds=0.02,
        telegram_outbox_poll_seconds=0.05,
        beacon_url=drand.url if drand else "http://127.0.0.1:9",
        beacon_delay_seconds=0,
    )


def certificates(api: FakeBotApi, chat_id: int = ADMIN) -> list[dict[str, object]]:
    return [
        json.loads(content)
        for name, content in api.named_documents_to(chat_id).items()
        if name == "certificat-tirage.json"
    ]


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
        and "Félicitations" in call.params["text"]  # not the deadline's reminder
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
    async with running_drand(utc_now) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=2)
        people = await seed(settings, 8)
        api, updates = FakeBotApi(), Updates()
        admin = Updates.user(ADMIN)
        async with running_bot(settings, api) as bot:
            await bot.feed(updates.text(admin, "/draw 3"))
            preview = api.texts_to(ADMIN)[-1]
            tickets = [f"TK{n:08d}" for n in people]
            assert "Tickets dans le tirage\u00a0: 8" in preview
            assert (
                f"SHA-256 de la liste triée des tickets\u00a0: {tickets_sha256(tickets)}" in preview
            )
            assert "{" not in preview
            assert api.last_buttons(ADMIN)["✅ Confirmer le tirage"] == "admin.draw.confirm"
            await bot.feed(
                updates.press(admin, "admin.draw.confirm"),
                updates.press(admin, "admin.draw.confirm"),
            )
            await until(lambda: bool(certificates(api)))
            await until(lambda: len(winner_chats(api)) == 2)
            await bot.feed(updates.text(admin, "/draw"))
            assert "déjà eu lieu" in api.texts_to(ADMIN)[-1]
            for user in people:
                await bot.feed(updates.text(Updates.user(user), "/monticket"))
    [certificate] = certificates(api)
    assert verify(certificate, tickets) == [] and certificate["tickets"] == 8
    assert certificate["algorithm"].startswith("coffeebot-draw-2")
    assert certificate["beacon"]["source"] == "drand"
    assert certificate["beacon"]["round"] in drand.signatures
    assert len(certificate["winners"]) == 2 and len(certificate["reserves"]) == 3
    assert sorted(winner_chats(api)) == sorted(int(t[2:]) for t in certificate["winners"])
    result = next(text for text in api.texts_to(ADMIN) if text.startswith("🎉 Résultat"))
    assert f"1. {certificate['winners'][0]} — gagnant — Prénom" in result
    first_reserve = int(certificate["reserves"][0][2:])
    assert "suppléant n°1" in api.texts_to(first_reserve)[-1]
    drawn = {int(t[2:]) for t in certificate["winners"] + certificate["reserves"]}
    not_drawn = next(user for user in people if user not in drawn)
    assert "n’a pas été tiré" in api.texts_to(not_drawn)[-1]
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2  # the winners' emails


async def draw_at(bot: BotHarness, clock: Clock, api: FakeBotApi, command: str) -> None:
    """Preview and confirm as the only admin, then let the beacon's round come out."""
    updates, admin = Updates(start=10_000), Updates.user(ADMIN)
    await bot.feed(updates.text(admin, command), updates.press(admin, "admin.draw.confirm"))
    clock.advance(2)
    await until(lambda: bool(certificates(api)))


async def test_reserves_are_promoted_in_order_with_public_addenda(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=2)
        await seed(settings, 7)
        api, updates = FakeBotApi(), Updates()
        admin = Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await draw_at(bot, clock, api, "/draw 3")
            [certificate] = certificates(api)
            reserves = [int(t[2:]) for t in certificate["reserves"]]
            await until(lambda: len(winner_chats(api)) == 2)
            first, second = winner_chats(api)
            await bot.feed(updates.press(Updates.user(first), "win.decline"))
            assert "suppléant suivant" in api.texts_to(first)[-1]
            await until(lambda: len(winner_chats(api)) == 3)
            assert winner_chats(api)[2] == reserves[0]
            await bot.feed(updates.press(Updates.user(reserves[0]), "win.accept"))
            assert "Merci, c’est noté" in api.texts_to(reserves[0])[-1]
            clock.advance(73 * 3600)  # past the 72-hour deadline: the second winner never answered
            await until(lambda: len(winner_chats(api)) == 4)
            assert winner_chats(api)[3] == reserves[1]
            await bot.feed(updates.press(Updates.user(second), "win.accept"))
            assert "Le délai pour répondre est dépassé" in api.texts_to(second)[-1]
            # A reserve cannot be skipped, and a replacement needs a reason.
            third = certificate["reserves"][2]
            await bot.feed(updates.text(admin, f"/remplacer {third} injoignable"))
            assert "aucun ne peut être sauté" in api.texts_to(ADMIN)[-1]
            await bot.feed(updates.text(admin, f"/remplacer TK{reserves[0]:08d}"))
            assert "Usage\u00a0: /remplacer" in api.texts_to(ADMIN)[-1]
            await bot.feed(updates.text(admin, f"/remplacer TK{reserves[0]:08d} injoignable x"))
            assert "un avenant public" in api.texts_to(ADMIN)[-1]
            await until(lambda: len(winner_chats(api)) == 5)
            assert winner_chats(api)[4] == reserves[2]
            await bot.feed(updates.text(admin, f"/remplacer TK{reserves[0]:08d} injoignable"))
            assert "n’est pas un gagnant" in api.texts_to(ADMIN)[-1]
            await bot.feed(updates.text(admin, "/gagnants"))
    admin_texts = "\n".join(api.texts_to(ADMIN))
    assert "décline" in admin_texts and "n’a pas répondu à temps" in admin_texts
    assert admin_texts.count("devient gagnant") == 3
    listing = api.texts_to(ADMIN)[-1]
    addenda = json.loads(api.named_documents_to(ADMIN)["avenants-tirage.json"])
    assert "décliné" in listing and "délai dépassé" in listing and "remplacé" in listing
    assert "📎 Avenants publics" in listing and "(injoignable) → " in listing
    assert f"Empreinte du dernier avenant, à publier\u00a0: {record_hash(addenda[-1])}" in listing
    assert [a["reason"] for a in addenda] == ["declined", "expired", "unreachable"]
    assert [a["promoted"] for a in addenda] == certificate["reserves"]
    tickets = [f"TK{n:08d}" for n in range(1, 8)]
    assert verify(certificate, tickets, addenda) == []
    skipped = [*addenda[:1], {**addenda[1], "promoted": certificate["reserves"][2]}]
    assert any("the next is" in problem for problem in verify(certificate, tickets, skipped))


async def test_the_meeting_reaches_accepted_winners_with_a_calendar_file(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed(settings, 3)
        api, updates = FakeBotApi(), Updates()
        admin = Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await draw_at(bot, clock, api, "/draw 0")
            await until(lambda: len(winner_chats(api)) == 1)
            [winner] = winner_chats(api)
            await bot.feed(updates.press(Updates.user(winner), "win.accept"))
            await bot.feed(
                updates.text(
                    admin, "/rendezvous 2026-12-10 15:30 QG, 10 rue de Solférino; pièce d'identité"
                )
            )
            assert "1 gagnant(s) prévenu(s)" in api.texts_to(ADMIN)[-1]
            assert "le jeudi 10 décembre 2026 à 15 h 30, heure de Paris" in api.texts_to(winner)[-1]
            ics = api.named_documents_to(winner)["rendez-vous.ics"].decode()
            assert "DTSTART:20261210T143000Z" in ics
            await bot.feed(
                updates.text(admin, "/rendezvous 2026-12-11 10:00 QG, 10 rue de Solférino")
            )
            assert "change" in api.texts_to(winner)[-1]
            clock.now = NOW.replace(month=12, day=10, hour=12)  # the day before
            # Not always the last message: an entitled winner is also asked for receipts.
            await until(lambda: any("C’est demain" in text for text in api.texts_to(winner)))
            await asyncio.sleep(0.1)
    assert sum("C’est demain" in text for text in api.texts_to(winner)) == 1


async def test_figures_lists_and_exclusion(settings: Settings, tmp_path: Path) -> None:
    settings = admin_settings(settings, tmp_path)
    await seed(settings, 4)
    api, updates = FakeBotApi(), Updates()
    admin = Updates.user(ADMIN)
    async with running_bot(settings, api) as bot:
        await bot.feed(updates.text(admin, "/exclure tk00000002 équipe membre de l'équipe"))
        await bot.feed(updates.text(Updates.user(2), "/monticket"))
        for command in ("/stats", "/export", "/questions", "/journal"):
            await bot.feed(updates.text(admin, command))
    texts = api.texts_to(ADMIN)
    assert "TK00000002 est écarté" in texts[0]
    assert "écarté du tirage par l’organisation" in api.texts_to(2)[-1]
    stats = next(text for text in texts if text.startswith("📊"))
    assert "Confirmées\u00a0: 4" in stats and "Dans le tirage\u00a0: 3" in stats
    assert "Données effacées à la demande\u00a0: 0" in stats
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
    assert "exclude TK00000002 staff membre de l'équipe" in journal and "export" in journal


async def set_excluded_reason(settings: Settings, ticket: str, reason: str) -> None:
    """An exclusion as version 3 wrote it: free text."""
    # Ticket and reason are the test's own plain words.
    await run_sql(
        settings.database_url,
        f"UPDATE entries SET excluded_reason = '{reason}' WHERE ticket = '{ticket}'",
    )


async def test_exclusions_are_public_and_end_at_the_freeze(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=5)
        await seed(settings, 6)
        api, updates = FakeBotApi(), Updates()
        admin = Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await bot.feed(updates.text(admin, "/exclure TK00000002"))
            assert "Usage\u00a0: /exclure" in api.texts_to(ADMIN)[-1]
            assert "équipe, doublon, règlement, demande" in api.texts_to(ADMIN)[-1]
            await bot.feed(updates.text(admin, "/exclure TK00000002 pasunmotif x"))
            assert "Usage\u00a0: /exclure" in api.texts_to(ADMIN)[-1]
            await bot.feed(updates.text(admin, "/exclure TK00000002 doublon même personne"))
            await set_excluded_reason(settings, "TK00000006", "ancien motif libre, M. Dupont")
            await bot.feed(updates.text(admin, "/draw 0"))
            await bot.feed(updates.text(admin, "/exclure TK00000003 équipe bénévole"))
            assert "figée" in api.texts_to(ADMIN)[-1]
            await bot.feed(updates.press(admin, "admin.draw.confirm"))
            clock.advance(2)
            await until(lambda: bool(certificates(api)))
    [certificate] = certificates(api)
    assert certificate["excluded"] == [
        {"ticket": "TK00000002", "reason": "duplicate"},
        {"ticket": "TK00000006", "reason": "other"},
    ]
    tickets = [f"TK{n:08d}" for n in (1, 3, 4, 5)]
    assert sorted(certificate["winners"]) == tickets
    assert verify(certificate, tickets) == []
    assert verify(certificate, [*tickets, "TK00000002"])


async def test_nobody_reading_the_database_before_the_beacon_can_foresee_the_order(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock, period=30) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=5)
        await seed(settings, 40)
        api, updates = FakeBotApi(), Updates()
        admin = Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await bot.feed(updates.text(admin, "/draw commit"), updates.text(admin, "/draw 5"))
            await bot.feed(updates.press(admin, "admin.draw.confirm"))
            assert "attend le hasard public drand" in api.texts_to(ADMIN)[-1]
            await asyncio.sleep(0.1)  # ticks: still no round, no draw
            assert certificates(api) == [] and drand.signatures == {}
            stored = await dump(settings.database_url)
            await bot.feed(updates.press(admin, "admin.draw.cancel"))
            assert "Trop tard pour annuler" in api.texts_to(ADMIN)[-1]
            clock.advance(30)
            await until(lambda: bool(certificates(api)))
    [certificate] = certificates(api)
    tickets = [f"TK{n:08d}" for n in range(1, 41)]
    assert verify(certificate, tickets) == []
    # The dump holds the secret and the list, but not the beacon, so not the seed nor the order.
    assert certificate["secret"] in stored
    assert certificate["beacon"]["value"] not in stored and certificate["seed"] not in stored
    secret, digest = bytes.fromhex(certificate["secret"]), tickets_sha256(tickets)
    drawn = certificate["winners"] + certificate["reserves"]
    for guess in ("", "0" * 64, certificate["commitment"]):
        assert first_drawn(final_seed(secret, digest, guess), tickets, 10) != drawn


async def test_an_unreachable_beacon_leaves_the_draw_pending(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed(settings, 4)
        api, updates = FakeBotApi(), Updates()
        admin = Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            drand.down = True
            await bot.feed(updates.text(admin, "/draw 1"))
            clock.advance(5)
            await bot.feed(updates.press(admin, "admin.draw.cancel"))
            assert "Trop tard pour annuler" in api.texts_to(ADMIN)[-1]
            await bot.feed(updates.press(admin, "admin.draw.confirm"))
            assert "Impossible d’obtenir le hasard public" in api.texts_to(ADMIN)[-1]
            assert api.last_buttons(ADMIN)["🔄 Réessayer"] == "admin.draw.retry"
            asked = drand.requests
            await until(lambda: drand.requests > asked + 2)  # the tick keeps trying
            assert certificates(api) == [] and winner_chats(api) == []
            drand.down = False
            await bot.feed(updates.press(admin, "admin.draw.retry"))
            await until(lambda: bool(certificates(api)))
    assert verify(certificates(api)[0], [f"TK{n:08d}" for n in range(1, 5)]) == []


async def test_a_manual_beacon_needs_a_second_admin(settings: Settings, tmp_path: Path) -> None:
    clock = Clock(NOW)
    settings = replace(
        admin_settings(settings, tmp_path).replace(winners=1),
        admin_ids=frozenset({ADMIN, ADMIN + 1}),
        beacon=BeaconSource.MANUAL,
        beacon_delay_seconds=3600,
    )
    await seed(settings, 5)
    api, updates = FakeBotApi(), Updates()
    first, second = Updates.user(ADMIN), Updates.user(ADMIN + 1)
    async with running_bot(settings, api, clock) as bot:
        await bot.feed(updates.text(first, "/draw 2"))
        assert "collée par un admin" in api.texts_to(ADMIN)[-1]
        await bot.feed(updates.press(second, "admin.draw.confirm"))
        assert "attend la valeur publique" in api.texts_to(ADMIN + 1)[-1]
        await bot.feed(updates.text(first, "/draw beacon 7 12 23 34 45"))
        assert "Trop tôt" in api.texts_to(ADMIN)[-1]
        clock.advance(3600)
        await bot.feed(updates.text(first, "/draw beacon 7 12 23 34 45 + 3"))
        assert api.last_buttons(ADMIN + 1)["✅ Je confirme cette valeur"] == "admin.beacon.ok"
        await bot.feed(updates.press(first, "admin.beacon.ok"))
        assert "Un autre admin que celui qui l’a collée" in api.texts_to(ADMIN)[-1]
        assert certificates(api) == []
        await bot.feed(updates.press(second, "admin.beacon.ok"))
        await until(lambda: bool(certificates(api)))
    [certificate] = certificates(api)
    assert certificate["beacon"]["source"] == "manual"
    assert certificate["beacon"]["value"] == "7 12 23 34 45 + 3"
    assert verify(certificate, [f"TK{n:08d}" for n in range(1, 6)]) == []


async def test_a_committed_secret_is_revealed_by_the_draw(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed(settings, 5)
        api, updates = FakeBotApi(), Updates()
        admin = Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await bot.feed(updates.text(admin, "/draw commit"))
            commitment = api.texts_to(ADMIN)[-1].split("\n")[1]
            await bot.feed(updates.text(admin, "/draw commit"), updates.text(admin, "/draw 1"))
            assert commitment in api.texts_to(ADMIN)[-1]
            await bot.feed(
                updates.press(admin, "admin.draw.cancel"), updates.text(admin, "/draw 1")
            )
            await draw_at(bot, clock, api, "/draw 1")
    [certificate] = certificates(api)
    assert certificate["commitment"] == commitment
    assert hashlib.sha256(bytes.fromhex(certificate["secret"])).hexdigest() == commitment


async def test_with_two_admins_a_second_one_confirms_by_default(
    settings: Settings, tmp_path: Path
) -> None:
    async with running_drand(utc_now) as drand:
        settings = replace(
            admin_settings(settings, tmp_path, drand),
            admin_ids=frozenset({ADMIN, ADMIN + 1}),
            winners=1,
        )
        assert settings.draw_requires_second_admin is None and settings.second_admin_required
        await seed(settings, 3)
        api, updates = FakeBotApi(), Updates()
        async with running_bot(settings, api) as bot:
            await bot.feed(
                updates.text(Updates.user(ADMIN), "/draw 1"),
                updates.press(Updates.user(ADMIN), "admin.draw.confirm"),
            )
            assert "Un autre admin" in api.texts_to(ADMIN)[-1]
            await bot.feed(updates.press(Updates.user(ADMIN + 1), "admin.draw.confirm"))
            await until(lambda: bool(certificates(api, ADMIN + 1)))
    assert certificates(api, ADMIN) == certificates(api, ADMIN + 1)


def test_the_second_admin_setting_follows_the_admin_list() -> None:
    assert Settings.from_env({"ADMIN_IDS": "1, 2"}).second_admin_required
    assert not Settings.from_env({"ADMIN_IDS": "1"}).second_admin_required
    explicit = {"ADMIN_IDS": "1,2", "DRAW_REQUIRES_SECOND_ADMIN": "false"}
    assert not Settings.from_env(explicit).second_admin_required


async def test_anyone_can_verify_with_the_command_line(settings: Settings, tmp_path: Path) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed(settings, 6)
        api, updates = FakeBotApi(), Updates()
        async with running_bot(settings, api, clock) as bot:
            await draw_at(bot, clock, api, "/draw 2")
            await until(lambda: len(winner_chats(api)) == 1)
            [winner] = winner_chats(api)
            await bot.feed(updates.press(Updates.user(winner), "win.decline"))
            await until(lambda: len(winner_chats(api)) == 2)
            await bot.feed(updates.text(Updates.user(ADMIN), "/gagnants"))
    (tmp_path / "certificate.json").write_bytes(
        api.named_documents_to(ADMIN)["certificat-tirage.json"]
    )
    (tmp_path / "addenda.json").write_bytes(api.named_documents_to(ADMIN)["avenants-tirage.json"])
    env = {"DATABASE_URL": settings.database_url}
    listed = coffeebot(tmp_path, "draw", "tickets", "-o", "tickets.txt", env=env)
    assert listed.returncode == 0, listed.stderr
    assert (tmp_path / "tickets.txt").read_text() == ticket_list(f"TK{n:08d}" for n in range(1, 7))
    arguments = ("draw", "verify", "certificate.json", "tickets.txt", "--addenda", "addenda.json")
    ok = coffeebot(tmp_path, *arguments)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: 6 tickets"), ok.stdout
    assert "addendum 1:" in ok.stdout
    embed = ("--embed", "certificate.json", "tickets.txt", "addenda.json")
    page = coffeebot(tmp_path, "draw", "page", "-o", "verify.html", *embed)
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "verify.html").read_text()
    assert re.search(r"<[a-z]+ [^>]*(src|href)=", html) is None  # nothing loaded from elsewhere
    assert '"tickets": "TK00000001\\nTK00000002' in html and "__EMBEDDED__" not in html
    addenda = json.loads((tmp_path / "addenda.json").read_text())
    addenda[0]["promoted"] = json.loads((tmp_path / "certificate.json").read_text())["reserves"][1]
    (tmp_path / "addenda.json").write_text(json.dumps(addenda))
    edited = coffeebot(tmp_path, *arguments)
    assert edited.returncode == 1 and "addendum" in edited.stdout
    (tmp_path / "tickets.txt").write_text("".join(f"TK{n:08d}\n" for n in range(1, 6)))
    tampered = coffeebot(tmp_path, "draw", "verify", "certificate.json", "tickets.txt")
    assert tampered.returncode == 1 and "MISMATCH" in tampered.stdout
    audit = coffeebot(tmp_path, "audit", "verify", "--certificate", "certificate.json", env=env)
    assert audit.returncode == 0 and "chain intact" in audit.stdout, audit.stdout
    exported = coffeebot(tmp_path, "export", env=env)
    assert exported.stdout.startswith("\ufeffticket;first_name")
