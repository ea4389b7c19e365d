"""Brings a database to the latest schema: the missing steps, in order, under a lock that makes
several processes starting together on a new database wait for one another."""

from __future__ import annotations

from datetime import UTC, datetime

from storage.database import Database
from storage.migrations import LATEST_VERSION, MIGRATIONS
from storage.ports import NewerSchemaError

_HISTORY = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


async def schema_version(database: Database) -> int:
    await database.run([(_HISTORY, ())])
    rows = await database.fetch("SELECT MAX(version) FROM schema_migrations")
    value = rows[0][0]
    return int(value) if value is not None else 0


async def migrate(database: Database, now: datetime) -> list[str]:
    """Apply the missing migrations in order, each in its own transaction (a savepoint of the
    lock's transaction on SQLite); return what was applied."""
    async with database.exclusive() as locked:
        current = await schema_version(locked)
        if current > LATEST_VERSION:
            raise NewerSchemaError(
                f"the database is at schema version {current}, this bot knows up to "
                f"{LATEST_VERSION}: upgrade the bot rather than run an older one on it"
            )
        applied = []
        # By version, not position: the numbers are kept when steps are merged from branches.
        for migration in (m for m in MIGRATIONS if m.version > current):
            record = (migration.version, migration.description, now.astimezone(UTC).isoformat())
            await locked.run(
                [
                    *((sql, ()) for sql in migration.sql(database.dialect)),
                    ("INSERT INTO schema_migrations VALUES (?, ?, ?)", record),
                ]
            )
            applied.append(f"{migration.version}: {migration.description}")
        return applied
