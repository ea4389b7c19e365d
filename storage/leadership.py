"""One process at a time, among the processes sharing a database: the leader that runs the
periodic jobs, and mutexes around work that two replicas must not do at once (the draw).

On PostgreSQL both are session-level advisory locks (storage/postgres_locks.py). With SQLite
one process owns the file's writes, so it always leads and a mutex is the process's own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import IntEnum


class Lock(IntEnum):
    """What a lock guards: the second key."""

    PERIODIC_JOBS = 1
    DRAW = 2


class Leadership(ABC):
    @abstractmethod
    async def lead(self) -> bool:
        """Take the lead if nobody holds it, or check that it is still held; whether this
        process leads now. Never raises: a lost connection means not leading."""

    @abstractmethod
    async def resign(self) -> None:
        """Give the lead up (at stop), so that another process takes it at once."""


class SoleLeadership(Leadership):
    """The only process: it always leads."""

    async def lead(self) -> bool:
        return True

    async def resign(self) -> None:
        return None
