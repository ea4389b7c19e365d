"""The quota counters' contract, on every backend: a keyed hash, a count and a window's end,
nothing else; counts that outlive erasure; ended windows started again, then purged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from conversations.model import CountUse, ErasePersonalData, Participant, Quota
from conversations.quotas import EVERYONE, Use, account_subject, mailbox_subject
from storage import Storage, open_storage
from storage.migrations import MIGRATIONS
from storage.migrator import migrate
from storage.ports import ContactTaken, StaleWrite
from tests.conftest import NOW
from tests.factories import entered
from tests.test_storage import BACKENDS, backend_url, save_new


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await open_storage(backend_url(request, tmp_path))
    await migrate(opened.database, NOW)
    opened.participants.use_key(b"a key for the tests")
    yield opened
    await opened.close()


async def test_a_quota_is_taken_up_to_its_limit_then_refused(store: Storage) -> None:
    quotas = store.participants.quotas
    taken = [await quotas.take(Quota.OUTGOING_EMAILS, EVERYONE, NOW, 3) for _ in range(5)]
    assert taken == [True, True, True, False, False]
    assert await quotas.used(Quota.OUTGOING_EMAILS, EVERYONE, NOW) == Use(
        3, NOW + timedelta(hours=1)
    )


async def test_a_window_that_ended_starts_again_at_the_next_use(store: Storage) -> None:
    quotas = store.participants.quotas
    for _ in range(2):
        assert await quotas.take(Quota.OUTGOING_EMAILS, EVERYONE, NOW, 2)
    assert not await quotas.take(Quota.OUTGOING_EMAILS, EVERYONE, NOW + timedelta(minutes=59), 2)
    later = NOW + timedelta(hours=1)
    assert await quotas.used(Quota.OUTGOING_EMAILS, EVERYONE, later) == Use()
    assert await quotas.take(Quota.OUTGOING_EMAILS, EVERYONE, later, 2)
    assert await quotas.used(Quota.OUTGOING_EMAILS, EVERYONE, later) == Use(
        1, later + timedelta(hours=1)
    )


async def test_quotas_and_subjects_are_counted_apart(store: Storage) -> None:
    quotas = store.participants.quotas
    assert await quotas.take(Quota.CONFIRMATION_EMAILS, "zoe@free.fr", NOW, 1)
    assert await quotas.take(Quota.CONFIRMATION_EMAILS, "lea@free.fr", NOW, 1)
    assert await quotas.take(Quota.ERASURES, "zoe@free.fr", NOW, 1)
    assert not await quotas.take(Quota.CONFIRMATION_EMAILS, "zoe@free.fr", NOW, 1)


async def test_the_table_holds_no_personal_data(store: Storage) -> None:
    quotas = store.participants.quotas
    await quotas.take(Quota.CONFIRMATION_EMAILS, mailbox_subject("Zoe.Martin@gmail.com"), NOW, 5)
    await quotas.take(Quota.ERASURES, account_subject(424242), NOW, 5)
    rows = await store.database.fetch("SELECT * FROM quota_counts")
    assert {tuple(row.keys()) for row in rows} == {("quota", "subject_hash", "count", "expires_at")}
    dumped = repr([tuple(row) for row in rows])
    for clear in ("zoe", "martin", "gmail", "424242"):
        assert clear not in dumped.casefold()


async def test_counts_made_by_a_step_outlive_the_erasure(store: Storage) -> None:
    saved = await save_new(store, entered(7))
    fresh = Participant(7, "fr", created_at=NOW)
    counted = CountUse(Quota.ERASURES, account_subject(7))
    await store.participants.save(fresh, saved.version, [ErasePersonalData(), counted], 1, NOW)
    assert await store.participants.load(7) is None
    usage = await store.participants.usage(None, 7, NOW)
    assert usage.erasures == Use(1, NOW + timedelta(days=7))
    # Counted in an ordinary step too, with the step's own writes.
    again = await save_new(store, entered(7))
    mailbox = CountUse(Quota.CONFIRMATION_EMAILS, mailbox_subject("p7@free.fr"))
    await store.participants.save(again, again.version, [mailbox, mailbox], 2, NOW)
    summary = replace(again, step=again.step)
    usage = await store.participants.usage(summary, 7, NOW)
    assert usage.confirmation_emails == Use(2, NOW + timedelta(days=1))


async def test_only_the_counts_a_step_may_need_are_read(store: Storage) -> None:
    await store.participants.quotas.take(Quota.ERASURES, account_subject(8), NOW, 9)
    signed_up = entered(8)
    # Past the welcome, the account's erasures no longer matter to the step.
    assert (await store.participants.usage(signed_up, 8, NOW)).erasures == Use()
    assert (await store.participants.usage(None, 8, NOW)).erasures.count == 1


async def test_ended_windows_are_purged(store: Storage) -> None:
    quotas = store.participants.quotas
    await quotas.take(Quota.OUTGOING_EMAILS, EVERYONE, NOW, 9)
    await quotas.take(Quota.ERASURES, "1", NOW, 9)
    assert await quotas.purge(NOW + timedelta(hours=2)) == 1
    assert await quotas.purge(NOW + timedelta(days=8)) == 1
    assert await store.database.fetch("SELECT * FROM quota_counts") == []


async def test_entries_made_before_keying_are_keyed_at_start(store: Storage) -> None:
    await save_new(store, entered(1, email="Zoe.Martin+cafe@gmail.com"))
    await save_new(store, entered(2, email="other@free.fr", phone="+33700000002"))
    await save_new(store, entered(3, email="lea@free.fr", phone="+33700000003"))
    # As migration 9 leaves the entries it finds, two of them for one mailbox (the old index
    # compared lower(email) only).
    await store.database.run(
        [
            ("UPDATE entries SET address_key = NULL", ()),
            ("UPDATE entries SET email = 'zoemartin@gmail.com' WHERE user_id = 2", ()),
        ]
    )
    assert await store.participants.key_entries() == (2, 1)
    rows = await store.database.fetch("SELECT address_key FROM entries ORDER BY user_id")
    keys = sorted(row[0] or "" for row in rows)
    assert keys == ["", "lea@free.fr", "zoemartin@gmail.com"]
    assert await store.participants.key_entries() == (0, 1)
    # The entry left unkeyed still saves its owner's steps, and keeps no key it would clash on.
    [unkeyed] = [
        row[0]
        for row in await store.database.fetch(
            "SELECT user_id FROM entries WHERE address_key IS NULL"
        )
    ]
    person = await store.participants.load(unkeyed)
    assert person is not None
    await store.participants.save(replace(person, question="Encore ?"), person.version, [], 3, NOW)
    reloaded = await store.participants.load(unkeyed)
    assert reloaded is not None and reloaded.question == "Encore ?"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_migration_9_frees_typed_values_and_keys_confirmed_addresses(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "file" else "sqlite:///:memory:"
    old = await open_storage(url)
    dialect = old.database.dialect
    await old.database.run(
        [
            *((sql, ()) for migration in MIGRATIONS[:8] for sql in migration.sql(dialect)),
            ("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
             " description TEXT NOT NULL, applied_at TEXT NOT NULL)", ()),
            *(("INSERT INTO schema_migrations VALUES (?, 'x', 'x')", (n,)) for n in range(1, 9)),
        ]
    )  # fmt: skip
    await save_pre_9(old)
    applied = await migrate(old.database, NOW)
    assert applied[0] == f"9: {MIGRATIONS[8].description}"
    old.participants.use_key(b"a key for the tests")
    assert await old.participants.key_entries() == (1, 0)
    person = await old.participants.load(1)
    assert person is not None and person.phone_verified is False
    # Another account may now type the same phone and the same address.
    other = replace(entered(2, entry=None, email="Zoe.Martin@gmail.com"), phone=person.phone)
    await old.participants.save(other, 0, [], None, NOW)
    # But not confirm the mailbox the old entry confirmed, whatever its spelling.
    with pytest.raises(ContactTaken):
        await old.participants.save(entered(2, email="zoemartin@gmail.com"), 1, [], None, NOW)
    await old.close()


async def save_pre_9(store: Storage) -> None:
    """A confirmed person as the schema before migration 9 held them."""
    at = NOW.isoformat()
    await store.database.run(
        [
            ("INSERT INTO participants (user_id, version, language, step, paused, editing,"
             " consent_ticks, phone, email, created_at, updated_at, code_failures,"
             " confirmation_sends, friends_invited, actions, availability) VALUES (1, 3, 'fr',"
             " 'complete', 0, 0, '', '+33612345678', 'zoe.martin@gmail.com', ?, ?, '', '', 0,"
             " '', '')", (at, at)),
            ("INSERT INTO entries (user_id, ticket, email, phone, postcode, departement, area,"
             " consents, entered_at, updated_at) VALUES (1, 'TK1', 'zoe.martin@gmail.com',"
             " '+33612345678', '69003', '69', 'province', '[]', ?, ?)", (at, at)),
        ]
    )  # fmt: skip


async def test_concurrent_uses_never_pass_the_limit(store: Storage) -> None:
    """Two replicas' senders taking from the hourly cap at once: exactly the limit is taken."""
    quotas = store.participants.quotas
    taken = await asyncio.gather(
        *(quotas.take(Quota.OUTGOING_EMAILS, EVERYONE, NOW, 5) for _ in range(20))
    )
    assert sorted(taken) == [False] * 15 + [True] * 5
    assert (await quotas.used(Quota.OUTGOING_EMAILS, EVERYONE, NOW)).count == 5


async def test_a_step_counting_past_its_limit_is_refused_whole(store: Storage) -> None:
    """The count read before a step may be stale (another account's step took the last use):
    a use counted under a limit is the check, and the step writes nothing when it fails."""
    saved = await save_new(store, entered(9))
    mailbox = mailbox_subject("p9@free.fr")
    await store.participants.quotas.take(Quota.CONFIRMATION_EMAILS, mailbox, NOW, 2)
    counted = CountUse(Quota.CONFIRMATION_EMAILS, mailbox, limit=2)
    await store.participants.save(saved, saved.version, [counted], 3, NOW)
    edited = replace(saved, version=saved.version + 1, question="Pourquoi ?")
    with pytest.raises(StaleWrite):
        await store.participants.save(edited, edited.version, [counted], 4, NOW)
    loaded = await store.participants.load(9)
    assert loaded is not None
    assert (loaded.version, loaded.question) == (edited.version, saved.question)
    assert (await store.participants.usage(loaded, 9, NOW)).confirmation_emails.count == 2
