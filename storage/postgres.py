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
from storage.database import Database, Dialect, Row, Statement
from storage.leadership import Leadership, Lock
from storage.ports import StaleWrite
from storage.postgres_locks import AdvisoryLeadership, advisory_mutex

# Any number, the same in every process: the key of the migrations' lock.
_MIGRATION_LOCK = 0x0C0FFEE
_STREAM_BATCH = 2000
# A `?` outside quotes is a parameter; quoted text is kept as it is.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|\?")


@lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """The statement with `?` placeholders numbered as PostgreSQL wants them: $1, $2…"""
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match[0] != "?":
            return match[0]
        count += 1
        return f"${count}"

    return _TOKENS.sub(number, sql)


def _count(status: str) -> int:
    """Rows a statement touched, from its status line: 'UPDATE 1', 'INSERT 0 3'."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresDatabase(Database):
    dialect = Dialect.POSTGRESQL

    def __init__(self, pool: asyncpg.Pool, connection: asyncpg.Connection | None = None) -> None:
        self._pool = pool
        # Set inside `serving` and `exclusive`: everything runs on this one connection.
        self._connection = connection
        self._listener: asyncpg.Connection | None = None

    @classmethod
    async def open(cls, url: str, pool_size: int = 10) -> PostgresDatabase:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        return cls(pool)

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
        guarded: int | None = None,
        user_id: int | None = None,
    ) -> list[int]:
        async with self._connected() as connection:
            try:
                # Nested in `serving`'s transaction, this is a savepoint.
                async with connection.transaction():
                    if user_id is not None and self._connection is None:
                        await connection.execute("SELECT pg_advisory_xact_lock($1)", user_id)
                    counts = [
                        _count(await connection.execute(numbered(sql), *parameters))
                        for sql, parameters in statements
                    ]
                    if guarded is not None and counts[guarded] != 1:
                        raise StaleWrite()
            except asyncpg.IntegrityConstraintViolationError as error:
                raise violation(error.constraint_name or "", error) from error
        return counts

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
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", user_id)
            yield PostgresDatabase(self._pool, connection)

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[Database]:
        async with self._pool.acquire() as connection:
            await connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            try:
                yield PostgresDatabase(self._pool, connection)
            finally:
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
        return AdvisoryLeadership(self._pool, lock, timeout_seconds)

    def mutex(self, lock: Lock) -> AbstractAsyncContextManager[None]:
        return advisory_mutex(self._pool, lock)
