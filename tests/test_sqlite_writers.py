"""Several processes writing one SQLite file: a statement run as its own transaction waits for
the write lock as a BEGIN IMMEDIATE transaction does, within the busy timeout."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from storage import open_database
from storage.migrator import migrate
from tests.conftest import NOW

_WRITER = """
import asyncio, sys
from storage import open_database

async def main(path, first):
    database = await open_database(f"sqlite:///{path}")
    try:
        for n in range(first, first + 300):
            await database.run([("INSERT INTO processed_updates (update_id, processed_at)"
                                 " VALUES (?, '2026-11-26')", (n,))])
            await database.run([("INSERT INTO processed_updates (update_id, processed_at)"
                                 " VALUES (?, '2026-11-26'), (?, '2026-11-26')",
                                 (n + 10**6, n + 2 * 10**6))])
    finally:
        await database.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_single_statements_from_several_processes_all_land(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    database = await open_database(f"sqlite:///{path}")
    try:
        await migrate(database, NOW)
        writers = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", _WRITER, str(path), str(first), stderr=subprocess.PIPE
            )
            for first in (1, 1001, 2001)
        ]
        for writer in writers:
            _, errors = await writer.communicate()
            assert writer.returncode == 0, errors.decode()[-2000:]
        rows = await database.fetch("SELECT COUNT(*) FROM processed_updates")
        assert rows[0][0] == 3 * 300 * 3
    finally:
        await database.close()
