"""A SQLite file's bulk reads (`fetch`, `stream`) run off the loop thread on a connection of
their own: they see committed rows only, whatever transaction the loop thread has open, and a
rollback there does not abort them. Inside `exclusive` they see the lock's own work."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import open_database
from storage.database import Database
from storage.migrator import migrate
from storage.ports import DuplicateUpdate
from storage.sqlite import _STREAM_BATCH, SqliteDatabase
from tests.conftest import NOW

_NOTE = "INSERT INTO processed_updates (update_id, processed_at) VALUES (?, '2026-11-26')"
_IDS = "SELECT update_id FROM processed_updates ORDER BY update_id"


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    opened = await open_database(f"sqlite:///{tmp_path / 'store.db'}")
    assert isinstance(opened, SqliteDatabase)
    await migrate(opened, NOW)
    yield opened
    await opened.close()


def writer(database: SqliteDatabase) -> sqlite3.Connection:
    """The connection the loop thread's transactions run on."""
    return database._db


def wal_of(path: Path) -> bytes:
    return Path(f"{path}-wal").read_bytes()


async def ids(database: Database) -> list[int]:
    return [row[0] for row in await database.fetch(_IDS)]


async def test_a_bulk_read_never_sees_a_transaction_in_progress(
    database: SqliteDatabase,
) -> None:
    await database.run([(_NOTE, (1,))])
    # A step's transaction, caught between its statements and its end (as the worker thread
    # could catch it, the loop thread being in the middle of `commit`).
    writer(database).execute("BEGIN IMMEDIATE")
    writer(database).execute(_NOTE, (2,))
    seen = await ids(database)
    streamed = [row[0] async for row in database.stream(_IDS)]
    writer(database).execute("ROLLBACK")
    assert seen == streamed == [1]
    assert await ids(database) == [1]
    # Committed, it is seen by the next read at once.
    await database.run([(_NOTE, (2,)), (_NOTE, (3,))])
    assert await ids(database) == [1, 2, 3]


async def test_a_rollback_on_the_loop_thread_does_not_abort_a_stream(
    database: SqliteDatabase,
) -> None:
    await database.run([(_NOTE, (n,)) for n in range(1, 3 * _STREAM_BATCH + 1)])
    streamed = []
    rows = database.stream(_IDS)
    try:
        streamed.append((await anext(rows))[0])  # a batch read, the statement still going
        # A transaction refused (its update already processed) and rolled back. Sharing the
        # connection, a read survived a rollback only if the schema had not changed (SQLite
        # aborts it otherwise, "abort due to ROLLBACK"): a migration's, say.
        for refused in (
            [(_NOTE, (10**6,)), (_NOTE, (1,))],
            [("CREATE TABLE scratch (x INTEGER)", ()), (_NOTE, (10**6,)), (_NOTE, (1,))],
        ):
            with pytest.raises(DuplicateUpdate):
                await database.run(refused)
        streamed += [row[0] async for row in rows]
    finally:
        await rows.aclose()
    assert streamed == list(range(1, 3 * _STREAM_BATCH + 1))
    assert 10**6 not in await ids(database)


async def test_a_stream_keeps_the_rows_committed_when_it_began(database: SqliteDatabase) -> None:
    await database.run([(_NOTE, (n,)) for n in range(1, 2 * _STREAM_BATCH + 1)])
    rows = database.stream(_IDS)
    try:
        first = (await anext(rows))[0]
        await database.run([(_NOTE, (10**6,))])
        rest = [row[0] async for row in rows]
    finally:
        await rows.aclose()
    assert [first, *rest] == list(range(1, 2 * _STREAM_BATCH + 1))
    assert (await ids(database))[-1] == 10**6


async def test_reads_inside_exclusive_see_its_uncommitted_work(database: SqliteDatabase) -> None:
    async with database.exclusive() as locked:
        await locked.run([(_NOTE, (7,))])
        # Not committed yet (the lock's transaction is open), but this process wrote it.
        assert writer(database).in_transaction
        assert await ids(locked) == [7]
        assert [row[0] async for row in locked.stream(_IDS)] == [7]
    assert await ids(database) == [7]


async def test_the_reader_cannot_write(database: SqliteDatabase) -> None:
    with pytest.raises(sqlite3.OperationalError, match="readonly database"):
        await database.fetch(_NOTE + " RETURNING 1", (5,))
    assert await ids(database) == []


async def test_scrub_waits_for_a_stream_longer_than_the_busy_timeout(tmp_path: Path) -> None:
    # A stream's snapshot keeps the WAL from being emptied; an export may stream for longer
    # than the checkpoint's busy handler waits.
    path = tmp_path / "store.db"
    database = await SqliteDatabase.open(str(path), busy_timeout_ms=50)
    try:
        await migrate(database, NOW)
        await database.run([(_NOTE, (n,)) for n in range(1, 2 * _STREAM_BATCH + 1)])
        rows = database.stream(_IDS)
        streamed = [(await anext(rows))[0]]
        # An erasure, committed while the stream reads.
        await database.run([("DELETE FROM processed_updates WHERE update_id = ?", (5,))])
        assert b"2026-11-26" in wal_of(path)

        async def slowly_to_the_end() -> None:
            await asyncio.sleep(0.5)  # ten busy timeouts
            try:
                streamed.extend([row[0] async for row in rows])
            finally:
                await rows.aclose()

        streaming = asyncio.create_task(slowly_to_the_end())
        await database.scrub()
        assert streaming.done()
        assert wal_of(path) == b""
        assert streamed == list(range(1, 2 * _STREAM_BATCH + 1))  # its snapshot, row 5 included
        assert 5 not in await ids(database)
    finally:
        await database.close()
