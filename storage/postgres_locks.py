"""The PostgreSQL side of storage/leadership.py: session-level advisory locks, in their own key
space (two 32-bit keys, which PostgreSQL keeps apart from the single 64-bit keys of the per-user
locks). A session lock lives as long as its connection: a process that dies, even by SIGKILL,
drops its connection and with it the lock, and another process takes the lock at its next try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from storage.leadership import Leadership, Lock

log = logging.getLogger(__name__)

# The first of the two keys of every lock here: any number, the same in every process.
_KEY_SPACE = 0x0C0FFEE


class AdvisoryLeadership(Leadership):
    """The lead is a session advisory lock held on a connection of its own, outside the pool,
    for as long as this process leads or tries to."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        lock: Lock,
        timeout_seconds: float,
    ) -> None:
        # Not the pool's: a pooled connection whose server side was cut could hang its release.
        self._connect = connect
        self._lock = lock
        self._timeout = timeout_seconds
        self._connection: asyncpg.Connection | None = None
        self._held = False

    async def lead(self) -> bool:
        try:
            await asyncio.wait_for(self._try(), self._timeout)
        except Exception as error:
            # A connection cut by the server may fail in any of asyncpg's ways, or not answer.
            log.warning("lost the database connection of the lead: %s", type(error).__name__)
            await self._drop()
        return self._held

    async def _try(self) -> None:
        if self._connection is None:
            self._connection = await self._connect()
        if self._held:
            # The connection answers, so its session, and the lock with it, still stand.
            await self._connection.fetchval("SELECT 1")
        else:
            self._held = bool(
                await self._connection.fetchval(
                    "SELECT pg_try_advisory_lock($1, $2)", _KEY_SPACE, int(self._lock)
                )
            )

    async def resign(self) -> None:
        """Lets the lock go before closing: a closed connection's session ends when its server
        process exits, a moment later, and a replica trying meanwhile would find it held."""
        if self._held and self._connection is not None:
            with contextlib.suppress(Exception):  # cut already: the session is going anyway
                await asyncio.wait_for(
                    self._connection.execute(
                        "SELECT pg_advisory_unlock($1, $2)", _KEY_SPACE, int(self._lock)
                    ),
                    self._timeout,
                )
        await self._drop()

    async def _drop(self) -> None:
        """Closes the connection at once: its session ends, and the server lets the lock go."""
        self._held = False
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()


@contextlib.asynccontextmanager
async def advisory_mutex(pool: asyncpg.Pool, lock: Lock) -> AsyncIterator[None]:
    """Waits for the lock, holds it on one connection for the block, then lets it go."""
    async with pool.acquire() as connection:
        await connection.execute("SELECT pg_advisory_lock($1, $2)", _KEY_SPACE, int(lock))
        try:
            yield
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1, $2)", _KEY_SPACE, int(lock))
