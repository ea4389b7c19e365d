"""Travel expenses through the real Application: a winner's receipts (photo and PDF), refused
files, the admins' /frais and /rembourser with their caps and overrides, double taps, the
payment's notice, and the mandataire's CSV."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import stat
from pathlib import Path
from typing import Any

from telegram import Update

from bot.bootstrap import migrated_storage
from bot.settings import Settings
from bot.telegram.application import build_application, file_url
from bot.telegram.receipts import receipt_of
from conversations.expenses import NotAReceipt, Receipt, ReceiptKind
from conversations.model import Area
from tests.bot_api_server import LocalBotApi
from tests.conftest import NOW
from tests.fake_beacon import running_drand
from tests.telegram_fakes import BotHarness, FakeBotApi, Updates, running_bot
from tests.test_admin import ADMIN, admin_settings, draw_at, until, winner_chats
from tests.test_console import coffeebot
from tests.test_draw_results import seed_areas
from tests.test_mail import Clock

PHOTO = b"\xff\xd8\xff\xe0 a train ticket, photographed" + bytes(range(256))
PDF = b"%PDF-1.4\n% an e-ticket\n" + bytes(200)
ASKED = "Envoyez-moi ici la photo ou le PDF"
PAID_NOTICE = "Votre remboursement de"


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


async def accepted_winner(
    bot: BotHarness, clock: Clock, api: FakeBotApi, updates: Updates, user_id: int = 1
) -> None:
    """Draw (one winner, no reserve), and the winner accepts: they are asked for receipts."""
    await draw_at(bot, clock, api, "/draw 0")
    await until(lambda: user_id in winner_chats(api))
    await bot.feed(updates.press(Updates.user(user_id), "win.accept"))
    await until(lambda: any(ASKED in text for text in api.texts_to(user_id)))


async def payments_of(settings: Settings, ticket: str) -> int:
    async with migrated_storage(settings) as storage:
        found = await storage.expenses.by_ticket(ticket)
        assert found is not None
        return len(found.expense.payments)


async def test_a_winner_claims_with_a_photo_and_a_pdf_and_is_told_of_the_payment(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(
            winners=1, expense_files_dir=str(tmp_path / "receipts")
        )
        await seed_areas(settings, [Area.PROVINCE])
        api, updates = FakeBotApi(), Updates(start=500)
        winner, admin = Updates.user(1), Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await accepted_winner(bot, clock, api, updates)
            asked = next(text for text in api.texts_to(1) if ASKED in text)
            assert "jusqu’à 200,00\u00a0€" in asked
            photo_id, photo_unique = api.add_file(PHOTO)
            photo = updates.photo(winner, photo_id, photo_unique, len(PHOTO))
            # The same update delivered twice (a webhook retry) records one receipt.
            await bot.feed(photo, photo)
            assert "Bien reçu (📷 photo)" in api.texts_to(1)[-1]
            said = len(api.texts_to(1))
            await bot.feed(updates.text(winner, "45,50 €"))
            assert "1. 📷 photo — 45,50\u00a0€" in api.texts_to(1)[-1]
            await bot.feed(updates.press(winner, "expense.add"))
            pdf_id, pdf_unique = api.add_file(PDF)
            await bot.feed(
                updates.document(winner, pdf_id, pdf_unique, "billet.pdf", "application/pdf")
            )
            assert "Bien reçu (📄 PDF)" in api.texts_to(1)[-1]
            await bot.feed(updates.text(winner, "30"))
            summary = api.texts_to(1)[-1]
            assert "2. 📄 PDF — 30,00\u00a0€" in summary and "Total\u00a0: 75,50\u00a0€" in summary
            confirm = updates.press(winner, "expense.confirm")
            await bot.feed(confirm, confirm)
            assert "demande de remboursement de 75,50\u00a0€ est transmise" in api.texts_to(1)[-1]
            assert len(api.texts_to(1)) == said + 5  # one answer per update, none for the retry

            await bot.feed(updates.text(admin, "/frais"))
            listing = api.texts_to(ADMIN)[-1]
            assert "TK00000001 — Zoé" in listing and "plafond 200,00\u00a0€" in listing
            row = "2 justificatif(s) — demandé 75,50\u00a0€ — payé 0,00\u00a0€ — demandé"
            assert row in listing
            await bot.feed(updates.text(admin, "/frais tk00000001"))
            detail = "\n".join(api.texts_to(ADMIN)[-1:])
            assert sha(PHOTO) in detail and sha(PDF) in detail
            resent = [c for c in api.to_chat(ADMIN) if c.method in ("sendPhoto", "sendDocument")]
            assert [c.params.get("photo") or c.params.get("document") for c in resent[-2:]] == [
                photo_id,
                pdf_id,
            ]

            await bot.feed(updates.text(admin, "/rembourser TK00000001 80 VIR-1"))
            assert "Refusé\u00a0: le gagnant a demandé 75,50\u00a0€" in api.texts_to(ADMIN)[-1]
            await bot.feed(updates.text(admin, "/rembourser TK00000001 250 VIR-1 forcer perdu"))
            assert "le plafond de ce trajet est 200,00\u00a0€" in api.texts_to(ADMIN)[-1]
            # A double tap: the second is the same payment, recorded once.
            twice = updates.text(admin, "/rembourser TK00000001 75.50 € VIR-1")
            again = updates.text(admin, "/rembourser TK00000001 75.50 € VIR-1")
            await bot.feed(twice, again)
            assert "Paiement de 75,50\u00a0€ enregistré pour TK00000001" in api.texts_to(ADMIN)[-2]
            assert "déjà enregistré pour TK00000001" in api.texts_to(ADMIN)[-1]
            await until(lambda: any(PAID_NOTICE in text for text in api.texts_to(1)))
            forced = "/rembourser TK00000001 12 VIR-2 forcer taxi pris faute de train"
            await bot.feed(updates.text(admin, forced))
            assert "total payé\u00a0: 87,50\u00a0€" in api.texts_to(ADMIN)[-1]
            await until(lambda: sum(PAID_NOTICE in text for text in api.texts_to(1)) == 2)
            await asyncio.sleep(0.2)  # nothing more arrives
            await bot.feed(updates.text(admin, "/frais TK00000001"))
            detail = api.texts_to(ADMIN)[-1]
            assert "au-delà de la demande\u00a0: taxi pris faute de train" in detail
    notices = [text for text in api.texts_to(1) if PAID_NOTICE in text]
    assert notices == [
        "💶 Votre remboursement de 75,50\u00a0€ est enregistré (total payé\u00a0: 75,50\u00a0€)."
        " Merci d’être venu(e)\u202f!",
        "💶 Votre remboursement de 12,00\u00a0€ est enregistré (total payé\u00a0: 87,50\u00a0€)."
        " Merci d’être venu(e)\u202f!",
    ]
    assert await payments_of(settings, "TK00000001") == 2
    async with migrated_storage(settings) as storage:
        actions = [entry["action"] for entry in await storage.audit.chain()]
        found = await storage.expenses.by_ticket("TK00000001")
    assert actions.count("expense.pay") == 2
    assert actions.count("expense.pay.refused") == 3
    assert {"expense.list", "expense.show"} <= set(actions)
    assert found is not None and [r.amount_cents for r in found.expense.receipts] == [4550, 3000]
    kept = sorted((tmp_path / "receipts").iterdir())
    assert [path.name for path in kept] == sorted([f"{sha(PHOTO)}.jpg", f"{sha(PDF)}.pdf"])
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in kept)
    assert {path.read_bytes() for path in kept} == {PHOTO, PDF}

    result = coffeebot(
        tmp_path, "expenses", "-o", "frais.csv", env={"DATABASE_URL": settings.database_url}
    )
    assert result.returncode == 0, result.stderr
    content = (tmp_path / "frais.csv").read_bytes()
    assert content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:4] == ["ticket", "first_name", "last_name", "postcode"]
    [line] = [row for row in rows if row[0] == "TK00000001"]
    assert line[4:10] == ["province", "train", "200,00", "75,50", "87,50", "2026-11-26"]
    assert line[10] == "VIR-1, VIR-2" and line[11] == f"{sha(PHOTO)} {sha(PDF)}"
    assert rows[-1][0] == "TOTAL" and rows[-1][6:9] == ["200,00", "75,50", "87,50"]


async def test_files_that_are_not_receipts_are_refused_kindly_and_change_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(
            winners=1, expense_max_file_bytes=2_000_000
        )
        await seed_areas(settings, [Area.CORSICA, Area.PROVINCE])
        api, updates = FakeBotApi(), Updates(start=500)
        async with running_bot(settings, api, clock) as bot:
            await draw_at(bot, clock, api, "/draw 0")
            await until(lambda: bool(winner_chats(api)))
            [chosen] = winner_chats(api)
            other = 3 - chosen
            winner = Updates.user(chosen)
            await bot.feed(updates.press(winner, "win.accept"))
            # The place's entitlement as frozen at the draw: Corsica's journey is arranged.
            cap = "700,00" if chosen == 1 else "200,00"
            await until(lambda: any(f"jusqu’à {cap}" in t for t in api.texts_to(chosen)))
            word_id, word_unique = api.add_file(b"PK\x03\x04 a word file")
            fake_id, fake_unique = api.add_file(b"MZ not a pdf at all")
            big_id, big_unique = api.add_file(b"%PDF-" + bytes(100))
            await bot.feed(
                updates.sticker(winner),
                updates.document(winner, word_id, word_unique, "billet.docx", "application/msword"),
                updates.document(winner, fake_id, fake_unique, "billet.pdf", "application/pdf"),
                updates.document(
                    winner, big_id, big_unique, "gros.pdf", "application/pdf", 2_000_001
                ),
                updates.text(winner, "45"),
            )
            refused = api.texts_to(chosen)[-5:]
            # Telegram will not give the file (gone, or above its 20 MB): said, nothing kept.
            await bot.feed(updates.photo(winner, "FILE-GONE", "UGONE"))
            # Someone who is not a winner sends a photo: the signup's usual answer.
            stranger_photo = api.add_file(PHOTO)
            await bot.feed(updates.photo(Updates.user(other), *stranger_photo))
    answers = refused
    assert api.texts_to(chosen)[-1].startswith("Je n’ai pas pu récupérer ce fichier")
    for refused in answers[:3]:
        assert refused.startswith("Je ne lis que les photos et les fichiers PDF")
        assert "Envoyez-moi la photo ou le PDF de votre justificatif" in refused
    assert answers[3].startswith("Ce fichier est trop lourd (au plus 2\u00a0Mo)")
    # No amount is awaited: the text is the signup conversation's, as before any expense.
    assert answers[4].startswith("✅ Vous participez au tirage au sort")
    assert big_id not in api.downloads()  # refused on its stated size, never downloaded
    assert word_id not in api.downloads()
    assert api.texts_to(other)[-1].startswith("Je ne peux lire ici que du texte")
    async with migrated_storage(settings) as storage:
        [expense] = await storage.expenses.all()
    assert expense.expense.receipts == ()
    assert expense.expense.travel == ("arranged" if chosen == 1 else "train")
    assert expense.claimant.postcode == "69003"


def test_files_are_downloaded_beside_the_bot_api() -> None:
    assert file_url("https://api.telegram.org/bot") == "https://api.telegram.org/file/bot"
    assert file_url("http://127.0.0.1:8081/bot/") == "http://127.0.0.1:8081/file/bot"


async def test_a_winner_without_travel_is_not_asked_and_unknown_tickets_are_said(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed_areas(settings, [Area.PARIS])
        api, updates = FakeBotApi(), Updates(start=500)
        admin = Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await draw_at(bot, clock, api, "/draw 0")
            await until(lambda: 1 in winner_chats(api))
            await bot.feed(updates.press(Updates.user(1), "win.accept"))
            await asyncio.sleep(0.3)  # the expense job runs meanwhile
            # Without an expense, a photo is not downloaded and a forged button does nothing.
            await bot.feed(
                updates.photo(Updates.user(1), *api.add_file(PHOTO)),
                updates.press(Updates.user(1), "expense.confirm"),
            )
            photo_answer, press_answer = api.texts_to(1)[-2:]
            await bot.feed(
                updates.text(admin, "/frais"),
                updates.text(admin, "/frais TK00000001"),
                updates.text(admin, "/rembourser TK00000001 10"),
                updates.text(admin, "/rembourser"),
                updates.text(admin, "/rembourser TK00000001 -5"),
            )
    assert not any(ASKED in text or "pris en charge" in text for text in api.texts_to(1))
    assert photo_answer.startswith("Je ne peux lire ici que du texte")
    assert "plus actif" in press_answer  # the signup's answer to a stale button
    assert api.downloads() == [] and not any(call.method == "getFile" for call in api.calls)
    none, unknown, unknown_pay, usage, negative = api.texts_to(ADMIN)[-5:]
    assert none == "Aucun gagnant n’a de frais de voyage pour l’instant."
    assert unknown.startswith("Aucun frais de voyage pour le ticket TK00000001")
    assert unknown_pay == unknown
    assert usage.startswith("Usage\u00a0: /rembourser TICKET MONTANT")
    assert negative == "Un montant ne peut pas être négatif."


class FailingOnce(FakeBotApi):
    """Refuses the next message to one chat, as a process killed before it could send."""

    fail_next_to: int | None = None

    def _answer(self, endpoint: str, params: dict[str, Any], files: dict[str, Any]) -> Any:
        if endpoint == "sendMessage" and params.get("chat_id") == self.fail_next_to:
            self.fail_next_to = None
            return None
        return super()._answer(endpoint, params, files)


async def test_a_redelivered_receipt_sends_the_reply_its_step_kept_back_and_nothing_else(
    settings: Settings, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed_areas(settings, [Area.PROVINCE])
        api, updates = FailingOnce(), Updates(start=500)
        winner = Updates.user(1)
        async with running_bot(settings, api, clock) as bot:
            await accepted_winner(bot, clock, api, updates)
            photo = updates.photo(winner, *api.add_file(PHOTO))
            api.fail_next_to = 1
            await bot.feed(photo)  # committed, but its answer never left
            await bot.feed(photo, photo)  # Telegram delivers it again (twice)
            await bot.feed(updates.text(winner, "20"))
    received = [text for text in api.texts_to(1) if text.startswith("Bien reçu (📷 photo)")]
    assert len(received) == 2  # the failed attempt, then the one sent on redelivery
    assert not any("déjà été envoyé" in text for text in api.texts_to(1))
    assert "1. 📷 photo — 20,00\u00a0€" in api.texts_to(1)[-1]
    async with migrated_storage(settings) as storage:
        found = await storage.expenses.by_ticket("TK00000001")
    assert found is not None and len(found.expense.receipts) == 1


async def test_a_receipt_is_downloaded_over_http_from_the_bot_api(settings: Settings) -> None:
    """The real HTTP client (aiohttp) against a Bot API server: getFile, then the download
    beside the API, as Telegram serves them."""
    server = LocalBotApi()
    server.files["FILE1"] = PDF
    await server.start()
    try:
        application = build_application(settings.replace(telegram_api_base_url=server.base_url))
        await application.bot.initialize()
        try:
            sent = Updates().document(Updates.user(1), "FILE1", "U1", "b.pdf", "application/pdf")
            gone = Updates().document(Updates.user(1), "FILE2", "U2", "c.pdf", "application/pdf")
            rules = settings.expense_rules
            found = [
                await receipt_of(
                    Update.de_json(update, application.bot).message, application.bot, rules, 5.0
                )
                for update in (sent, gone)
            ]
        finally:
            await application.bot.shutdown()
    finally:
        await server.stop()
    assert found[0] == (Receipt("FILE1", "U1", sha(PDF), ReceiptKind.PDF, len(PDF)), PDF)
    assert found[1] == (NotAReceipt("unreadable_file"), None)
    assert server.calls["getFile"] == 2 and server.calls["download"] == 1


async def test_an_expense_steps_replies_are_forgotten_once_they_have_left(
    settings: Settings, tmp_path: Path
) -> None:
    """Each step's replies are kept with its update only until they have left (they quote what
    the winner sent, amounts and all): those of the expense's steps were kept for good."""
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed_areas(settings, [Area.PROVINCE])
        api, updates = FakeBotApi(), Updates(start=700)
        winner = Updates.user(1)
        async with running_bot(settings, api, clock) as bot:
            await accepted_winner(bot, clock, api, updates)
            await bot.feed(
                updates.photo(winner, *api.add_file(PHOTO)), updates.text(winner, "85,50 €")
            )
    async with migrated_storage(settings) as storage:
        kept = await storage.database.fetch(
            "SELECT update_id FROM processed_updates WHERE update_id >= 700 AND replies IS NOT NULL"
        )
    assert [row[0] for row in kept] == []


