"""Where the SQLite store's work runs: steps on the loop thread, bulk reads and WAL checkpoints
off it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

from storage import DatabaseOptions, open_storage
from storage.migrator import migrate
from storage.sqlite import SqliteDatabase
from tests.conftest import NOW
from tests.test_storage import participant


def checkpointed_participants(path: Path) -> int:
    """Participants in the database file itself, ignoring what is still only in the WAL."""
    with closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as reader:
        return int(reader.execute("SELECT COUNT(*) FROM participants").fetchone()[0])


async def test_wal_checkpoints_run_off_the_commits_every_so_many(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await open_storage(f"sqlite:///{path}", DatabaseOptions(checkpoint_every_commits=3))
    try:
        await migrate(store.database, NOW)
        checkpointer = store.database._checkpointer
        assert checkpointer is not None
        # The migrations' commits may have started one: let it end, and count from here.
        if checkpointer._running is not None:
            await asyncio.wait([checkpointer._running])
        checkpointer._commits = 0
        await store.participants.save(
            participant(1, phone="+33600000001", email="a@x.fr"), 0, [], 1, NOW
        )
        await store.participants.save(
            participant(2, phone="+33600000002", email="b@x.fr"), 0, [], 2, NOW
        )
        # Committed, but the commits themselves did not copy the WAL into the database.
        assert checkpointed_participants(path) == 0
        await store.participants.save(
            participant(3, phone="+33600000003", email="c@x.fr"), 0, [], 3, NOW
        )
        assert checkpointer._running is not None
        await asyncio.wait([checkpointer._running])
        assert checkpointed_participants(path) == 3
    finally:
        await store.close()


async def test_bulk_reads_run_off_the_loop_thread(tmp_path: Path) -> None:
    store = await open_storage(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        database = store.database
        assert isinstance(database, SqliteDatabase) and database._reader is not None
        # On the reader's own connection, which alone knows the function.
        await database._reader.create_function("thread_id", 0, threading.get_ident)
        [row] = await database.fetch("SELECT thread_id()")
        assert row[0] != threading.get_ident()
    finally:
        await store.close()
