"""The admins' audit log is a hash chain: an edited, removed or reordered entry shows."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from bot.bootstrap import open_migrated_storage
from bot.settings import Settings
from conversations.ledger import verify_audit_chain
from tests.conftest import NOW, dump, run_sql
from tests.telegram_fakes import FakeBotApi, Updates, running_bot
from tests.test_admin import ADMIN, admin_settings, seed
from tests.test_console import coffeebot
from tests.test_mail import Clock


async def write_log(settings: Settings, count: int) -> str:
    """`count` entries, two of them written at once; returns the chain's head."""
    store = await open_migrated_storage(settings, Clock())
    try:
        admin = store.audit
        for n in range(count - 2):
            await admin.log(900, "exclude", f"TK{n:08d} staff", NOW + timedelta(minutes=n))
        await asyncio.gather(
            admin.log(901, "stats", "", NOW), admin.log(902, "export", "4 rows", NOW)
        )
        assert verify_audit_chain(await admin.chain()) == []
        return await admin.head()
    finally:
        await store.close()


def audit_verify(settings: Settings, tmp_path: Path) -> tuple[int, str]:
    result = coffeebot(tmp_path, "audit", "verify", env={"DATABASE_URL": settings.database_url})
    return result.returncode, result.stdout


async def test_an_intact_log_verifies(settings: Settings, tmp_path: Path) -> None:
    head = await write_log(settings, 6)
    code, output = audit_verify(settings, tmp_path)
    assert code == 0 and f"OK: chain intact, 6 entries, head {head}" in output


@pytest.mark.parametrize(
    ("tampering", "found"),
    [
        ("UPDATE audit_log SET details = 'TK1 duplicate' WHERE seq = 2", "entry 2: its content"),
        ("DELETE FROM audit_log WHERE seq = 3", "entry 4: expected number 3"),
        (
            "UPDATE audit_log SET seq = -1 WHERE seq = 2; UPDATE audit_log SET seq = 2"
            " WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = -1",
            "entry 2: its content",
        ),
        ("UPDATE audit_log SET admin_id = 666 WHERE seq = 5", "entry 5: its content"),
    ],
)
async def test_tampering_with_the_audit_log_is_detected(
    settings: Settings, tmp_path: Path, tampering: str, found: str
) -> None:
    await write_log(settings, 6)
    await run_sql(settings.database_url, *tampering.split("; "))
    code, output = audit_verify(settings, tmp_path)
    assert code == 1 and found in output, output


async def test_an_entry_moved_with_its_hash_breaks_the_chain_after_it(settings: Settings) -> None:
    await write_log(settings, 5)
    store = await open_migrated_storage(settings, Clock())
    try:
        entries = await store.audit.chain()
    finally:
        await store.close()
    moved = [entries[0], entries[2], entries[1], *entries[3:]]
    problems = verify_audit_chain(moved)
    assert "entry 3: expected number 2 (one removed or moved)" in problems
    assert "entry 3: does not follow the entry before it" in problems


async def test_a_changed_note_is_detected_while_it_is_kept(
    settings: Settings, tmp_path: Path
) -> None:
    store = await open_migrated_storage(settings, Clock())
    try:
        await store.audit.log(
            900, "exclude", "TK00000001 staff", NOW, "frère de l’élu", "TK00000001"
        )
    finally:
        await store.close()
    await run_sql(settings.database_url, "UPDATE audit_log SET note = 'autre chose'")
    code, output = audit_verify(settings, tmp_path)
    assert code == 1 and "entry 1: its note was changed after it was written" in output, output


async def test_admins_free_text_is_erased_with_the_person_and_by_the_purge_and_the_chain_holds(
    settings: Settings, tmp_path: Path
) -> None:
    """Reasons and references an admin types may name people: the chain hashes only a salted
    digest of them, so that the erasure of the person whose ticket it is about, and the purge
    after the end, empty them and `coffeebot audit verify` still finds the chain intact."""
    settings = admin_settings(settings, tmp_path)
    await seed(settings, 3)
    api, updates = FakeBotApi(), Updates()
    admin, second = Updates.user(ADMIN), Updates.user(2)
    async with running_bot(settings, api) as bot:
        await bot.feed(
            updates.text(admin, "/exclure TK00000001 staff frère de Jean Dupont"),
            updates.text(admin, "/exclure TK00000002 duplicate même personne que Marie Curie"),
        )
        assert "TK00000002" in api.texts_to(ADMIN)[-1]
        await bot.feed(updates.text(second, "/supprimer"), updates.press(second, "erase.confirm"))
        assert "Vos données sont effacées" in api.texts_to(2)[-1]
        await bot.feed(updates.text(admin, "/journal"))
        journal = api.texts_to(ADMIN)[-1]
    # The person erased takes the note about their ticket with them; the other stays.
    assert "frère de Jean Dupont" in journal and "Marie Curie" not in journal
    stored = await dump(settings.database_url)
    assert "Marie Curie" not in stored and "Jean Dupont" in stored
    code, output = audit_verify(settings, tmp_path)
    assert code == 0 and "OK: chain intact, 2 entries" in output, output
    env = {
        "DATABASE_URL": settings.database_url,
        "OPERATION_ENDS_AT": (NOW - timedelta(days=91)).isoformat(),
        "RETENTION_AFTER_END_DAYS": "90",
    }
    purged = coffeebot(tmp_path, "purge", env=env)
    assert purged.returncode == 0, purged.stderr
    assert "audit_log: keep_tickets_only" in purged.stdout and "  audit_log: 1" in purged.stdout
    stored = await dump(settings.database_url)
    assert "Jean Dupont" not in stored and "TK00000001" in stored
    code, output = audit_verify(settings, tmp_path)
    assert code == 0 and "OK: chain intact, 3 entries" in output, output
