"""The admins' audit log is a hash chain: an edited, removed or reordered entry shows."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from bot.bootstrap import open_migrated_storage
from bot.settings import Settings
from conversations.ledger import verify_audit_chain
from tests.conftest import NOW, run_sql
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
