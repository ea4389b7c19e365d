"""The periodic jobs run in one replica at a time, and another takes over when it dies; the
draw's mutex keeps two replicas apart. Replicas are stood in for by separate connection pools
to one PostgreSQL database (tests/test_replicas_live.py does it with real processes)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.periodic import PeriodicJobs
from storage import open_database
from storage.database import Database
from storage.leadership import Lock


@contextlib.asynccontextmanager
async def replicas(url: str, count: int) -> AsyncIterator[list[Database]]:
    databases = [await open_database(url) for _ in range(count)]
    try:
        yield databases
    finally:
        for database in databases:
            await database.close()


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


async def test_sqlite_always_leads_and_runs_its_jobs(tmp_path: Path) -> None:
    database = await open_database(f"sqlite:///{tmp_path / 'one.db'}")
    runs = 0

    async def job() -> None:
        nonlocal runs
        runs += 1

    try:
        jobs = PeriodicJobs(database.leadership(Lock.PERIODIC_JOBS, 5), 0.05)
        jobs.add("count", 0.01, job)
        running = asyncio.create_task(jobs.run())
        await until(lambda: runs >= 3)
        assert jobs.leading
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    finally:
        await database.close()


async def held(database: Database, lock: Lock) -> int:
    """How many sessions hold the lock now."""
    rows = await database.fetch(
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = ?"
        " AND objid = ? AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (0x0C0FFEE, int(lock)),
    )
    return int(rows[0][0])


async def test_one_replica_leads_until_its_session_dies(postgres_url: str) -> None:
    async with replicas(postgres_url, 3) as databases:
        leads = [database.leadership(Lock.PERIODIC_JOBS, 5) for database in databases]
        assert [await lead.lead() for lead in leads] == [True, False, False]
        assert [await lead.lead() for lead in leads] == [True, False, False]  # still held
        # The leader's connection is cut, as when its process is killed.
        await databases[1].fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_locks"
            " WHERE locktype = 'advisory' AND classid = ? AND objid = ? AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (0x0C0FFEE, int(Lock.PERIODIC_JOBS)),
        )
        assert await leads[0].lead() is False  # it knows it lost the lead
        taken = [await lead.lead() for lead in leads[1:]]
        assert taken == [True, False]
        assert await leads[0].lead() is False  # and does not take it back
        await leads[1].resign()
        # Let go by the time resign() returns, not when the server process of its connection
        # exits a moment later (a replica stopping cleanly hands over at once).
        assert await held(databases[2], Lock.PERIODIC_JOBS) == 0
        assert await leads[2].lead() is True
        for lead in leads:
            await lead.resign()


async def test_periodic_jobs_run_in_one_replica_and_are_taken_over(postgres_url: str) -> None:
    runs: Counter[int] = Counter()

    def job(replica: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            runs[replica] += 1

        return run

    async with replicas(postgres_url, 2) as databases:
        jobs = [PeriodicJobs(db.leadership(Lock.PERIODIC_JOBS, 5), 0.1) for db in databases]
        for replica, periodic in enumerate(jobs):
            periodic.add("tick", 0.02, job(replica))
            periodic.add("other", 0.05, job(10 + replica))
        first = asyncio.create_task(jobs[0].run())
        await until(lambda: runs[0] >= 5 and runs[10] >= 2)
        second = asyncio.create_task(jobs[1].run())
        await asyncio.sleep(0.5)
        assert runs[1] == runs[11] == 0 and not jobs[1].leading
        stopped = time.monotonic()
        first.cancel()  # a clean stop resigns: the other replica takes over at its next check
        with contextlib.suppress(asyncio.CancelledError):
            await first
        before = runs[0]
        await until(lambda: runs[1] >= 3 and runs[11] >= 1)
        assert time.monotonic() - stopped < 2 and runs[0] == before
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await second


async def test_the_draw_mutex_keeps_two_replicas_apart(postgres_url: str) -> None:
    inside: list[int] = []
    overlaps = 0

    async def work(database: Database, replica: int) -> None:
        nonlocal overlaps
        for _ in range(5):
            async with database.mutex(Lock.DRAW):
                inside.append(replica)
                overlaps += len(inside) > 1
                await asyncio.sleep(0.01)
                inside.remove(replica)

    async with replicas(postgres_url, 2) as databases:
        await asyncio.gather(*(work(db, n) for n, db in enumerate(databases)))
    assert overlaps == 0 and inside == []


@pytest.mark.parametrize("replicas_setting", [1, 2, 3])
def test_each_replica_takes_its_share_of_telegrams_limit(replicas_setting: int) -> None:
    from bot.settings import Settings

    settings = Settings(
        webhook_replicas=replicas_setting,
        telegram_max_messages_per_second=30,
        telegram_outbox_messages_per_second=20,
    )
    assert settings.telegram_rate_per_replica * replicas_setting == pytest.approx(30)
    assert settings.telegram_outbox_rate_per_replica * replicas_setting == pytest.approx(20)


@pytest.mark.parametrize(
    ("name", "value"), [("WEBHOOK_REPLICAS", "0"), ("LEADER_CHECK_SECONDS", "0")]
)
def test_replicas_that_cannot_share_are_refused_naming_the_setting(name: str, value: str) -> None:
    from bot.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_a_bad_replica_count_stops_every_command_in_one_line(tmp_path: Path) -> None:
    from tests.test_console import coffeebot

    for command in ("run", "webhook"):
        result = coffeebot(tmp_path, command, env={"WEBHOOK_REPLICAS": "0"})
        assert result.returncode == 2, result.stderr
        assert result.stderr == "coffeebot: WEBHOOK_REPLICAS must be 1 or more\n"