async def test_a_payment_redelivered_after_the_repeat_window_is_recorded_once(
    settings: Settings, tmp_path: Path
) -> None:
    """Telegram delivers an update again when the bot did not answer it (a crash after the
    commit, a restart): a /rembourser with no reference, delivered again once the repeat
    window had passed, recorded a second payment and told the winner twice."""
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed_areas(settings, [Area.PROVINCE])
        api, updates = FakeBotApi(), Updates(start=900)
        winner, admin = Updates.user(1), Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await accepted_winner(bot, clock, api, updates)
            await bot.feed(updates.photo(winner, *api.add_file(PHOTO)))
            await bot.feed(updates.text(winner, "60"), updates.press(winner, "expense.confirm"))
            paid = updates.text(admin, "/rembourser TK00000001 30")
            await bot.feed(paid)
            assert "Paiement de 30,00\u00a0€ enregistré" in api.texts_to(ADMIN)[-1]
            clock.advance(3600)
            await bot.feed(paid)
            assert "déjà enregistré pour TK00000001" in api.texts_to(ADMIN)[-1]
            # A new command for the same amount, later, is another payment.
            await bot.feed(updates.text(admin, "/rembourser TK00000001 30"))
            assert "total payé\u00a0: 60,00\u00a0€" in api.texts_to(ADMIN)[-1]
    assert await payments_of(settings, "TK00000001") == 2


