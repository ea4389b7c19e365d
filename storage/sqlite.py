"""SQLite behind the Database API: WAL, foreign keys, a busy timeout.

One connection serves the whole process. A transaction and the small reads of `read` run on
the event loop thread, each in one synchronous call: in WAL mode with synchronous=NORMAL a
commit appends to the WAL without an fsync, so this costs tens of microseconds, where a hop to
a worker thread per statement cost more than the statement. Nothing awaits inside a
transaction, so transactions cannot interleave and no lock is needed for them. The fsync
happens in WAL checkpoints, which SQLite would otherwise run inside a commit (stalling the loop
tens of milliseconds): the connection's auto-checkpoint is off and `Checkpointer` runs them on
its own thread and connection.

Bulk reads (`fetch`, `stream`) run on aiosqlite's worker thread with the same connection, off
the loop. They take no lock: callers serialise each user's steps, so no transaction in
progress on the connection touches the rows a read asks for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing, suppress
from typing import Any

import aiosqlite

from storage.constraints import violation
from storage.database import Database, Dialect, Guarded, Row, Statement, stale
from storage.ports import StaleWrite

log = logging.getLogger(__name__)

# Rows a stream asks the worker thread for at a time.
_STREAM_BATCH = 2000
_FAILED = re.compile(r"constraint failed: (?:index '(?P<index>[^']+)'|(?P<columns>.+))$")


class Checkpointer:
    """Copies the WAL into the database on a thread of its own, every `every_commits` commits.

    PASSIVE: it never waits for, nor blocks, the writer on the loop thread.
    """

    def __init__(self, path: str, every_commits: int) -> None:
        self._path = path
        self._every = every_commits
        self._commits = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._connection: sqlite3.Connection | None = None
        self._running: asyncio.Future[None] | None = None

    def committed(self) -> None:
        self._commits += 1
        if self._commits >= self._every and (self._running is None or self._running.done()):
            self._commits = 0
            self._running = asyncio.get_running_loop().run_in_executor(self._thread, self._run)
            self._running.add_done_callback(_checkpoint_done)

    def _run(self) -> None:
        if self._connection is None:
            self._connection = sqlite3.connect(self._path, check_same_thread=False)
        self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def close(self) -> None:
        if self._running is not None:
            await asyncio.wait([self._running])
        if self._connection is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._connection.close)
        self._thread.shutdown()


def _create_private(path: str) -> None:
    """A new database file readable by the bot's user only; SQLite gives its -wal and -shm
    files the database file's mode. An existing file is left as it is."""
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _checkpoint_done(future: asyncio.Future[None]) -> None:
    # A failed checkpoint is retried at the next one; the WAL only grows meanwhile.
    if not future.cancelled() and future.exception() is not None:
        log.warning("WAL checkpoint failed: %s", future.exception())


