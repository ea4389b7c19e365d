"""PostgreSQL behind the Database API, with an asyncpg pool.

Several processes may serve the same campaign: a transaction about one person takes that
person's transaction-level advisory lock, so that their steps apply one after the other
whichever process received them; migrations run under a session-level advisory lock; outbox
rows are claimed with FOR UPDATE SKIP LOCKED (in the stores' SQL) and senders are woken with
LISTEN/NOTIFY.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg

from storage.constraints import violation
from storage.database import Database, Dialect, Guarded, Row, Statement, stale
from storage.leadership import Leadership, Lock
from storage.ports import StaleWrite
from storage.postgres_locks import AdvisoryLeadership, advisory_mutex

# Any number, the same in every process: the key of the migrations' lock.
_MIGRATION_LOCK = 0x0C0FFEE
_STREAM_BATCH = 2000
# A `?` outside quotes is a parameter; quoted text is kept as it is.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|\?")
_NESTABLE = frozenset({"INSERT", "UPDATE", "DELETE", "SELECT"})
# Within a person's turn, each write is a savepoint's, so that a failed one (a contact
# taken) can be undone and the update still noted in the same transaction.
_SAVEPOINT = "step"


@lru_cache(maxsize=512)
def numbered(sql: str, first: int = 1) -> str:
    """The statement with `?` placeholders numbered as PostgreSQL wants them: $1, $2… (or
    from $`first` on)."""
    count = first - 1

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match[0] != "?":
            return match[0]
        count += 1
        return f"${count}"

    return _TOKENS.sub(number, sql)


@lru_cache(maxsize=512)
def batched(statements: tuple[str, ...]) -> str | None:
    """Statements as one: each a data-modifying WITH query (a SELECT runs as itself), the
    whole returning each one's row count; None when one of them cannot be so nested.

    All of them see the database as it was when the statement began and run in no set order:
    only for statements that neither read one another's writes nor write the same row."""
    queries, used = [], 0
    for index, sql in enumerate(statements):
        verb = sql.lstrip()[:6].upper()
        if verb not in _NESTABLE or "RETURNING" in sql.upper():
            return None
        returning = "" if verb == "SELECT" else " RETURNING 1"
        queries.append(f"s{index} AS ({numbered(sql, used + 1)}{returning})")
        used += sum(1 for token in _TOKENS.findall(sql) if token == "?")
    counts = ", ".join(f"(SELECT COUNT(*) FROM s{index})" for index in range(len(statements)))
    return f"WITH {', '.join(queries)} SELECT {counts}"


def _count(status: str) -> int:
    """Rows a statement touched, from its status line: 'UPDATE 1', 'INSERT 0 3'."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


async def _statements(
    connection: asyncpg.Connection, statements: Sequence[Statement], together: bool
) -> list[int]:
    """Each statement's row count; `together` ones in one round trip where they can be."""
    sql = batched(tuple(sql for sql, _ in statements)) if together and len(statements) > 1 else None
    try:
        if sql is not None:
            row = await connection.fetchrow(sql, *(p for _, params in statements for p in params))
            assert row is not None
            return list(row)
        return [
            _count(await connection.execute(numbered(sql), *parameters))
            for sql, parameters in statements
        ]
    except asyncpg.IntegrityConstraintViolationError as error:
        raise violation(error.constraint_name or "", error) from error


async def _undo(connection: asyncpg.Connection, statement: str) -> bool:
    """Roll back, keeping the error that made us roll back. A connection that cannot (broken,
    or still cancelling a query) is closed: the server then rolls back and lets the locks go."""
    try:
        await connection.execute(statement)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        connection.terminate()
        return False
    return True


async def _keep_session(connection: asyncpg.Connection) -> None:
    """A connection back in the pool needs no reset query (one more round trip each time):
    nothing here sets session state, the migrations' lock is let go where it is taken, and
    asyncpg rolls back any transaction left open before this is called."""


async def _guarded(
    connection: asyncpg.Connection,
    statements: Sequence[Statement],
    guarded: Guarded,
    together: bool,
) -> list[int]:
    counts = await _statements(connection, statements, together)
    if stale(counts, guarded):
        raise StaleWrite()
    return counts