async def test_a_replaced_winner_s_expense_closes_with_its_receipts_and_payment_kept(
    settings: Settings, tmp_path: Path
) -> None:
    """A winner paid in part, then replaced (unreachable on the day): their expense closes in the
    replacement's transaction. It is not payable any more, /frais and the CSV say it is closed
    and leave its cap out of the totals, its receipt and payment stay for the accounts, and the
    former winner, sending another receipt, is told their place ended and what was paid stays."""
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed_areas(settings, [Area.PROVINCE] * 2)
        api, updates = FakeBotApi(), Updates(start=700)
        admin = Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await draw_at(bot, clock, api, "/draw 1")
            await until(lambda: bool(winner_chats(api)))
            first = winner_chats(api)[0]
            second = 3 - first
            ticket = f"TK{first:08d}"
            await bot.feed(updates.press(Updates.user(first), "win.accept"))
            await until(lambda: any(ASKED in text for text in api.texts_to(first)))
            await bot.feed(updates.photo(Updates.user(first), *api.add_file(PHOTO)))
            await bot.feed(updates.text(Updates.user(first), "60"))
            await bot.feed(updates.press(Updates.user(first), "expense.confirm"))
            await bot.feed(updates.text(admin, f"/rembourser {ticket} 20 VIR-1"))
            assert "Paiement de 20,00\u00a0€ enregistré" in api.texts_to(ADMIN)[-1]

            await bot.feed(updates.text(admin, f"/remplacer {ticket} injoignable"))
            await until(lambda: second in winner_chats(api))
            await bot.feed(updates.press(Updates.user(second), "win.accept"))
            await until(lambda: any(ASKED in text for text in api.texts_to(second)))

            await bot.feed(updates.text(admin, f"/rembourser {ticket} 10 VIR-2"))
            assert f"Refusé\u00a0: la place de {ticket} a pris fin" in api.texts_to(ADMIN)[-1]
            await bot.feed(updates.text(admin, "/frais"))
            listing = api.texts_to(ADMIN)[-1]
            [closed_row] = [line for line in listing.split("\n") if line.startswith(ticket)]
            assert "payé 20,00\u00a0€ — clos (place terminée)" in closed_row
            # The second winner's cap only: the first one's is owed nothing more.
            assert (
                "Total\u00a0: plafond 200,00\u00a0€ — demandé 60,00\u00a0€ — payé 20,00" in listing
            )

            await bot.feed(updates.photo(Updates.user(first), *api.add_file(PDF)))
            said = api.texts_to(first)[-1]
            assert "Votre place de gagnant a pris fin" in said
            assert "Les 20,00\u00a0€ déjà payés restent acquis" in said
    async with migrated_storage(settings) as storage:
        found = await storage.expenses.by_ticket(ticket)
        actions = [entry["action"] for entry in await storage.audit.chain()]
    assert found is not None
    assert [r.receipt.sha256 for r in found.expense.receipts] == [sha(PHOTO)]
    assert [p.amount_cents for p in found.expense.payments] == [2000]
    assert actions.count("expense.pay") == 1
    result = coffeebot(
        tmp_path, "expenses", "-o", "frais.csv", env={"DATABASE_URL": settings.database_url}
    )
    assert result.returncode == 0, result.stderr
    content = (tmp_path / "frais.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(content), delimiter=";"))
    assert rows[0][12] == "status"
    [line] = [row for row in rows if row[0] == ticket]
    assert line[6:9] == ["200,00", "60,00", "20,00"] and line[12] == "closed"
    assert rows[-1][0] == "TOTAL" and rows[-1][6:9] == ["200,00", "60,00", "20,00"]


async def test_a_reference_that_is_itself_an_amount_is_refused_and_nothing_is_recorded(
    settings: Settings, tmp_path: Path
) -> None:
    """`/rembourser T 12 50` recorded 12,00 € with the reference "50" (12,50 € was meant): a
    reference that reads as an amount is refused with how to write cents and a reference."""
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed_areas(settings, [Area.PROVINCE])
        api, updates = FakeBotApi(), Updates(start=1100)
        winner, admin = Updates.user(1), Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await accepted_winner(bot, clock, api, updates)
            await bot.feed(updates.photo(winner, *api.add_file(PHOTO)))
            await bot.feed(updates.text(winner, "60"), updates.press(winner, "expense.confirm"))
            for typed in ("12 50", "12 50,00"):
                await bot.feed(updates.text(admin, f"/rembourser TK00000001 {typed}"))
                said = api.texts_to(ADMIN)[-1]
                assert "Refusé\u00a0: après le montant «\u202f12\u202f», la référence" in said
                assert "/rembourser TK00000001 85,50 VIR-0412" in said
                assert "/rembourser TK00000001 12 réf-50" in said
            assert await payments_of(settings, "TK00000001") == 0
            await bot.feed(updates.text(admin, "/rembourser TK00000001 12,50"))
            assert "Paiement de 12,50\u00a0€ enregistré" in api.texts_to(ADMIN)[-1]
            await bot.feed(updates.text(admin, "/rembourser TK00000001 12 réf-50"))
            assert "total payé\u00a0: 24,50\u00a0€" in api.texts_to(ADMIN)[-1]
    async with migrated_storage(settings) as storage:
        found = await storage.expenses.by_ticket("TK00000001")
    assert found is not None
    assert [(p.amount_cents, p.reference) for p in found.expense.payments] == [
        (1250, None),
        (1200, "réf-50"),
    ]


async def test_a_mistaken_payment_is_cancelled_once_with_a_reason_and_the_winner_corrected(
    settings: Settings, tmp_path: Path
) -> None:
    """12,00 € recorded where 12,50 € was meant: /annuler_remboursement with a reason cancels
    it (audited), the amounts and status follow, the winner, told of the payment, is sent the
    correction; a double tap and the command delivered again change nothing more."""
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed_areas(settings, [Area.PROVINCE])
        api, updates = FakeBotApi(), Updates(start=1300)
        winner, admin = Updates.user(1), Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await accepted_winner(bot, clock, api, updates)
            await bot.feed(updates.photo(winner, *api.add_file(PHOTO)))
            await bot.feed(updates.text(winner, "12,50"), updates.press(winner, "expense.confirm"))
            await bot.feed(updates.text(admin, "/rembourser TK00000001 12 VIR-1"))
            assert "Paiement de 12,00\u00a0€ enregistré" in api.texts_to(ADMIN)[-1]
            await until(lambda: any(PAID_NOTICE in text for text in api.texts_to(1)))

            await bot.feed(updates.text(admin, "/annuler_remboursement TK00000001"))
            assert "Donnez la raison de l’annulation" in api.texts_to(ADMIN)[-1]
            cancel = updates.text(admin, "/annuler_remboursement TK00000001 12,50 et non 12")
            tap = updates.text(admin, "/annuler_remboursement TK00000001 12,50 et non 12")
            await bot.feed(cancel, tap, cancel)
            said = api.texts_to(ADMIN)[-3:]
            assert said[0].startswith("↩️ Paiement n°1 de 12,00\u00a0€ annulé pour TK00000001")
            assert "total payé\u00a0: 0,00\u00a0€" in said[0] and "reçoit la correction" in said[0]
            assert "Aucun paiement de TK00000001 n’est à annuler" in said[1]
            assert "Aucun paiement de TK00000001 n’est à annuler" in said[2]  # redelivered
            await until(lambda: any("↩️ Correction" in text for text in api.texts_to(1)))

            await bot.feed(updates.text(admin, "/frais TK00000001"))
            detail = api.texts_to(ADMIN)[-1]
            assert "payé 0,00\u00a0€ — demandé" in detail
            assert "annulé le" in detail and "12,50 et non 12" in detail
            # The right payment, with the same reference: the cancelled one names no transfer.
            await bot.feed(updates.text(admin, "/rembourser TK00000001 12,50 VIR-1"))
            assert "total payé\u00a0: 12,50\u00a0€" in api.texts_to(ADMIN)[-1]
            await until(lambda: sum(PAID_NOTICE in text for text in api.texts_to(1)) == 2)
            await asyncio.sleep(0.2)  # nothing more arrives
    corrections = [text for text in api.texts_to(1) if "↩️ Correction" in text]
    assert corrections == [
        "↩️ Correction\u00a0: le remboursement de 12,00\u00a0€ qui vous a été annoncé avait été"
        " enregistré par erreur, il est annulé (total payé\u00a0: 0,00\u00a0€). Pour toute"
        " question, contactez l’équipe de campagne."
    ]
    async with migrated_storage(settings) as storage:
        found = await storage.expenses.by_ticket("TK00000001")
        chain = await storage.audit.chain()
    assert found is not None and found.expense.paid_cents == 1250
    assert [p.cancelled_at is not None for p in found.expense.payments] == [True, False]
    cancels = [(e["details"], e["note"]) for e in chain if e["action"] == "expense.pay.cancel"]
    assert cancels == [("TK00000001 n°1 12,00", "reason=12,50 et non 12")]
    # The double tap and the redelivered command, refused, are in the log too.
    refused = [e["details"] for e in chain if e["action"] == "expense.pay.cancel.refused"]
    assert refused == ["TK00000001 - admin.expense.cancel_none"] * 2
    result = coffeebot(
        tmp_path, "expenses", "-o", "frais.csv", env={"DATABASE_URL": settings.database_url}
    )
    assert result.returncode == 0, result.stderr
    content = (tmp_path / "frais.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(content), delimiter=";"))
    [line] = [row for row in rows if row[0] == "TK00000001"]
    assert line[7:11] == ["12,50", "12,50", NOW.date().isoformat(), "VIR-1"]
    assert line[12] == "paid"


async def test_a_claim_refused_after_checking_is_closed_once_and_the_winner_told(
    settings: Settings, tmp_path: Path
) -> None:
    """A claim the mandataire decides not to pay had no command to close it (the purge then
    kept it, with the winner's contact, for years). /refuser_frais with a reason closes it:
    refused while a payment stands, once under a double tap and redelivery, audited, the winner
    told once; it can no longer be paid, /frais, /frais TICKET and the CSV say "refused", and
    its cap leaves the totals; what the winner sends afterwards is answered so."""
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed_areas(settings, [Area.PROVINCE])
        api, updates = FakeBotApi(), Updates(start=1700)
        winner, admin = Updates.user(1), Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await accepted_winner(bot, clock, api, updates)
            await bot.feed(updates.photo(winner, *api.add_file(PHOTO)))
            await bot.feed(updates.text(winner, "60"), updates.press(winner, "expense.confirm"))
            await bot.feed(updates.text(admin, "/rembourser TK00000001 10 VIR-1"))
            assert "Paiement de 10,00\u00a0€ enregistré" in api.texts_to(ADMIN)[-1]

            await bot.feed(updates.text(admin, "/refuser_frais TK00000001"))
            assert "Donnez la raison du refus" in api.texts_to(ADMIN)[-1]
            reason = "/refuser_frais TK00000001 billet d’une autre date"
            await bot.feed(updates.text(admin, reason))
            said = api.texts_to(ADMIN)[-1]
            assert "Refusé\u00a0: 10,00\u00a0€ sont déjà payés à TK00000001" in said
            assert "/annuler_remboursement TK00000001 raison" in said
            await bot.feed(updates.text(admin, "/annuler_remboursement TK00000001 erreur"))
            refuse = updates.text(admin, reason)
            await bot.feed(refuse, updates.text(admin, reason), refuse)
            said = api.texts_to(ADMIN)[-3:]
            assert said[0].startswith("🚫 Demande de TK00000001 (60,00\u00a0€) refusée")
            assert "La demande de TK00000001 est déjà refusée" in said[1]
            assert "La demande de TK00000001 est déjà refusée" in said[2]  # redelivered
            await until(lambda: any("n’est pas retenue" in text for text in api.texts_to(1)))

            await bot.feed(updates.text(admin, "/rembourser TK00000001 60 VIR-2"))
            assert "la demande de TK00000001 a été refusée" in api.texts_to(ADMIN)[-1]
            await bot.feed(updates.text(admin, "/frais"))
            listing = api.texts_to(ADMIN)[-1]
            assert "demandé 60,00\u00a0€ — payé 0,00\u00a0€ — refusé" in listing
            assert "Total\u00a0: plafond 0,00\u00a0€ — demandé 60,00\u00a0€" in listing
            await bot.feed(updates.text(admin, "/frais TK00000001"))
            assert "🚫 refusée le 2026-11-26\u00a0: billet d’une autre date" in "\n".join(
                api.texts_to(ADMIN)[-2:]
            )
            await bot.feed(updates.photo(winner, *api.add_file(PDF)))
            assert "n’a pas été retenue" in api.texts_to(1)[-1]
            await asyncio.sleep(0.2)  # nothing more arrives
    assert sum("n’est pas retenue" in text for text in api.texts_to(1)) == 1
    async with migrated_storage(settings) as storage:
        found = await storage.expenses.by_ticket("TK00000001")
        chain = await storage.audit.chain()
    assert found is not None and found.expense.refusal_reason == "billet d’une autre date"
    assert [r.receipt.sha256 for r in found.expense.receipts] == [sha(PHOTO)]
    refusals = [(e["details"], e["note"]) for e in chain if e["action"] == "expense.refuse"]
    assert refusals == [("TK00000001 60,00", "reason=billet d’une autre date")]
    refused = [e["details"] for e in chain if e["action"] == "expense.refuse.refused"]
    assert (
        refused
        == ["TK00000001 admin.expense.refuse_paid"]
        + ["TK00000001 admin.expense.refuse_already"] * 2
    )
    result = coffeebot(
        tmp_path, "expenses", "-o", "frais.csv", env={"DATABASE_URL": settings.database_url}
    )
    assert result.returncode == 0, result.stderr
    content = (tmp_path / "frais.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(content), delimiter=";"))
    [line] = [row for row in rows if row[0] == "TK00000001"]
    assert line[6:9] == ["200,00", "60,00", "0,00"] and line[12] == "refused"
    assert rows[-1][0] == "TOTAL" and rows[-1][6:9] == ["0,00", "60,00", "0,00"]
