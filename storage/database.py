"""One database API whatever the backend: transactions of statements sent together, reads,
streamed reads. Errors are raised, never returned; constraint violations come out as the
domain's exceptions (storage/constraints.py). SQL is written once, with `?` placeholders."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from enum import StrEnum
from typing import Any

from storage.leadership import Leadership, Lock, SoleLeadership

Statement = tuple[str, Sequence[Any]]
# sqlite3.Row and asyncpg.Record alike: by name, by position, iterable over the values.
Row = Any
# The statement(s) of a transaction that must each change exactly one row.
Guarded = int | tuple[int, ...] | None


def stale(counts: Sequence[int], guarded: Guarded) -> bool:
    """Whether a guarded statement changed anything but exactly one row."""
    if guarded is None:
        return False
    every = (guarded,) if isinstance(guarded, int) else guarded
    return any(counts[index] != 1 for index in every)


class Dialect(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


class Database(ABC):
    dialect: Dialect

    @abstractmethod
    async def run(
        self,
        statements: Sequence[Statement],
        guarded: Guarded = None,
        user_id: int | None = None,
        together: bool = False,
    ) -> list[int]:
        """Run statements in one transaction and return each one's row count. The `guarded`
        one (or each of several) must change exactly one row, else StaleWrite and nothing is
        written. `user_id`
        serialises the transaction with every other one about that person, in any process.
        `together` says that no statement reads what another writes and no two write the same
        row, so that a server backend may send them as one statement (one round trip)."""

    @abstractmethod
    async def read(self, queries: Sequence[Statement]) -> list[list[Row]]:
        """A few small reads sent together, e.g. one person's rows."""

    @abstractmethod
    async def fetch(self, sql: str, parameters: Sequence[Any] = ()) -> list[Row]:
        """A read of any size, off the event loop's thread where the backend blocks."""

    @abstractmethod
    def stream(self, sql: str, parameters: Sequence[Any] = ()) -> AsyncIterator[Row]:
        """A read row by row, holding only a batch in memory."""

    @abstractmethod
    def serving(self, user_id: int) -> AbstractAsyncContextManager[Database]:
        """One person's inputs in turn, across processes: within the block, the database it
        yields reads and writes under that person's lock, and everything commits at its end."""

    @abstractmethod
    def exclusive(self) -> AbstractAsyncContextManager[Database]:
        """The whole database for one process at a time (migrations): the block's database
        runs every statement while the lock is held."""

    @abstractmethod
    async def on_change(self, channel: str, callback: Callable[[], None]) -> None:
        """Call `callback` when another process says `channel` has news (see `notify`); a
        backend without such signals ignores this and callers keep looking periodically."""

    @abstractmethod
    def notify(self, channel: str) -> Statement | None:
        """A statement to append to a transaction so that listeners hear of it at commit."""

    @abstractmethod
    async def tables(self) -> dict[str, list[tuple[str, str, bool]]]:
        """Each table's columns as (name, type, not null), for checks and copies."""

    @abstractmethod
    async def indexes(self) -> dict[str, tuple[str, bool]]:
        """Each named index or unique constraint: (table, unique)."""

    async def scrub(self) -> None:
        """After an erasure: what was deleted leaves the files too, where the backend keeps
        copies of its own (SQLite's write-ahead log). PostgreSQL reuses the dead rows' space at
        its next vacuum; nothing is done here."""
        return None

    def leadership(self, lock: Lock, timeout_seconds: float) -> Leadership:
        """The lead among the processes sharing this database; a try for it that takes longer
        than `timeout_seconds` counts as a lost connection. This default is for a backend
        that one process owns (SQLite): it always leads."""
        return SoleLeadership()

    def mutex(self, lock: Lock) -> AbstractAsyncContextManager[None]:
        """The block runs in one process at a time; this default, for a backend one process
        owns, lets it run (the caller keeps its own tasks apart)."""
        return nullcontext()

    @abstractmethod
    async def close(self) -> None: ...