class SqliteDatabase(Database):
    dialect = Dialect.SQLITE

    def __init__(
        self, connection: aiosqlite.Connection, checkpointer: Checkpointer | None = None
    ) -> None:
        self._connection = connection
        # The same sqlite3 connection, used directly on the loop thread.
        self._db: sqlite3.Connection = connection._conn
        self._checkpointer = checkpointer
        # Inside `exclusive`, each `run` is a savepoint of the transaction holding the lock.
        self._held = False

    @classmethod
    async def open(
        cls, path: str, busy_timeout_ms: int = 5000, checkpoint_every_commits: int = 250
    ) -> SqliteDatabase:
        if path != ":memory:":
            _create_private(path)
            # Switching to WAL needs the file's lock: wait for it here, as long as the busy
            # timeout says, and fail with the connection closed. (Done first on the aiosqlite
            # connection, before its busy timeout is set, a lock held elsewhere fails at once
            # and leaves the connection's thread running, so the process never exits.)
            # Blocking, but only at start.
            with closing(sqlite3.connect(path, timeout=busy_timeout_ms / 1000)) as probe:
                probe.execute("PRAGMA journal_mode = WAL")
        connection = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
        connection.row_factory = aiosqlite.Row
        checkpointer = None
        if path != ":memory:":
            await connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            await connection.execute("PRAGMA journal_mode = WAL")
            await connection.execute("PRAGMA wal_autocheckpoint = 0")
            checkpointer = Checkpointer(path, checkpoint_every_commits)
        # NORMAL in WAL mode: a committed step survives the process being killed;
        # only a power cut can lose the last few.
        await connection.execute("PRAGMA synchronous = NORMAL")
        await connection.execute("PRAGMA foreign_keys = ON")
        await connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        # A deleted row is overwritten with zeros, whatever the platform's build defaults to:
        # an erasure leaves nothing to find in the file's free pages.
        await connection.execute("PRAGMA secure_delete = ON")
        return cls(connection, checkpointer)

    async def scrub(self) -> None:
        # The WAL still holds the pages as they were before the erasure: copied into the file
        # (where secure_delete zeroed the rows) and emptied. Erasures are rare; the few
        # milliseconds on the loop thread are acceptable.
        if self._checkpointer is not None:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    async def close(self) -> None:
        if self._checkpointer is not None:
            await self._checkpointer.close()
        # The last connection to close checkpoints the whole WAL and removes it.
        await self._connection.close()

    async def run(
        self,
        statements: Sequence[Statement],
        guarded: Guarded = None,
        user_id: int | None = None,
        together: bool = False,
    ) -> list[int]:
        # It runs to its end before this returns: nothing awaits in between, so a cancelled
        # caller cannot leave it open.
        return self.commit(statements, guarded)

    def commit(self, statements: Sequence[Statement], guarded: Guarded = None) -> list[int]:
        """The transaction, synchronously on the calling thread; each statement's row count."""
        db = self._db
        if len(statements) == 1 and guarded is None and not self._held:
            # One statement is a transaction of its own (its write lock is taken, with the
            # busy timeout, before it reads): no BEGIN and COMMIT to run around it.
            sql, parameters = statements[0]
            try:
                counts = [db.execute(sql, parameters).rowcount]
            except sqlite3.IntegrityError as error:
                raise self._violation(error) from error
            if self._checkpointer is not None:
                self._checkpointer.committed()
            return counts
        begin, end, undo = (
            ("SAVEPOINT step", "RELEASE step", "ROLLBACK TO step")
            if self._held
            else ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
        )
        db.execute(begin)
        try:
            counts = [db.execute(sql, parameters).rowcount for sql, parameters in statements]
            if stale(counts, guarded):
                raise StaleWrite()
            db.execute(end)
        except BaseException as error:
            if db.in_transaction:
                db.execute(undo)
                if self._held:
                    db.execute(end)
            if isinstance(error, sqlite3.IntegrityError):
                raise self._violation(error) from error
            raise
        if self._checkpointer is not None and not self._held:
            self._checkpointer.committed()
        return counts

    def _violation(self, error: sqlite3.IntegrityError) -> Exception:
        """The domain's exception for a constraint named as PostgreSQL names it: SQLite's
        message gives an index's name, or only its table and columns."""
        match = _FAILED.search(str(error))
        if match is None:
            return error
        if match["index"]:
            return violation(match["index"], error)
        columns = [part.strip().split(".", 1) for part in match["columns"].split(",")]
        table = columns[0][0]
        wanted = [column for _, column in columns]
        for _, name, _, origin, _ in self._db.execute(f"PRAGMA index_list('{table}')"):
            indexed = [row[2] for row in self._db.execute(f"PRAGMA index_info('{name}')")]
            if indexed != wanted:
                continue
            if origin == "pk":
                return violation(f"{table}_pkey", error)
            if origin == "u":
                return violation(f"{table}_{'_'.join(wanted)}_key", error)
            return violation(name, error)
        if len(wanted) == 1:  # an INTEGER PRIMARY KEY has no index
            return violation(f"{table}_pkey", error)
        return error

    async def read(self, queries: Sequence[Statement]) -> list[list[Row]]:
        execute = self._db.execute
        return [execute(sql, parameters).fetchall() for sql, parameters in queries]

    async def fetch(self, sql: str, parameters: Sequence[Any] = ()) -> list[Row]:
        return list(await self._connection.execute_fetchall(sql, parameters))

    async def stream(self, sql: str, parameters: Sequence[Any] = ()) -> AsyncIterator[Row]:
        async with self._connection.execute(sql, parameters) as cursor:
            while rows := await cursor.fetchmany(_STREAM_BATCH):
                for row in rows:
                    yield row

    def serving(self, user_id: int) -> AbstractAsyncContextManager[Database]:
        # One process owns the file's writes; its per-user processor keeps each person's
        # inputs in turn, and the version guard refuses a stale write.
        return _as_is(self)

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[Database]:
        # BEGIN EXCLUSIVE waits (busy timeout) for another process holding it, and keeps
        # readers and writers of other processes out until the commit.
        self._db.execute("BEGIN EXCLUSIVE")
        self._held = True
        try:
            yield self
        finally:
            self._held = False
            # Each `run` inside was a savepoint, undone if it failed: the steps that succeeded
            # are kept, as if each had been a transaction of its own.
            if self._db.in_transaction:
                self._db.execute("COMMIT")
            if self._checkpointer is not None:
                # Into the file now, at start: the schema should not wait in the WAL.
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def on_change(self, channel: str, callback: Callable[[], None]) -> None:
        return None

    def notify(self, channel: str) -> Statement | None:
        return None

    async def tables(self) -> dict[str, list[tuple[str, str, bool]]]:
        names = await self.fetch(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
        tables = {}
        for (name,) in names:
            columns = await self.fetch(f"PRAGMA table_info('{name}')")
            # A key column is reported NOT NULL, as PostgreSQL has it (SQLite, for old
            # versions' sake, would take a NULL in a key that is not an INTEGER one).
            tables[name] = [
                (c["name"], c["type"].lower(), bool(c["notnull"] or c["pk"])) for c in columns
            ]
        return tables

    async def indexes(self) -> dict[str, tuple[str, bool]]:
        found: dict[str, tuple[str, bool]] = {}
        for table in await self.tables():
            for _, name, unique, origin, _ in await self.fetch(f"PRAGMA index_list('{table}')"):
                columns = [r[2] for r in await self.fetch(f"PRAGMA index_info('{name}')")]
                if origin == "pk":
                    name = f"{table}_pkey"
                elif origin == "u":
                    name = f"{table}_{'_'.join(columns)}_key"
                found[name] = (table, bool(unique))
            keys = await self.fetch(f"SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE pk")
            if keys[0][0] and f"{table}_pkey" not in found:  # an INTEGER PRIMARY KEY: no index
                found[f"{table}_pkey"] = (table, True)
        return found


@asynccontextmanager
async def _as_is(database: Database) -> AsyncIterator[Database]:
    yield database