class PostgresDatabase(Database):
    dialect = Dialect.POSTGRESQL

    def __init__(
        self,
        pool: asyncpg.Pool,
        connection: asyncpg.Connection | None = None,
        in_turn: bool = False,
    ) -> None:
        self._pool = pool
        # Set inside `serving` and `exclusive`: everything runs on this one connection.
        self._connection = connection
        # Inside `serving`: the person's transaction is open, and a savepoint is ready (taken
        # in the same round trip as the lock) until a write uses it.
        self._in_turn = in_turn
        self._savepoint_ready = in_turn
        self._listener: asyncpg.Connection | None = None
        # Where the pool connects: the lead of the periodic jobs keeps a connection of its own.
        self._url: str | None = None

    @classmethod
    async def open(cls, url: str, pool_size: int = 10) -> PostgresDatabase:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size, reset=_keep_session)
        database = cls(pool)
        database._url = url
        return database

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await self._pool.close()

    @asynccontextmanager
    async def _connected(self) -> AsyncIterator[asyncpg.Connection]:
        if self._connection is not None:
            yield self._connection
        else:
            async with self._pool.acquire() as connection:
                yield connection

    async def run(
        self,
        statements: Sequence[Statement],
        guarded: Guarded = None,
        user_id: int | None = None,
        together: bool = False,
    ) -> list[int]:
        # Round trips are most of a short transaction's cost: the transaction's BEGIN goes
        # with the person's lock, and `together` statements go as one.
        if self._in_turn:
            assert self._connection is not None
            return await self._in_savepoint(self._connection, statements, guarded, together)
        async with self._connected() as connection:
            if len(statements) == 1 and guarded is None and user_id is None:
                return await _statements(connection, statements, together)  # atomic alone
            begin = "BEGIN"
            if user_id is not None and self._connection is None:
                begin += f"; SELECT pg_advisory_xact_lock({int(user_id)})"
            try:
                await connection.execute(begin)
                counts = await _guarded(connection, statements, guarded, together)
            except BaseException:
                await _undo(connection, "ROLLBACK")
                raise
            await connection.execute("COMMIT")
            return counts

    async def _in_savepoint(
        self,
        connection: asyncpg.Connection,
        statements: Sequence[Statement],
        guarded: Guarded,
        together: bool,
    ) -> list[int]:
        if not self._savepoint_ready:
            await connection.execute(f"SAVEPOINT {_SAVEPOINT}")
        self._savepoint_ready = False
        try:
            return await _guarded(connection, statements, guarded, together)
        except BaseException:
            # The savepoint stays, ready for the next write.
            self._savepoint_ready = await _undo(connection, f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            raise

    async def read(self, queries: Sequence[Statement]) -> list[list[Row]]:
        async with self._connected() as connection:
            return [await connection.fetch(numbered(sql), *params) for sql, params in queries]

    async def fetch(self, sql: str, parameters: Sequence[Any] = ()) -> list[Row]:
        async with self._connected() as connection:
            return list(await connection.fetch(numbered(sql), *parameters))

    async def stream(self, sql: str, parameters: Sequence[Any] = ()) -> AsyncIterator[Row]:
        async with self._connected() as connection, connection.transaction():
            cursor = connection.cursor(numbered(sql), *parameters, prefetch=_STREAM_BATCH)
            async for row in cursor:
                yield row

    @asynccontextmanager
    async def serving(self, user_id: int) -> AsyncIterator[Database]:
        async with self._pool.acquire() as connection:
            try:
                # One round trip: the transaction, the person's lock, a savepoint for writes.
                await connection.execute(
                    f"BEGIN; SELECT pg_advisory_xact_lock({int(user_id)}); SAVEPOINT {_SAVEPOINT}"
                )
                yield PostgresDatabase(self._pool, connection, in_turn=True)
            except BaseException:
                await _undo(connection, "ROLLBACK")
                raise
            await connection.execute("COMMIT")

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[Database]:
        async with self._pool.acquire() as connection:
            try:
                await connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
                yield PostgresDatabase(self._pool, connection)
            except BaseException:
                # Its session ends, and the server lets the lock go (the pool sends no reset
                # that would): never a connection back in the pool still holding it.
                connection.terminate()
                raise
            await connection.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)

    async def on_change(self, channel: str, callback: Callable[[], None]) -> None:
        if self._listener is None:
            self._listener = await self._pool.acquire()
        await self._listener.add_listener(channel, lambda *_: callback())

    def notify(self, channel: str) -> Statement | None:
        return ("SELECT pg_notify(?, '')", (channel,))

    async def tables(self) -> dict[str, list[tuple[str, str, bool]]]:
        rows = await self.fetch(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        )
        tables: dict[str, list[tuple[str, str, bool]]] = {}
        for table, column, kind, nullable in rows:
            tables.setdefault(table, []).append((column, kind, nullable == "NO"))
        return tables

    async def indexes(self) -> dict[str, tuple[str, bool]]:
        rows = await self.fetch(
            "SELECT c.relname, t.relname, i.indisunique FROM pg_index AS i"
            " JOIN pg_class AS c ON c.oid = i.indexrelid JOIN pg_class AS t ON t.oid = i.indrelid"
            " JOIN pg_namespace AS n ON n.oid = t.relnamespace WHERE n.nspname = current_schema()"
        )
        return {name: (table, unique) for name, table, unique in rows}

    def leadership(self, lock: Lock, timeout_seconds: float) -> Leadership:
        url = self._url
        assert url is not None, "the lead is taken on the database opened from a URL"
        return AdvisoryLeadership(lambda: asyncpg.connect(url), lock, timeout_seconds)

    def mutex(self, lock: Lock) -> AbstractAsyncContextManager[None]:
        return advisory_mutex(self._pool, lock)
