"""Benchmark: the purge over N stored participants, before and after the end of the operation.

Each run stores N confirmed participants in bulk (bench.million's `populate`), with three
signup consents and a sent email each, an email news consent for one in ten, and one in a
hundred left unfinished (no entry) long ago. It then purges twice, as the bot would: before the
end (the unfinished signups), then once the end's days have passed (everyone but the news
contacts). Each purge counts what is due (the dry run: reads) and erases it (one transaction;
on SQLite it runs on the bot's event loop thread, so this is how long the bot stops answering).
It checks each purge did what it claims before printing the medians:

    python -m bench.purge --url sqlite:////tmp/purge.db --participants 200000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.million import populate
from conversations.retention import RetentionPolicy, purge_plan
from storage import Storage, open_storage, sqlite_path
from storage.purge import Purger

ENDS = datetime(2027, 6, 1, tzinfo=UTC)
NEWS_EVERY = 10
UNFINISHED_EVERY = 100
LONG_AGO = "2027-01-01T00:00:00+00:00"


def _erase_file(url: str) -> None:
    path = sqlite_path(url)
    if path:
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)


async def _fill(url: str, participants: int) -> None:
    if sqlite_path(url) is None:
        storage = await open_storage(url)
        tables = await storage.database.tables()
        await storage.database.run([(f"DROP TABLE {name} CASCADE", ()) for name in tables])
        await storage.close()
    await populate(url, participants)
    storage = await open_storage(url)
    try:
        await storage.database.run(
            [
                *(
                    (
                        "INSERT INTO consents (user_id, kind, version, given_at)"
                        f" SELECT user_id, '{kind}', 'fr-v', created_at FROM participants",
                        (),
                    )
                    for kind in ("adult", "processing", "rules")
                ),
                (
                    "INSERT INTO consents (user_id, kind, version, given_at) SELECT user_id,"
                    f" 'news_email', 'fr-n', created_at FROM participants"
                    f" WHERE user_id % {NEWS_EVERY} = 0",
                    (),
                ),
                (
                    "INSERT INTO outbox (idempotency_key, user_id, kind, language, status,"
                    " attempts, next_attempt_at, created_at, sent_at) SELECT 'c:' || user_id,"
                    " user_id, 'confirmation', 'fr', 'sent', 1, created_at, created_at,"
                    " created_at FROM participants",
                    (),
                ),
                (f"DELETE FROM entries WHERE user_id % {UNFINISHED_EVERY} = 1", ()),
                (
                    "UPDATE participants SET completed_at = NULL, updated_at = ?"
                    f" WHERE user_id % {UNFINISHED_EVERY} = 1",
                    (LONG_AGO,),
                ),
            ]
        )
    finally:
        await storage.close()


async def _purge(storage: Storage, at: datetime) -> tuple[float, float, int, int]:
    """The dry run's and the purge's seconds, then the participants and entries left."""
    plan = purge_plan(RetentionPolicy(), ENDS, at)
    purger = Purger(storage.database)
    started = time.perf_counter()
    counted = await purger.count(plan)
    counting = time.perf_counter() - started
    started = time.perf_counter()
    done = await purger.run(plan)
    purging = time.perf_counter() - started
    assert done == counted, "the dry run's counts differ from the run's"
    left = [
        int((await storage.database.fetch(f"SELECT COUNT(*) FROM {name}"))[0][0])
        for name in ("participants", "entries")
    ]
    return counting, purging, left[0], left[1]


async def _once(url: str, participants: int) -> list[float]:
    await _fill(url, participants)
    storage = await open_storage(url)
    try:
        *before, people, entries = await _purge(storage, ENDS - timedelta(days=1))
        unfinished = participants // UNFINISHED_EVERY
        assert (people, entries) == (participants - unfinished,) * 2, (people, entries)
        *after, people, entries = await _purge(storage, ENDS + timedelta(days=91))
        assert (people, entries) == (participants // NEWS_EVERY, 0), (people, entries)
    finally:
        await storage.close()
    return [*before, *after]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the database to fill and purge (erased)")
    parser.add_argument("--participants", type=int, default=200_000, help="people stored")
    parser.add_argument("--runs", type=int, default=3, help="runs, each on a fresh database")
    arguments = parser.parse_args()
    timings = []
    for _ in range(arguments.runs):
        _erase_file(arguments.url)
        timings.append(asyncio.run(_once(arguments.url, arguments.participants)))
    medians = [statistics.median(run[i] for run in timings) for i in range(4)]
    print(
        f"{arguments.participants} participants (1 in {UNFINISHED_EVERY} unfinished, 1 in"
        f" {NEWS_EVERY} with a news consent), medians of {arguments.runs}:\n"
        f"  before the end: dry run {medians[0]:.2f} s, purge {medians[1]:.2f} s\n"
        f"  after the end:  dry run {medians[2]:.2f} s, purge {medians[3]:.2f} s"
    )


if __name__ == "__main__":
    main()
