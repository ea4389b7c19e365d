"""One suite for every storage backend: a SQLite file and in-memory SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from conversations.model import (
    SIGNUP_CONSENTS,
    Area,
    Consent,
    ConsentKind,
    ErasePersonalData,
    Participant,
    RecordConsent,
    Step,
)
from storage import migrations, open_store
from storage.migrations import LATEST_VERSION, Migration
from storage.ports import ContactTaken, DuplicateUpdate, NewerSchemaError, StaleWrite
from storage.sqlite import SqliteStore
from tests.conftest import NOW


@pytest.fixture(params=["file", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqliteStore]:
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "file" else "sqlite:///:memory:"
    opened = await open_store(url)
    await opened.migrate(NOW)
    yield opened
    await opened.close()


def participant(user_id: int = 1, **changes: object) -> Participant:
    consents = tuple(Consent(kind, f"fr-{kind}", NOW) for kind in SIGNUP_CONSENTS)
    full = Participant(
        user_id=user_id,
        language="fr",
        created_at=NOW,
        step=Step.SUMMARY,
        consent_ticks=frozenset(ConsentKind),
        consents=consents,
        first_name="Zoé",
        last_name="N’Diaye",
        phone="+33612345678",
        email="Zoe@orange.fr",
        postcode="20000",
        departement="2A",
        area=Area.CORSICA,
        friends=("a@free.fr", "b@free.fr"),
        question="Et l'école ? '); DROP TABLE participants;--",
        referrer="abc",
        completed_at=NOW,
    )
    return replace(full, **changes)  # type: ignore[arg-type]


async def save_new(
    store: SqliteStore, state: Participant, update_id: int | None = None
) -> Participant:
    effects = [RecordConsent(consent) for consent in state.consents]
    version = await store.save(state, 0, effects, update_id, NOW)
    return replace(state, version=version)


async def test_migrations_from_empty_are_recorded_and_idempotent(store: SqliteStore) -> None:
    assert await store.schema_version() == LATEST_VERSION
    assert await store.migrate(NOW) == []


async def test_a_newer_schema_is_refused(store: SqliteStore) -> None:
    await store._connection.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    with pytest.raises(NewerSchemaError, match="999"):
        await store.migrate(NOW)


async def test_a_failing_migration_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = Migration(
        LATEST_VERSION + 1, "broken", ("CREATE TABLE half_done (x INTEGER)", "NOT SQL")
    )
    monkeypatch.setattr("storage.sqlite.MIGRATIONS", (*migrations.MIGRATIONS, broken))
    monkeypatch.setattr("storage.sqlite.LATEST_VERSION", LATEST_VERSION + 1)
    store = await open_store("sqlite:///:memory:")
    try:
        with pytest.raises(Exception, match="syntax error"):
            await store.migrate(NOW)
        assert await store.schema_version() == LATEST_VERSION
        tables = await store._connection.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE name = 'half_done'"
        )
        assert list(tables) == []
    finally:
        await store.close()


async def test_a_participant_round_trips(store: SqliteStore) -> None:
    saved = await save_new(store, participant())
    assert saved.version == 1
    assert await store.load(1) == saved
    assert await store.load(2) is None


async def test_a_stale_write_is_refused(store: SqliteStore) -> None:
    saved = await save_new(store, participant())
    newer = replace(saved, first_name="Léa")
    assert await store.save(newer, saved.version, [], None, NOW) == 2
    with pytest.raises(StaleWrite):
        await store.save(replace(saved, first_name="Old"), saved.version, [], None, NOW)
    with pytest.raises(StaleWrite):
        await store.save(Participant(1, "fr", created_at=NOW), 0, [], None, NOW)  # a second new one
    loaded = await store.load(1)
    assert loaded is not None and (loaded.first_name, loaded.version) == ("Léa", 2)


async def test_an_update_is_processed_once(store: SqliteStore) -> None:
    await save_new(store, participant(), update_id=77)
    with pytest.raises(DuplicateUpdate):
        await store.mark_processed(77, NOW)
    with pytest.raises(DuplicateUpdate):
        await store.save(participant(2, phone="+33700000000", email="x@free.fr"), 0, [], 77, NOW)
    assert await store.load(2) is None
    await store.mark_processed(78, NOW)
    with pytest.raises(DuplicateUpdate):
        await store.mark_processed(78, NOW)


async def test_old_update_ids_are_forgotten(store: SqliteStore) -> None:
    await store.mark_processed(1, NOW - timedelta(days=3))
    await store.mark_processed(2, NOW)
    assert await store.forget_processed_before(NOW - timedelta(days=2)) == 1
    await store.mark_processed(1, NOW)
    with pytest.raises(DuplicateUpdate):
        await store.mark_processed(2, NOW)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"phone": "+33612345678"}, "phone"),
        ({"email": "zoe@ORANGE.fr"}, "email"),
        ({"email": "ZOE@orange.fr"}, "email"),
    ],
)
async def test_a_phone_or_email_belongs_to_one_account(
    store: SqliteStore, changes: dict[str, str], field: str
) -> None:
    await save_new(store, participant(1))
    other = await save_new(store, participant(2, phone="+33781223344", email="lea@free.fr"))
    with pytest.raises(ContactTaken) as taken:
        await store.save(replace(other, **changes), other.version, [], 9, NOW)
    assert taken.value.field == field
    assert await store.load(2) == other
    await store.mark_processed(9, NOW)  # the refused update was not recorded either


async def test_erasure_removes_everything_but_anonymous_counts(store: SqliteStore) -> None:
    saved = await save_new(store, participant(1))
    fresh = Participant(1, "fr", created_at=NOW)
    assert await store.save(fresh, saved.version, [ErasePersonalData()], 5, NOW) == 0
    assert await store.load(1) is None
    assert await store.export(1) == {
        "telegram_user_id": 1,
        "signup": None,
        "friends": [],
        "consents": [],
    }
    for table in ("friends", "consents"):
        rows = await store._connection.execute_fetchall(f"SELECT * FROM {table}")
        assert list(rows) == []
    assert await store.count("erased.complete") == 1
    # The phone and email are free for a new signup.
    await save_new(store, participant(2))


async def test_export_holds_every_stored_field(store: SqliteStore) -> None:
    await save_new(store, participant())
    data = await store.export(1)
    assert data["signup"]["phone"] == "+33612345678"
    assert data["signup"]["departement"] == "2A" and data["signup"]["area"] == "corsica"
    assert data["friends"] == ["a@free.fr", "b@free.fr"]
    assert sorted(c["version"] for c in data["consents"]) == ["fr-adult", "fr-draw"]
    columns = await store._connection.execute_fetchall(
        "SELECT name FROM pragma_table_info('participants')"
    )
    assert set(data["signup"]) == {row[0] for row in columns}


async def test_unsupported_database_urls_are_explained() -> None:
    with pytest.raises(ValueError, match="not supported"):
        await open_store("postgresql://localhost/coffeebot")


async def test_withdrawn_consents_are_not_loaded_but_exported(store: SqliteStore) -> None:
    from conversations.model import WithdrawConsent

    saved = await save_new(store, participant())
    news = Consent(ConsentKind.NEWS_EMAIL, "fr-news", NOW)
    version = await store.save(saved, saved.version, [RecordConsent(news)], None, NOW)
    loaded = await store.load(1)
    assert loaded is not None and loaded.has_consented(ConsentKind.NEWS_EMAIL)
    later = NOW + timedelta(days=1)
    await store.save(loaded, version, [WithdrawConsent(ConsentKind.NEWS_EMAIL, later)], None, later)
    reloaded = await store.load(1)
    assert reloaded is not None and not reloaded.has_consented(ConsentKind.NEWS_EMAIL)
    exported = {c["kind"]: c["withdrawn_at"] for c in (await store.export(1))["consents"]}
    assert exported["news_email"] == later.isoformat() and exported["draw"] is None


async def test_confirmed_referrals_are_counted_for_the_referrer(store: SqliteStore) -> None:
    await save_new(store, participant(1, referral_code="REF1"))
    confirmed = dict(referrer="REF1", confirmed_email="b@free.fr", email="B@free.fr")
    await save_new(store, participant(2, phone="+33781223344", **confirmed))
    await save_new(store, participant(3, phone="+33781223345", email="c@free.fr", referrer="REF1"))
    loaded = await store.load(1)
    assert loaded is not None and loaded.referrals_confirmed == 1


async def test_a_save_cancelled_midway_leaves_the_store_usable(store: SqliteStore) -> None:
    import asyncio

    for attempt in range(20):
        person = participant(
            100 + attempt, phone=f"+3378122{attempt:04d}", email=f"c{attempt}@free.fr"
        )
        saving = asyncio.create_task(save_new(store, person))
        for _ in range(attempt % 4):
            await asyncio.sleep(0)
        saving.cancel()
        await asyncio.gather(saving, return_exceptions=True)
    await save_new(store, participant(1))
    assert await store.load(1) is not None
