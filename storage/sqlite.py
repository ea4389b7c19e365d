"""SQLite behind the Database API: WAL, foreign keys, a busy timeout.

One connection, the writer, serves the process's transactions and the small reads of `read`,
on the event loop thread, each in one synchronous call: in WAL mode with synchronous=NORMAL a
commit appends to the WAL without an fsync, so this costs tens of microseconds, where a hop to
a worker thread per statement cost more than the statement. Nothing awaits inside a
transaction, so transactions cannot interleave and no lock is needed for them; a `read` runs
between two transactions, never inside one. The fsync happens in WAL checkpoints, which SQLite
would otherwise run inside a commit (stalling the loop tens of milliseconds): the writer's
auto-checkpoint is off and `Checkpointer` runs them on its own thread and connection.

Bulk reads (`fetch`, `stream`) run off the loop on a second connection, the reader (aiosqlite's
worker thread, query_only). The reader must not be the writer: its thread runs truly alongside
the loop thread (sqlite3 releases the GIL), so on one shared connection a read could run
between a transaction's BEGIN and its COMMIT or ROLLBACK and see rows that were then rolled
back (an email queued by a refused step, say), and a rollback that changed the schema aborted
it. In WAL mode each read of the reader is a snapshot of what was committed when it began: it
never sees a transaction in progress, never waits for the writer, nor makes it wait. A stream
keeps its snapshot until its last row.

Two exceptions read through the writer, on the loop thread: inside `exclusive` (the migrator
reads what its uncommitted steps wrote), and ":memory:", where a second connection would open
another, empty, database. There `fetch` blocks the loop and `stream` reads all its rows at once
(the rows are in memory already); it suits tests and one-off commands, not a campaign.
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

    def __init__(self, path: str, every_commits: int, busy_timeout_ms: int) -> None:
        self._path = path
        self._every = every_commits
        self._busy_timeout = busy_timeout_ms / 1000
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
        self._connected().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _connected(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = sqlite3.connect(
                self._path, timeout=self._busy_timeout, check_same_thread=False
            )
        return self._connection

    async def truncate(self) -> bool:
        """The whole WAL copied into the database and the WAL emptied, on this thread (after
        a checkpoint running, if any); False if a reader or a writer held it past the busy
        timeout. It waits for them (the busy handler) off the loop thread."""

        def run() -> bool:
            busy, _, _ = self._connected().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return not busy

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

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


class _Reads:
    """The bulk reads in progress on the reader connection: each holds a snapshot, which keeps
    a TRUNCATE checkpoint from emptying the WAL until it ends."""

    def __init__(self) -> None:
        self._running = 0
        self._none = asyncio.Event()
        self._none.set()

    @asynccontextmanager
    async def one(self) -> AsyncIterator[None]:
        self._running += 1
        self._none.clear()
        try:
            yield
        finally:
            self._running -= 1
            if not self._running:
                self._none.set()

    async def ended(self) -> None:
        """Until a moment when no read is in progress (new ones may start right after)."""
        await self._none.wait()


def _checkpoint_done(future: asyncio.Future[None]) -> None:
    # A failed checkpoint is retried at the next one; the WAL only grows meanwhile.
    if not future.cancelled() and future.exception() is not None:
        log.warning("WAL checkpoint failed: %s", future.exception())


class ScrubIncomplete(Exception):
    """The WAL could not be emptied: reads or writes held it past the busy timeout."""


# How many times `scrub` waits for the reads in progress and tries to empty the WAL.
_SCRUB_TRIES = 3


class SqliteDatabase(Database):
    dialect = Dialect.SQLITE

    def __init__(
        self,
        writer: sqlite3.Connection,
        reader: aiosqlite.Connection | None = None,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        # Used directly on the loop thread.
        self._db = writer
        # A file's bulk reads; None in memory, where they go through the writer.
        self._reader = reader
        self._reads = _Reads()
        self._checkpointer = checkpointer
        # Inside `exclusive`, each `run` is a savepoint of the transaction holding the lock.
        self._held = False

    @classmethod
    async def open(
        cls, path: str, busy_timeout_ms: int = 5000, checkpoint_every_commits: int = 250
    ) -> SqliteDatabase:
        if path == ":memory:":
            return cls(_writer(path, busy_timeout_ms))
        _create_private(path)
        # Switching to WAL needs the file's lock: wait for it here, as long as the busy
        # timeout says, and fail with the connection closed. Blocking, but only at start.
        with closing(sqlite3.connect(path, timeout=busy_timeout_ms / 1000)) as probe:
            probe.execute("PRAGMA journal_mode = WAL")
        writer = _writer(path, busy_timeout_ms)
        try:
            reader = await _reader(path, busy_timeout_ms)
        except BaseException:
            writer.close()
            raise
        checkpointer = Checkpointer(path, checkpoint_every_commits, busy_timeout_ms)
        return cls(writer, reader, checkpointer)

    async def scrub(self) -> None:
        # The WAL still holds the pages as they were before the erasure: copied into the file
        # (where secure_delete zeroed the rows) and emptied, on the checkpointer's thread. A
        # snapshot of the reader would keep the WAL from being emptied: first the reads in
        # progress end (a stream, an export say, runs to its end); one starting meanwhile is
        # waited for by the checkpoint's busy handler, off the loop.
        if self._checkpointer is None:
            return
        for _ in range(_SCRUB_TRIES):
            await self._reads.ended()
            if await self._checkpointer.truncate():
                return
        raise ScrubIncomplete(
            "the WAL still holds pages from before the erasure: reads or writes kept it busy"
            " (it is emptied at the next erasure, or when the bot stops)"
        )

    async def close(self) -> None:
        # The reader first, the writer last: the last connection to close checkpoints the
        # whole WAL and removes it.
        if self._reader is not None:
            await self._reader.close()
        if self._checkpointer is not None:
            await self._checkpointer.close()
        await asyncio.to_thread(self._db.close)

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
        if self._reader is None or self._held:
            return self._db.execute(sql, parameters).fetchall()
        async with self._reads.one():
            return list(await self._reader.execute_fetchall(sql, parameters))

    async def stream(self, sql: str, parameters: Sequence[Any] = ()) -> AsyncIterator[Row]:
        if self._reader is None or self._held:
            for row in self._db.execute(sql, parameters).fetchall():
                yield row
            return
        # The cursor's snapshot lasts until its last batch or until the stream is closed.
        async with self._reads.one(), self._reader.execute(sql, parameters) as cursor:
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


def _writer(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    # Autocommit (isolation_level None): `commit` writes BEGIN and COMMIT itself. Used on the
    # loop thread only; `close` hands it to a thread for the last checkpoint.
    writer = sqlite3.connect(
        path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        writer.row_factory = sqlite3.Row
        if path != ":memory:":
            writer.execute("PRAGMA journal_mode = WAL")
            writer.execute("PRAGMA wal_autocheckpoint = 0")
        # NORMAL in WAL mode: a committed step survives the process being killed;
        # only a power cut can lose the last few.
        writer.execute("PRAGMA synchronous = NORMAL")
        writer.execute("PRAGMA foreign_keys = ON")
        # A deleted row is overwritten with zeros, whatever the platform's build defaults to:
        # an erasure leaves nothing to find in the file's free pages.
        writer.execute("PRAGMA secure_delete = ON")
    except BaseException:
        writer.close()
        raise
    return writer


async def _reader(path: str, busy_timeout_ms: int) -> aiosqlite.Connection:
    # query_only: a statement that would write fails. Autocommit: each read is a transaction
    # of its own, which ends (releasing its snapshot) with its last row.
    reader = await aiosqlite.connect(
        path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        reader.row_factory = sqlite3.Row
        await reader.execute("PRAGMA query_only = ON")
    except BaseException:
        await reader.close()
        raise
    return reader


@asynccontextmanager
async def _as_is(database: Database) -> AsyncIterator[Database]:
    yield database
