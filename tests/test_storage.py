"""One suite for every storage backend (a contract): a SQLite file, in-memory SQLite, and
PostgreSQL (skipped, with its reason, where no server runs; failing under CI=true)."""

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
from conversations.phases import OperationState
from storage import Storage, migrations, open_storage
from storage.migrations import LATEST_VERSION, Migration
from storage.migrator import migrate, schema_version
from storage.ports import ContactTaken, DuplicateUpdate, NewerSchemaError, StaleWrite
from tests.conftest import NOW
from tests.factories import entered


def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'store.db'}" if request.param == "file" else "sqlite:///:memory:"


BACKENDS = ["file", "memory", "postgresql"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    url = backend_url(request, tmp_path)
    opened = await open_storage(url)
    await migrate(opened.database, NOW)
    opened.participants.use_key(b"the key of the contract tests")
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


async def save_new(store: Storage, state: Participant, update_id: int | None = None) -> Participant:
    effects = [RecordConsent(consent) for consent in state.consents]
    version = await store.participants.save(state, 0, effects, update_id, NOW)
    return replace(state, version=version)


async def test_migrations_from_empty_are_recorded_and_idempotent(store: Storage) -> None:
    assert await schema_version(store.database) == LATEST_VERSION
    assert await migrate(store.database, NOW) == []


async def test_a_newer_schema_is_refused(store: Storage) -> None:
    await store.database.run([("INSERT INTO schema_migrations VALUES (999, 'future', 'x')", ())])
    with pytest.raises(NewerSchemaError, match="999"):
        await migrate(store.database, NOW)


async def test_a_failing_migration_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = Migration(
        LATEST_VERSION + 1, "broken", ("CREATE TABLE half_done (x INTEGER)", "NOT SQL")
    )
    monkeypatch.setattr("storage.migrator.MIGRATIONS", (*migrations.MIGRATIONS, broken))
    monkeypatch.setattr("storage.migrator.LATEST_VERSION", LATEST_VERSION + 1)
    store = await open_storage("sqlite:///:memory:")
    try:
        with pytest.raises(Exception, match="syntax error"):
            await migrate(store.database, NOW)
        assert await schema_version(store.database) == LATEST_VERSION
        assert "half_done" not in await store.database.tables()
    finally:
        await store.close()


async def test_a_participant_round_trips(store: Storage) -> None:
    saved = await save_new(store, participant())
    assert saved.version == 1
    assert await store.participants.load(1) == saved
    assert await store.participants.load(2) is None


async def test_a_save_given_the_state_before_writes_what_changed_and_keeps_the_rest(
    store: Storage,
) -> None:
    # `before` lets a step skip the friends' and the entry's rows when they did not change:
    # what changed must still be written, what did not must still be there.
    first = await save_new(store, entered(1, friends=("a@free.fr", "b@free.fr")))
    steps = [
        replace(first, first_name="Léa"),  # neither friends nor entry changed
        replace(first, friends=("c@free.fr",)),  # one friend left, another one new
        replace(first, friends=()),
    ]
    assert first.entry is not None
    steps.append(replace(first, entry=replace(first.entry, postcode="69003")))
    before = first
    for changed in steps:
        after = replace(changed, version=before.version)
        version = await store.participants.save(after, before.version, [], None, NOW, None, before)
        loaded = await store.participants.load(1)
        assert loaded == replace(after, version=version)
        before = loaded


async def test_a_stale_write_is_refused(store: Storage) -> None:
    saved = await save_new(store, participant())
    newer = replace(saved, first_name="Léa")
    assert await store.participants.save(newer, saved.version, [], None, NOW) == 2
    with pytest.raises(StaleWrite):
        await store.participants.save(
            replace(saved, first_name="Old"), saved.version, [], None, NOW
        )
    with pytest.raises(StaleWrite):
        await store.participants.save(
            Participant(1, "fr", created_at=NOW), 0, [], None, NOW
        )  # a second new one
    loaded = await store.participants.load(1)
    assert loaded is not None and (loaded.first_name, loaded.version) == ("Léa", 2)


async def test_an_update_is_processed_once(store: Storage) -> None:
    await save_new(store, participant(), update_id=77)
    with pytest.raises(DuplicateUpdate):
        await store.participants.mark_processed(77, NOW)
    with pytest.raises(DuplicateUpdate):
        await store.participants.save(
            participant(2, phone="+33700000000", email="x@free.fr"), 0, [], 77, NOW
        )
    assert await store.participants.load(2) is None
    await store.participants.mark_processed(78, NOW)
    with pytest.raises(DuplicateUpdate):
        await store.participants.mark_processed(78, NOW)


async def test_old_update_ids_are_forgotten(store: Storage) -> None:
    await store.participants.mark_processed(1, NOW - timedelta(days=3))
    await store.participants.mark_processed(2, NOW)
    assert await store.participants.forget_processed_before(NOW - timedelta(days=2)) == 1
    await store.participants.mark_processed(1, NOW)
    with pytest.raises(DuplicateUpdate):
        await store.participants.mark_processed(2, NOW)


async def test_a_phone_the_platform_vouched_for_belongs_to_one_account(store: Storage) -> None:
    await save_new(store, replace(participant(1), phone_verified=True))
    other = await save_new(store, participant(2, phone="+33781223344", email="lea@free.fr"))
    shared = replace(other, phone="+33612345678", phone_verified=True)
    with pytest.raises(ContactTaken) as taken:
        await store.participants.save(shared, other.version, [], 9, NOW)
    assert taken.value.field == "phone"
    assert await store.participants.load(2) == other
    await store.participants.mark_processed(9, NOW)  # the refused update was not recorded either


@pytest.mark.parametrize(
    "changes",
    [
        {"phone": "+33612345678"},
        {"phone": "+33612345678", "phone_verified": True},
        {"email": "zoe@ORANGE.fr"},
        {"email": "ZOE@orange.fr"},
    ],
)
async def test_a_typed_phone_or_an_unconfirmed_address_blocks_nobody(
    store: Storage, changes: dict[str, object]
) -> None:
    """Typed values prove nothing: two accounts may type the same phone or address, and a
    phone typed first does not stop its owner from sharing it with the contact button."""
    await save_new(store, participant(1))
    other = await save_new(store, participant(2, phone="+33781223344", email="lea@free.fr"))
    await store.participants.save(replace(other, **changes), other.version, [], 9, NOW)
    loaded = await store.participants.load(2)
    assert loaded is not None and all(getattr(loaded, k) == v for k, v in changes.items())


@pytest.mark.parametrize(
    ("first", "spelling"),
    [
        ("p1@free.fr", "p1@free.fr"),
        ("p1@free.fr", "P1@FREE.FR"),
        ("zoemartin@gmail.com", "zoe.martin+tirage@gmail.com"),
        ("zoemartin@gmail.com", "ZoeMartin@googlemail.com"),
    ],
)
async def test_a_confirmed_address_belongs_to_one_entry_whatever_its_spelling(
    store: Storage, first: str, spelling: str
) -> None:
    await save_new(store, entered(1, email=first))
    other = await save_new(store, participant(2, phone="+33781223344", email=spelling))
    with pytest.raises(ContactTaken) as taken:
        await store.participants.save(entered(2, email=spelling), other.version, [], 9, NOW)
    assert taken.value.field == "email"
    assert await store.participants.load(2) == other


async def test_erasure_removes_everything_but_anonymous_counts(store: Storage) -> None:
    saved = await save_new(store, entered(1, email="Zoe@orange.fr", phone="+33612345678"))
    fresh = Participant(1, "fr", created_at=NOW)
    assert await store.participants.save(fresh, saved.version, [ErasePersonalData()], 5, NOW) == 0
    assert await store.participants.load(1) is None
    assert await store.participants.export(1) == {
        "telegram_user_id": 1,
        "profile": None,
        "entry": None,
        "consents": [],
        "friends_you_invited": [],
        "referrals": {"entries_confirmed_through_your_link": 0},
        "emails": [],
        "telegram_messages": [],
        "telegram_chat_blocked_since": None,
        "draw": {"place": None, "public_addenda": [], "audit_log": []},
        "travel_expense": None,
        "your_address_marked_as": [],
    }
    for table in ("friends", "consents", "entries"):
        rows = await store.database.fetch(f"SELECT * FROM {table}")
        assert list(rows) == []
    assert await store.participants.count("erased.complete") == 1
    # The phone and email are free for a new signup.
    await save_new(store, participant(2))


async def test_export_says_since_when_the_bot_holds_the_chat_as_blocked(store: Storage) -> None:
    """The mark that the person blocked the bot names them and decides what they are sent
    (no announcement until they write again): /mesdonnees shows it."""
    from storage.ports import TelegramKind, TelegramMessage

    await save_new(store, entered(1))
    message = TelegramMessage(
        key="draw-result:T1", user_id=1, kind=TelegramKind.DRAW_RESULT, language="fr",
        text_key="draw.result.reserve", params={"ticket": "T1"},
    )  # fmt: skip
    await store.telegram.queue([message], NOW)
    assert (await store.participants.export(1))["telegram_chat_blocked_since"] is None
    await store.telegram.mark_blocked("draw-result:T1", 1, NOW)
    data = await store.participants.export(1)
    assert data["telegram_chat_blocked_since"] == NOW.isoformat()


async def test_export_holds_every_stored_field(store: Storage) -> None:
    await save_new(store, participant())
    data = await store.participants.export(1)
    assert data["profile"]["phone"] == "+33612345678"
    assert data["profile"]["departement"] == "2A" and data["profile"]["area"] == "corsica"
    assert data["friends_you_invited"] == ["a@free.fr", "b@free.fr"]
    assert sorted(c["version"] for c in data["consents"]) == [
        "fr-adult",
        "fr-processing",
        "fr-rules",
    ]
    columns = {name for name, _, _ in (await store.database.tables())["participants"]}
    # Every column is shown under a name a person reads, or is the bot's own bookkeeping.
    assert columns == set(PROFILE_SHOWS) | BOOKKEEPING
    assert {PROFILE_SHOWS[column] for column in PROFILE_SHOWS} == set(data["profile"])


PROFILE_SHOWS = {
    "language": "language", "first_name": "first_name", "last_name": "last_name",
    "phone": "phone", "phone_verified": "phone_shared_with_the_telegram_button",
    "email": "email", "pending_email": "email_being_changed_to",
    "postcode": "postcode", "departement": "departement", "area": "area",
    "question": "question", "step": "signup_step", "paused": "paused",
    "created_at": "started_at", "completed_at": "completed_at", "updated_at": "updated_at",
    "confirmation_address": "email_waiting_for_confirmation",
    "confirmation_expires_at": "confirmation_valid_until",
    "confirmation_sends": "confirmation_emails_sent_at", "code_failures": "wrong_codes_typed_at",
    "referral_code": "your_referral_code", "referrer": "referred_by_code",
    "friends_invited": "friends_invited_count", "actions": "ways_to_help",
    "availability": "availability",
}  # fmt: skip
# The user id is the export's first field; the rest names nothing about the person (the
# hashes are of secrets the bot drew).
BOOKKEEPING = {
    "user_id", "version", "consent_ticks", "editing", "confirmation_token_hash",
    "confirmation_code_hash",
}  # fmt: skip


async def test_unsupported_database_urls_are_explained() -> None:
    with pytest.raises(ValueError, match="not supported"):
        await open_storage("mysql://localhost/coffeebot")


async def test_withdrawn_consents_are_not_loaded_but_exported(store: Storage) -> None:
    from conversations.model import WithdrawConsent

    saved = await save_new(store, participant())
    news = Consent(ConsentKind.NEWS_EMAIL, "fr-news", NOW)
    version = await store.participants.save(saved, saved.version, [RecordConsent(news)], None, NOW)
    loaded = await store.participants.load(1)
    assert loaded is not None and loaded.has_consented(ConsentKind.NEWS_EMAIL)
    later = NOW + timedelta(days=1)
    await store.participants.save(
        loaded, version, [WithdrawConsent(ConsentKind.NEWS_EMAIL, later)], None, later
    )
    reloaded = await store.participants.load(1)
    assert reloaded is not None and not reloaded.has_consented(ConsentKind.NEWS_EMAIL)
    exported = {
        c["kind"]: c["withdrawn_at"] for c in (await store.participants.export(1))["consents"]
    }
    assert exported["news_email"] == later.isoformat() and exported["processing"] is None


async def test_confirmed_referrals_are_counted_for_the_referrer(store: Storage) -> None:
    await save_new(store, participant(1, referral_code="REF1"))
    confirmed = entered(2, referrer="REF1", email="B@free.fr", phone="+33781223344")
    await save_new(store, confirmed)
    await save_new(store, participant(3, phone="+33781223345", email="c@free.fr", referrer="REF1"))
    loaded = await store.participants.load(1)
    assert loaded is not None and loaded.referrals_confirmed == 1


async def test_a_save_cancelled_midway_leaves_the_store_usable(store: Storage) -> None:
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
    assert await store.participants.load(1) is not None


async def test_an_entry_is_saved_loaded_and_outlives_profile_edits(store: Storage) -> None:
    saved = await save_new(store, entered(1))
    loaded = await store.participants.load(1)
    assert loaded is not None and loaded.entry == saved.entry
    # The profile moves on: a new address typed, the summary reopened. The entry stays.
    edited = replace(loaded, email="new@free.fr", step=Step.SUMMARY, paused=True)
    version = await store.participants.save(edited, loaded.version, [], None, NOW)
    again = await store.participants.load(1)
    assert again is not None and again.version == version
    assert again.entry == saved.entry and again.email == "new@free.fr"
    assert (await store.participants.export(1))["entry"]["ticket"] == "TICKET0001"


async def test_an_exclusion_is_kept_when_the_person_saves_a_step(store: Storage) -> None:
    saved = await save_new(store, entered(1))
    await store.database.run(
        [("UPDATE entries SET excluded_reason = 'staff' WHERE user_id = 1", ())]
    )
    await store.participants.save(
        replace(saved, question="Et alors ?"), saved.version, [], None, NOW
    )
    loaded = await store.participants.load(1)
    assert loaded is not None and loaded.entry is not None
    assert loaded.entry.excluded_reason == "staff"


async def test_a_confirmed_address_belongs_to_one_entry(store: Storage) -> None:
    await save_new(store, entered(1, email="zoe@free.fr"))
    other = entered(2, email="zoe@free.fr", phone="+33781223344")
    # The profile's unique index would refuse it first; here only the entry holds the address.
    other = replace(other, email="lea@free.fr")
    with pytest.raises(ContactTaken):
        await save_new(store, other)


async def test_entries_closed_early_and_the_draw_set_the_operation_state(
    store: Storage,
) -> None:
    assert await store.participants.operation() == OperationState()
    await store.participants.close_entries(NOW)
    await store.participants.close_entries(NOW + timedelta(days=1))  # the first closing stands
    await store.database.run([("INSERT INTO draws (name, status, created_at, updated_at)"
                        " VALUES ('main', 'done', 'x', 'x')", ())])  # fmt: skip
    assert await store.participants.operation() == OperationState(closed_at=NOW, drawn=True)


async def test_migration_4_turns_confirmed_signups_into_entries(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = await open_storage(url)
    await old.database.run([])  # opens the file
    for migration in migrations.MIGRATIONS[:3]:
        await old.database.run([(sql, ()) for sql in migration.statements])
    await old.database.run(
        [
            ("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
             " description TEXT NOT NULL, applied_at TEXT NOT NULL)", ()),
            *(("INSERT INTO schema_migrations VALUES (?, 'x', 'x')", (n,)) for n in (1, 2, 3)),
            ("INSERT INTO participants (user_id, version, language, step, paused, editing,"
             " consent_ticks, phone, email, postcode, departement, area, created_at, updated_at,"
             " completed_at, confirmed_email, confirmed_at, ticket) VALUES (1, 3, 'fr',"
             " 'summary', 0, 0, '', '+33612345678', 'typed@free.fr', '69003', '69', 'province',"
             " ?, ?, ?, 'zoe@free.fr', ?, 'TK1')", (NOW.isoformat(),) * 4),
            ("INSERT INTO consents VALUES (1, 'draw', 'fr-v', ?, NULL)", (NOW.isoformat(),)),
            ("INSERT INTO participants (user_id, version, language, step, paused, editing,"
             " consent_ticks, created_at, updated_at) VALUES (2, 1, 'fr', 'phone', 0, 0, '',"
             " ?, ?)", (NOW.isoformat(),) * 2),
        ]
    )  # fmt: skip
    applied = await migrate(old.database, NOW)
    assert applied[0] == f"4: {migrations.MIGRATIONS[3].description}"
    person = await old.participants.load(1)
    assert person is not None and person.entry is not None
    assert (person.entry.ticket, person.entry.email, person.email) == (
        "TK1",
        "zoe@free.fr",
        "typed@free.fr",
    )
    assert [c.kind for c in person.entry.consents] == [ConsentKind.DRAW]
    assert (await old.participants.load(2)) is not None and (
        await old.participants.load(2)
    ).entry is None  # type: ignore[union-attr]
    await old.close()
