"""The periodic jobs (winners' deadlines and the draw's tick, reminders, purges…), run by one
process at a time among the replicas sharing a database.

Every replica runs `PeriodicJobs.run`: it tries for the lead every LEADER_CHECK_SECONDS; the
leader starts every job, each on its own timer, and stops them all if it loses the lead. When
the leader dies its database session ends, the lead is free, and another replica takes it at
its next check. With SQLite the one process always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from storage.leadership import Leadership

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    every_seconds: float
    run: Callable[[], Awaitable[object]]


async def every(seconds: float, job: Callable[[], Awaitable[object]]) -> None:
    """Runs `job` every `seconds` until cancelled; a failure is logged and the next run happens."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception:
            log.exception("periodic %s failed", getattr(job, "__qualname__", job))


class PeriodicJobs:
    def __init__(self, leadership: Leadership, check_seconds: float) -> None:
        self._leadership = leadership
        self._check_seconds = check_seconds
        self._jobs: list[PeriodicJob] = []
        self._running: list[asyncio.Task[None]] = []

    def add(self, name: str, every_seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        self._jobs.append(PeriodicJob(name, every_seconds, job))

    @property
    def leading(self) -> bool:
        return bool(self._running)

    async def run(self) -> None:
        """Until cancelled: lead when the lead is free, run the jobs while leading."""
        try:
            while True:
                if await self._leadership.lead():
                    if not self._running:
                        self._start()
                elif self._running:
                    log.warning("lost the lead: the periodic jobs stop here")
                    await self._stop()
                await asyncio.sleep(self._check_seconds)
        finally:
            await self._stop()
            await self._leadership.resign()

    def _start(self) -> None:
        names = ", ".join(job.name for job in self._jobs)
        log.info("leading: the periodic jobs run here (%s)", names)
        self._running = [
            asyncio.create_task(every(job.every_seconds, job.run), name=job.name)
            for job in self._jobs
        ]

    async def _stop(self) -> None:
        running, self._running = self._running, []
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
