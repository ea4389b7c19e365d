"""Erased means erased, and nobody's data leaks sideways: the logs, the .eml files, the database
files and the outbox's errors hold ids and keys only; /mesdonnees shows everything that names
the person. Through the real Application (tests/telegram_fakes.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from telegram import Update

from bot.bootstrap import build_mailer, open_migrated_storage
from bot.mail.eml import EmlFolder
from bot.secret_key import key_file
from bot.settings import Settings
from bot.telegram.webhook import STORE
from conversations.catalogue import Catalogue
from conversations.model import QueueEmail
from storage import sqlite_path
from tests.conftest import ON_POSTGRES
from tests.fake_beacon import running_drand
from tests.smtp_server import smtp_server
from tests.telegram_fakes import FakeBotApi, Updates, running_bot
from tests.test_admin import ADMIN, admin_settings, certificates
from tests.test_mail import Clock, everything, mailer_for, queue

PERSON = 4242
FIRST = "Zéphyrine"
LAST = "Quimperlé"
PHONE = "33698765432"
EMAIL = "zephyrine.q@orange.fr"
FRIEND = "ami.secret@laposte.net"
QUESTION = "Et les trains de nuit vers Brest ?"
TYPED = "Je m’appelle Zéphyrine et j’habite Brest"
# What must never be found where it does not belong, in any case.
VALUES = (FIRST, LAST, PHONE[2:], EMAIL, FRIEND, "trains de nuit vers Brest", "habite Brest")


def signup(updates: Updates, user: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        updates.text(user, "/start"),
        updates.press(user, "welcome.join"),
        updates.press(user, "consent.rules"),
        updates.press(user, "consent.processing"),
        updates.press(user, "consent.adult"),
        updates.press(user, "consent.continue"),
        updates.press(user, "name.profile"),
        updates.text(user, LAST),
        updates.contact(user, PHONE, owner_id=user["id"]),
        updates.text(user, EMAIL),
        updates.text(user, "29200"),
        updates.press(user, "friends.add"),
        updates.text(user, FRIEND),
        updates.press(user, "friends.done"),
        updates.text(user, QUESTION),
        updates.press(user, "summary.confirm"),
    ]


async def eventually(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met in {seconds} s")


def mails(folder: str, prefix: str) -> list[Path]:
    path = Path(folder)
    return sorted(path.glob(f"{prefix}*.eml")) if path.is_dir() else []


def mailed_code(folder: str) -> str:
    [eml] = mails(folder, "confirmation")
    found = re.search(r"\b(\d{3}) ?(\d{3})\b", eml.read_text())
    assert found is not None
    return found[1] + found[2]


async def signed_up_and_confirmed(bot: Any, updates: Updates, settings: Settings) -> None:
    """A whole signup with a friend invited, the confirmation code typed from the email."""
    user = Updates.user(PERSON, FIRST)
    await bot.feed(*signup(updates, user))
    folder = settings.mail_outbox_dir
    await eventually(lambda: bool(mails(folder, "confirmation")))
    await bot.feed(updates.text(user, mailed_code(folder)))
    await eventually(lambda: bool(mails(folder, "invitation")))  # sent once confirmed


def found_in(text: str) -> list[str]:
    folded = text.casefold()
    return [value for value in VALUES if value.casefold() in folded]


async def test_the_logs_of_a_signup_an_error_and_an_erasure_name_nobody(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(PERSON, FIRST)
    async with running_bot(settings, api) as bot:
        await signed_up_and_confirmed(bot, updates, settings)
        assert any("Adresse confirmée" in text for text in api.texts_to(PERSON))
        # The person blocks the bot, then types something: the reply fails with Forbidden.
        api.blocked.add(PERSON)
        await bot.feed(updates.text(user, TYPED), updates.text(user, "/statut"))
        api.blocked.clear()
        await bot.feed(updates.text(user, "/supprimer"), updates.press(user, "erase.confirm"))
        assert "effacé" in api.texts_to(PERSON)[-1]
    logged = caplog.text
    assert "Forbidden" in logged and "written to" in logged  # the error and the emails were logged
    assert len(caplog.records) > 10
    assert found_in(logged) == []
    assert found_in(" ".join(str(record.args) for record in caplog.records)) == []


async def test_after_an_erasure_no_byte_of_the_person_is_left_in_the_files(
    settings: Settings,
) -> None:
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(PERSON, FIRST)
    async with running_bot(settings, api) as bot:
        await signed_up_and_confirmed(bot, updates, settings)
        await bot.feed(updates.text(user, "/mesdonnees"))
        before = files_of(settings)
        assert EMAIL in before and FRIEND in before and FIRST in before  # the test can see them
        await bot.feed(updates.text(user, "/supprimer"), updates.press(user, "erase.confirm"))
        # While the bot still runs: the WAL is where SQLite keeps recent pages.
        assert found_in(files_of(settings)) == []
        assert mails(settings.mail_outbox_dir, "") == []
    assert found_in(files_of(settings)) == []
    store = await open_migrated_storage(settings, Clock())
    try:
        assert found_in(await everything(store)) == []
    finally:
        await store.close()


@pytest.mark.skipif(ON_POSTGRES, reason="the WAL of a SQLite database")
async def test_the_erasure_s_reply_does_not_wait_for_an_export_streaming(
    settings: Settings,
) -> None:
    # A bulk read's snapshot keeps the WAL from being emptied until it ends: the person is
    # told their data is erased at once, and the WAL is emptied once the read ends.
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(PERSON, FIRST)
    async with running_bot(settings, api) as bot:
        await signed_up_and_confirmed(bot, updates, settings)
        storage = bot.application.bot_data[STORE]
        rows = storage.database.stream("SELECT update_id FROM processed_updates")
        await anext(rows)  # a snapshot held, as by an export streaming
        try:
            for data in (updates.text(user, "/supprimer"), updates.press(user, "erase.confirm")):
                await bot.application.update_queue.put(Update.de_json(data, bot.application.bot))
            for _ in range(100):
                if "effacé" in " ".join(api.texts_to(PERSON)[-1:]):
                    break
                await asyncio.sleep(0.05)
            assert "effacé" in api.texts_to(PERSON)[-1]
            assert EMAIL in files_of(settings)  # still in the WAL: the read holds its snapshot
        finally:
            await rows.aclose()
        for _ in range(200):
            if not found_in(files_of(settings)):
                break
            await asyncio.sleep(0.05)
        assert found_in(files_of(settings)) == []


def files_of(settings: Settings) -> str:
    """The database files (SQLite) and the mail folder, as text, byte for byte."""
    contents = [path.read_bytes() for path in Path(settings.mail_outbox_dir).glob("*")]
    database = sqlite_path(settings.database_url)
    if database is not None and not ON_POSTGRES:
        for suffix in ("", "-wal", "-journal"):
            path = Path(database + suffix)
            if path.exists():
                contents.append(path.read_bytes())
    return "\n".join(content.decode("utf-8", "replace") for content in contents)


@pytest.mark.skipif(ON_POSTGRES, reason="the files of a SQLite database")
async def test_the_database_the_key_and_the_emails_are_readable_by_the_bot_only(
    settings: Settings,
) -> None:
    api, updates = FakeBotApi(), Updates()
    async with running_bot(settings, api) as bot:
        await signed_up_and_confirmed(bot, updates, settings)
        database = Path(sqlite_path(settings.database_url) or "")
        key = key_file(settings)
        assert key is not None
        private = [database, Path(f"{database}-wal"), key, *mails(settings.mail_outbox_dir, "")]
        assert len(private) >= 5
        assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in private} == {
            path.name: 0o600 for path in private
        }
        assert mode(settings.mail_outbox_dir) == 0o700


def mode(path: str) -> int:
    return stat.S_IMODE(Path(path).stat().st_mode)


async def test_eml_files_are_named_by_outbox_key_and_go_once_a_real_server_took_them(
    settings: Settings, texts: Catalogue
) -> None:
    store = await open_migrated_storage(settings, Clock())
    try:
        params = (("first_name", FIRST), ("token", "Tok3n-for_the-tests-22"), ("code", "1"))
        email = QueueEmail("confirmation", EMAIL, "fr", params, key="confirmation:7:ab")
        await queue(store, 7, email)
        # A rehearsal left the file of this key behind; then a real server is configured.
        folder = EmlFolder(settings.mail_outbox_dir)
        folder.open()
        from email.message import EmailMessage

        leftover = EmailMessage()
        leftover.set_content(f"Bonjour {FIRST}")
        written = folder.write("confirmation:7:ab", leftover)
        assert written.name == "confirmation:7:ab.eml" and FIRST not in written.name
        with smtp_server() as (inbox, port):
            assert await mailer_for(settings, store, texts, Clock(), port).send_due() == 1
        assert len(inbox.messages) == 1 and not written.exists()
    finally:
        await store.close()


async def test_last_error_keeps_the_smtp_code_and_class_never_the_servers_words(
    settings: Settings, texts: Catalogue
) -> None:
    store = await open_migrated_storage(settings, Clock())
    try:
        params = (("first_name", FIRST), ("token", "Tok3n-for_the-tests-22"), ("code", "1"))
        await queue(store, 1, QueueEmail("confirmation", EMAIL, "fr", params, key="c:1"))
        await queue(store, 2, QueueEmail("confirmation", FRIEND, "fr", params, key="c:2"))
        with smtp_server() as (inbox, port):
            inbox.recipient_refusals.append(f"550 5.1.1 <{EMAIL}>: Recipient address rejected")
            inbox.refusals.append(f"451 4.2.2 {FRIEND}: mailbox full, try later")
            await mailer_for(settings, store, texts, Clock(), port).send_due()
        rows = await store.database.fetch(
            "SELECT idempotency_key, status, last_error FROM outbox ORDER BY idempotency_key"
        )
        assert [tuple(row) for row in rows] == [
            ("c:1", "failed", "550 SMTPRecipientsRefused"),
            ("c:2", "pending", "451 SMTPDataError"),
        ]
        assert found_in(await everything(store)) == [FRIEND]  # kept only to try again
    finally:
        await store.close()


async def test_mesdonnees_of_a_winner_shows_everything_that_names_them(
    settings: Settings, tmp_path: Path, texts: Catalogue
) -> None:
    clock = Clock()
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        api, updates = FakeBotApi(), Updates()
        user, admin = Updates.user(PERSON, FIRST), Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            await signed_up_and_confirmed(bot, updates, settings)
            await bot.feed(updates.text(admin, "/draw 0"))
            await bot.feed(updates.press(admin, "admin.draw.confirm"))
            clock.advance(2)
            await eventually(lambda: bool(certificates(api)))
            [certificate] = certificates(api)
            [ticket] = certificate["winners"]
            await eventually(lambda: bool(mails(settings.mail_outbox_dir, "winner")))
            await bot.feed(updates.text(admin, f"/remplacer {ticket} injoignable"))
            await bot.feed(updates.text(user, "/mesdonnees"))
    [document] = api.documents_to(PERSON)
    data = json.loads(document)
    profile = data["profile"]
    assert (profile["first_name"], profile["last_name"], profile["email"]) == (FIRST, LAST, EMAIL)
    assert profile["phone"] == f"+{PHONE}" and profile["question"] == QUESTION
    assert "version" not in profile and "consent_ticks" not in profile
    assert data["entry"]["ticket"] == ticket and data["entry"]["email"] == EMAIL
    consents = {consent["kind"]: consent for consent in data["consents"]}
    assert set(consents) == {"rules", "processing", "adult"}
    for kind, consent in consents.items():
        assert consent["version"] == texts.version("fr", f"consent.{kind}.text")
        assert consent["text_you_agreed_to"] == texts.render("fr", f"consent.{kind}.text")
    assert data["friends_you_invited"] == [] or data["friends_you_invited"] == [FRIEND]
    assert {email["kind"] for email in data["emails"]} >= {"confirmation", "invitation", "winner"}
    assert "draw-result" in {message["kind"] for message in data["telegram_messages"]}
    place = data["draw"]["place"]
    assert (place["ticket"], place["role"], place["status"]) == (ticket, "winner", "replaced")
    assert [addendum["replaced"] for addendum in data["draw"]["public_addenda"]] == [ticket]
    assert [entry["action"] for entry in data["draw"]["audit_log"]] == ["winner.replace"]
    assert all(ticket in entry["details"] for entry in data["draw"]["audit_log"])
    summary = api.texts_to(PERSON)[-1]
    assert summary.startswith("📋 En bref") and f"{FIRST} {LAST}" in summary and EMAIL in summary
    assert "3 accord(s)" in summary and "parmi les gagnants" in summary


async def test_mesdonnees_says_when_the_address_was_invited_by_someone(
    settings: Settings,
) -> None:
    api, updates = FakeBotApi(), Updates()
    async with running_bot(settings, api) as bot:
        await signed_up_and_confirmed(bot, updates, settings)
        friend = Updates.user(4343, "Ami")
        steps = signup(updates, friend)
        steps[8] = updates.contact(friend, "33611112222", owner_id=4343)
        steps[9] = updates.text(friend, FRIEND)
        steps[12] = updates.text(friend, "quelqu.un@free.fr")
        await bot.feed(*steps, updates.text(friend, "/mesdonnees"))
        # Typed, not yet proven theirs: the marks about that address are not shown.
        unproven = json.loads(api.documents_to(4343)[0])
        assert unproven["profile"]["email"] == FRIEND
        assert unproven["your_address_marked_as"] == []
        folder = settings.mail_outbox_dir
        await eventually(lambda: bool(mails(folder, "confirmation:4343:")))
        [eml] = mails(folder, "confirmation:4343:")
        code = re.search(r"\b(\d{3}) ?(\d{3})\b", eml.read_text())
        assert code is not None
        await bot.feed(updates.text(friend, code[1] + code[2]), updates.text(friend, "/mesdonnees"))
    data = json.loads(api.documents_to(4343)[-1])
    assert data["entry"]["email"] == FRIEND
    assert [mark["reason"] for mark in data["your_address_marked_as"]] == ["invited"]


async def test_mesdonnees_tells_nothing_about_an_address_someone_merely_typed(
    settings: Settings,
) -> None:
    """Anyone could type any address and read, in their /mesdonnees, whether a supporter had
    invited it (or it had asked never to be invited): marks are shown for a confirmed address
    only, the one the person proved is theirs."""
    api, updates = FakeBotApi(), Updates()
    async with running_bot(settings, api) as bot:
        await signed_up_and_confirmed(bot, updates, settings)
        prober = Updates.user(4444, "Curieux")
        steps = signup(updates, prober)
        steps[8] = updates.contact(prober, "33611113333", owner_id=4444)
        steps[9] = updates.text(prober, FRIEND)
        await bot.feed(*steps[:10], updates.text(prober, "/mesdonnees"))
    data = json.loads(api.documents_to(4444)[0])
    assert data["profile"]["email"] == FRIEND
    assert data["your_address_marked_as"] == []


async def test_the_files_an_erasure_cut_short_left_are_swept_at_the_next_start(
    settings: Settings, texts: Catalogue
) -> None:
    store = await open_migrated_storage(settings, Clock())
    try:
        params = (("first_name", FIRST), ("token", "Tok3n-for_the-tests-22"), ("code", "1"))
        await queue(store, 1, QueueEmail("confirmation", EMAIL, "fr", params, key="kept:1"))
        folder = EmlFolder(settings.mail_outbox_dir)
        folder.open()
        from email.message import EmailMessage

        message = EmailMessage()
        message.set_content(f"Bonjour {FIRST}")
        orphan, kept = folder.write("erased:2", message), folder.write("kept:1", message)
        mailer = build_mailer(settings, store, texts, "coffee_test_bot", Clock())
        running = asyncio.create_task(mailer.run())
        await eventually(lambda: not orphan.exists())
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        assert kept.exists()
    finally:
        await store.close()


async def test_an_erasure_whose_files_cannot_be_swept_is_still_answered(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: EmlFolder, kept: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(EmlFolder, "sweep", broken)
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(PERSON, FIRST)
    async with running_bot(settings, api) as bot:
        await bot.feed(*signup(updates, user)[:8])
        await bot.feed(updates.text(user, "/supprimer"), updates.press(user, "erase.confirm"))
    assert "effacé" in api.texts_to(PERSON)[-1]
    assert f"after user {PERSON}'s erasure: PermissionError" in caplog.text
