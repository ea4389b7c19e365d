"""The Telegram outbox's storage, on every backend: a SQLite file and in-memory SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from conversations.model import ErasePersonalData, Participant
from storage import Storage, open_storage
from storage.database import Dialect
from storage.migrator import migrate
from storage.ports import QueuedTelegram, TelegramKind, TelegramMessage, TelegramStatus
from storage.telegram_outbox import _DUE, TelegramQueue
from tests.conftest import NOW
from tests.test_storage import BACKENDS, backend_url


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    url = backend_url(request, tmp_path)
    opened = await open_storage(url)
    await migrate(opened.database, NOW)
    yield opened
    await opened.close()


@pytest.fixture
def outbox(store: Storage) -> TelegramQueue:
    return TelegramQueue(store.database)


async def person(store: Storage, user_id: int) -> Participant:
    state = Participant(user_id=user_id, language="fr", created_at=NOW)
    await store.participants.save(state, 0, [], None, NOW)
    return state


def result(user_id: int, **changes: object) -> TelegramMessage:
    fields: dict[str, object] = {
        "key": f"draw-result:T{user_id}",
        "user_id": user_id,
        "kind": TelegramKind.DRAW_RESULT,
        "language": "fr",
        "text_key": "ticket.not_drawn",
        "params": {"ticket": f"T{user_id}"},
        "batch": "draw-result",
    } | changes
    return TelegramMessage(**fields)  # type: ignore[arg-type]


async def row(store: Storage, key: str) -> dict[str, object]:
    rows = await store.database.fetch(
        "SELECT * FROM telegram_outbox WHERE idempotency_key = ?", (key,)
    )
    return dict(rows[0]) if rows else {}


async def test_a_queued_message_comes_back_due_as_it_was_queued(
    store: Storage, outbox: TelegramQueue
) -> None:
    await person(store, 1)
    winner = result(
        1,
        key="draw-result:T1",
        text_key="winner.notify",
        params={"first_name": "Zoé", "ticket": "T1", "deadline": "dimanche"},
        buttons=(("button.accept", "win.accept"), ("button.decline", "win.decline")),
        not_before=NOW,
    )
    await outbox.queue([winner], NOW)

    [due] = await outbox.due(NOW, 10, hold_campaign=False)
    assert due.message == winner and due.attempts == 0


async def test_the_same_key_queued_twice_is_one_message(
    store: Storage, outbox: TelegramQueue
) -> None:
    await person(store, 1)
    await outbox.queue([result(1)], NOW)
    await outbox.queue([result(1, params={"ticket": "changed"})], NOW)
    # Even once sent, the key keeps a person from being told again.
    assert await outbox.start_sending("draw-result:T1")
    await outbox.mark_sent("draw-result:T1", NOW)
    await outbox.queue([result(1)], NOW)

    assert await outbox.progress("draw-result") == {TelegramStatus.SENT: 1}
    assert await outbox.due(NOW, 10, hold_campaign=False) == []


async def test_queue_statements_join_the_callers_transaction(
    store: Storage, outbox: TelegramQueue
) -> None:
    await person(store, 1)
    await person(store, 2)
    statements = outbox.queue_statements([result(1), result(2)], NOW)
    failing = ("INSERT INTO no_such_table VALUES (1)", ())
    with pytest.raises(Exception, match="no_such_table"):
        await store.database.run([*statements, failing])
    assert await outbox.progress("draw-result") == {}

    await store.database.run(statements)
    assert await outbox.progress("draw-result") == {TelegramStatus.PENDING: 2}


async def test_a_message_for_someone_not_stored_is_not_queued(
    store: Storage, outbox: TelegramQueue
) -> None:
    await outbox.queue([result(404)], NOW)
    assert await outbox.progress("draw-result") == {}


async def test_due_respects_not_before_order_limit_and_campaign_hold(
    store: Storage, outbox: TelegramQueue
) -> None:
    for user_id in (1, 2, 3, 4):
        await person(store, user_id)
    later = NOW + timedelta(hours=1)
    await outbox.queue(
        [
            result(1, not_before=NOW + timedelta(minutes=2)),
            result(2, not_before=NOW + timedelta(minutes=1)),
            result(3, not_before=later, kind=TelegramKind.DEADLINE_REMINDER),
            result(4, campaign=True, kind=TelegramKind.ANNOUNCEMENT, batch="announce:1"),
        ],
        NOW,
    )
    soon = NOW + timedelta(minutes=5)

    def keys(due: list[QueuedTelegram]) -> list[str]:
        return [queued.message.key for queued in due]

    assert keys(await outbox.due(soon, 10, hold_campaign=False)) == [
        "draw-result:T4", "draw-result:T2", "draw-result:T1",
    ]  # fmt: skip
    assert keys(await outbox.due(soon, 10, hold_campaign=True)) == [
        "draw-result:T2", "draw-result:T1",
    ]  # fmt: skip
    assert keys(await outbox.due(soon, 1, hold_campaign=True)) == ["draw-result:T2"]
    assert keys(await outbox.due(later, 10, hold_campaign=True))[-1] == "draw-result:T3"


async def test_start_sending_takes_a_pending_message_once(
    store: Storage, outbox: TelegramQueue
) -> None:
    await person(store, 1)
    await outbox.queue([result(1)], NOW)
    assert await outbox.start_sending("draw-result:T1")
    assert not await outbox.start_sending("draw-result:T1")
    assert await outbox.due(NOW, 10, hold_campaign=False) == []
    assert not await outbox.start_sending("draw-result:unknown")


async def test_each_end_state_is_recorded_and_erases_the_values(
    store: Storage, outbox: TelegramQueue
) -> None:
    for user_id in (1, 2, 3):
        await person(store, user_id)
    await outbox.queue([result(1), result(2), result(3)], NOW)
    for key in ("draw-result:T1", "draw-result:T2", "draw-result:T3"):
        assert await outbox.start_sending(key)
    await outbox.mark_sent("draw-result:T1", NOW)
    await outbox.mark_blocked("draw-result:T2", 1)
    await outbox.mark_failed("draw-result:T3", 6, "BadRequest")

    sent, blocked, failed = [await row(store, f"draw-result:T{n}") for n in (1, 2, 3)]
    assert (sent["status"], sent["attempts"], sent["sent_at"]) == ("sent", 1, NOW.isoformat())
    assert (blocked["status"], blocked["last_error"]) == ("blocked", "Forbidden")
    assert (failed["status"], failed["attempts"], failed["last_error"]) == (
        "failed", 6, "BadRequest",
    )  # fmt: skip
    assert all(r["params"] is None for r in (sent, blocked, failed))
    # Blocked and failed messages are never due again.
    assert await outbox.due(NOW + timedelta(days=1), 10, hold_campaign=False) == []


async def test_retry_later_makes_the_message_due_at_that_time(
    store: Storage, outbox: TelegramQueue
) -> None:
    await person(store, 1)
    await outbox.queue([result(1)], NOW)
    assert await outbox.start_sending("draw-result:T1")
    at = NOW + timedelta(seconds=30)
    await outbox.retry_later("draw-result:T1", 1, at, "TimedOut")

    assert await outbox.due(at - timedelta(seconds=1), 10, hold_campaign=False) == []
    [due] = await outbox.due(at, 10, hold_campaign=False)
    assert due.attempts == 1 and due.message.params == {"ticket": "T1"}
    assert (await row(store, "draw-result:T1"))["last_error"] == "TimedOut"


async def test_messages_left_sending_by_a_crash_are_interrupted_and_counted(
    store: Storage, outbox: TelegramQueue
) -> None:
    for user_id in (1, 2):
        await person(store, user_id)
    await outbox.queue([result(1), result(2)], NOW)
    assert await outbox.start_sending("draw-result:T1")

    assert await outbox.mark_interrupted() == 1
    assert await outbox.mark_interrupted() == 0
    assert await outbox.progress("draw-result") == {
        TelegramStatus.INTERRUPTED: 1,
        TelegramStatus.PENDING: 1,
    }
    assert (await row(store, "draw-result:T1"))["params"] is None
    [due] = await outbox.due(NOW, 10, hold_campaign=False)
    assert due.message.key == "draw-result:T2"


async def test_cancel_batch_cancels_only_its_pending_messages(
    store: Storage, outbox: TelegramQueue
) -> None:
    for user_id in (1, 2, 3):
        await person(store, user_id)
    announce = {"kind": TelegramKind.ANNOUNCEMENT, "batch": "announce:17", "campaign": True}
    await outbox.queue(
        [
            result(1, key="announce:17:1", **announce),
            result(2, key="announce:17:2", **announce),
            result(3),
        ],
        NOW,
    )
    assert await outbox.start_sending("announce:17:1")
    await outbox.mark_sent("announce:17:1", NOW)

    await outbox.cancel_batch("announce:17")

    assert await outbox.progress("announce:17") == {
        TelegramStatus.SENT: 1,
        TelegramStatus.CANCELLED: 1,
    }
    assert await outbox.progress("draw-result") == {TelegramStatus.PENDING: 1}


async def test_erasing_a_person_deletes_their_messages(
    store: Storage, outbox: TelegramQueue
) -> None:
    erased = await person(store, 1)
    await person(store, 2)
    await outbox.queue([result(1), result(2)], NOW)

    await store.participants.save(erased, 1, [ErasePersonalData()], None, NOW)

    assert await row(store, "draw-result:T1") == {}
    [due] = await outbox.due(NOW, 10, hold_campaign=False)
    assert due.message.user_id == 2
    assert not await outbox.start_sending("draw-result:T1")


async def test_the_due_index_serves_the_senders_order_bulk_last(store: Storage) -> None:
    """The sender reads 100 due messages at a time from a queue that an announcement fills with
    hundreds of thousands: the index must give them in the sender's order (bulk last), not
    leave the database to sort every pending row for each read."""
    await person(store, 1)
    await store.database.run(
        [
            (
                "INSERT INTO telegram_outbox (idempotency_key, user_id, kind, language, text_key,"
                " params, buttons, campaign, status, attempts, not_before, batch, created_at,"
                " bulk) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                " WHERE i < 20000) SELECT 'announce:1:' || CAST(i AS TEXT), 1, 'announcement',"
                " 'fr', 'announcement.message', '{}', '[]', 1, 'pending', 0, ?, 'announce:1', ?,"
                " 1 FROM n",
                (NOW.isoformat(), NOW.isoformat()),
            ),
            ("ANALYZE telegram_outbox", ()),
        ]
    )
    await store.telegram.queue([result(1, key="winner:T1")], NOW + timedelta(seconds=1))
    due = await store.telegram.due(NOW + timedelta(seconds=2), 3, hold_campaign=False)
    assert due[0].message.key == "winner:T1"
    postgres = store.database.dialect is Dialect.POSTGRESQL
    explain = "EXPLAIN" if postgres else "EXPLAIN QUERY PLAN"
    plan = " ".join(
        str(value)
        for row in await store.database.fetch(f"{explain} {_DUE}", (NOW.isoformat(), 1, 100))
        for value in tuple(row)
    )
    assert "telegram_outbox_due" in plan, plan
    assert ("Sort" not in plan) if postgres else ("TEMP B-TREE" not in plan), plan
