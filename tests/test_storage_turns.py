"""The contract of one person's turn on every backend (a SQLite file, SQLite in memory,
PostgreSQL): the state and the operation read in one query, a step's writes sent as one, and a
refused write undone alone within the turn, as the conversation service relies on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from conversations.model import Consent, ConsentKind, InviteFriends, QueueEmail, RecordConsent
from storage import Storage, open_storage
from storage.database import Dialect
from storage.migrator import migrate
from storage.ports import ContactTaken, DuplicateUpdate, StaleWrite
from storage.postgres import batched
from tests.conftest import NOW
from tests.factories import entered
from tests.test_storage import BACKENDS, backend_url, participant


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await open_storage(backend_url(request, tmp_path))
    await migrate(opened.database, NOW)
    opened.participants.use_key(b"test key")
    yield opened
    await opened.close()


async def outbox_keys(store: Storage) -> list[str]:
    rows = await store.database.fetch("SELECT idempotency_key FROM outbox ORDER BY 1")
    return [row[0] for row in rows]


async def test_the_step_reads_the_state_and_the_operation_together(store: Storage) -> None:
    assert await store.participants.load_for_step(1) == (None, await store.participants.operation())
    await store.participants.save(entered(2, referral_code="R2"), 0, [], None, NOW)
    await store.participants.save(entered(1, referrer="R2"), 0, [], None, NOW)
    state, operation = await store.participants.load_for_step(2)
    assert state == await store.participants.load(2)
    assert state is not None and state.entry is not None and state.referrals_confirmed == 1
    assert operation == await store.participants.operation()


async def test_friends_keep_their_order_as_the_list_grows_shrinks_and_changes(
    store: Storage,
) -> None:
    person = participant(friends=("c@free.fr", "a@free.fr", "b@free.fr"))
    version = await store.participants.save(person, 0, [], None, NOW)
    odd = "o'\"\\ü,[]@free.fr"  # quotes, a backslash, JSON's and a list's punctuation
    for friends in [("b@free.fr",), (), ("z@free.fr", odd), ("y@free.fr", "x@free.fr")]:
        version = await store.participants.save(
            replace(person, friends=friends), version, [], None, NOW
        )
        loaded = await store.participants.load(1)
        assert loaded is not None and loaded.friends == friends


async def test_consents_load_in_the_order_they_were_given(store: Storage) -> None:
    given = [Consent(kind, "v1", NOW.replace(minute=59 - n)) for n, kind in enumerate(ConsentKind)]
    person = replace(participant(), consents=tuple(sorted(given, key=lambda c: c.given_at)))
    await store.participants.save(person, 0, [RecordConsent(c) for c in given], None, NOW)
    loaded = await store.participants.load(1)
    assert loaded is not None and loaded.consents == person.consents


async def test_a_refused_write_is_undone_alone_and_the_update_still_noted(store: Storage) -> None:
    # Phones shared with the contact button: Telegram vouches for them, so each is unique.
    await store.participants.save(replace(participant(1), phone_verified=True), 0, [], None, NOW)
    other = replace(participant(2, phone="+33781223344", email="lea@free.fr"), phone_verified=True)
    async with store.participants.serving(2) as turn:
        first = await turn.save(other, 0, [], None, NOW)
        version = await turn.save(replace(other, last_name="Roy"), first, [], 10, NOW)
        email = QueueEmail("confirmation", "lea@free.fr", "fr", (), "confirm:2")
        with pytest.raises(ContactTaken):  # the first person's phone: nothing of it is written
            await turn.save(replace(other, phone="+33612345678"), version, [email], 11, NOW)
        with pytest.raises(StaleWrite):
            await turn.save(replace(other, first_name="Old"), first, [], 12, NOW)
        await turn.mark_processed(11, NOW)
        await turn.save(replace(other, first_name="Léa", last_name="Roy"), version, [], 12, NOW)
    loaded = await store.participants.load(2)
    assert loaded is not None and loaded.version == 3
    assert (loaded.first_name, loaded.last_name, loaded.phone) == ("Léa", "Roy", other.phone)
    assert await outbox_keys(store) == []
    for update_id in (10, 11, 12):
        with pytest.raises(DuplicateUpdate):
            await store.participants.mark_processed(update_id, NOW)


async def test_a_turn_that_fails_commits_nothing_on_postgresql(store: Storage) -> None:
    if store.database.dialect is Dialect.SQLITE:
        pytest.skip("SQLite commits each write of a turn as it goes (one process writes)")
    with pytest.raises(RuntimeError):
        async with store.participants.serving(1) as turn:
            await turn.save(participant(1), 0, [], 20, NOW)
            raise RuntimeError("the step failed after saving")
    assert await store.participants.load(1) is None
    await store.participants.mark_processed(20, NOW)


async def test_a_duplicate_update_writes_nothing_of_its_step(store: Storage) -> None:
    await store.participants.mark_processed(30, NOW)
    invite = InviteFriends(("ami@free.fr",), "Zoé", "R1", "fr")
    with pytest.raises(DuplicateUpdate):
        await store.participants.save(participant(1), 0, [invite], 30, NOW)
    assert await store.participants.load(1) is None
    assert await outbox_keys(store) == []


async def test_an_address_is_invited_once_by_a_step_or_by_two(store: Storage) -> None:
    invite = InviteFriends(("ami@free.fr", "AMI@free.fr"), "Zoé", "R1", "fr")
    version = await store.participants.save(participant(1), 0, [invite], None, NOW)
    again = InviteFriends(("ami@free.fr",), "Zoé", "R1", "fr")
    await store.participants.save(participant(1), version, [again], None, NOW)
    keys = await outbox_keys(store)
    assert keys == [f"invitation:{store.participants.address_hash('ami@free.fr')}"]


async def test_turns_cancelled_midway_leave_the_person_free_and_the_store_usable(
    store: Storage,
) -> None:
    async def turn(update_id: int) -> None:
        async with store.participants.serving(1) as held:
            state, _ = await held.load_for_step(1)
            if state is None:
                await held.save(participant(1, question=str(update_id)), 0, [], update_id, NOW)
            else:
                changed = replace(state, question=str(update_id))
                await held.save(changed, state.version, [], update_id, NOW)

    for attempt in range(16):
        turning = asyncio.create_task(turn(100 + attempt))
        for _ in range(attempt % 8):
            await asyncio.sleep(0)
        turning.cancel()
        await asyncio.gather(turning, return_exceptions=True)
    await asyncio.wait_for(turn(200), 10)  # the person's lock was let go every time
    loaded = await store.participants.load(1)
    assert loaded is not None and loaded.question == "200"


def test_statements_sent_together_are_numbered_in_turn_and_count_their_rows() -> None:
    sql = batched(("INSERT INTO t VALUES (?, '?')", "UPDATE t SET a = ? WHERE b = ?", "SELECT ?"))
    assert sql == (
        "WITH s0 AS (INSERT INTO t VALUES ($1, '?') RETURNING 1),"
        " s1 AS (UPDATE t SET a = $2 WHERE b = $3 RETURNING 1), s2 AS (SELECT $4)"
        " SELECT (SELECT COUNT(*) FROM s0), (SELECT COUNT(*) FROM s1), (SELECT COUNT(*) FROM s2)"
    )
    # What cannot be nested is sent statement by statement.
    assert batched(("INSERT INTO t VALUES (1) RETURNING a", "DELETE FROM t")) is None
    assert batched(("CREATE TABLE u (a INT)", "DELETE FROM t")) is None
