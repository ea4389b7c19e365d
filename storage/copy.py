"""Moves a whole campaign from one database to another (SQLite to PostgreSQL, say): every
table, rows streamed in batches, counts checked at the end. The target must be empty."""

from __future__ import annotations

from datetime import datetime

from storage import open_database
from storage.database import Database
from storage.migrator import migrate
from storage.participants import legacy_secret_key

# Parents before the tables that refer to them.
TABLES = (
    "participants", "friends", "consents", "entries", "processed_updates", "anonymous_counts",
    "outbox", "address_hashes", "draws", "draw_places", "meetings", "audit_log",
    "operation", "telegram_outbox", "draw_addenda", "quota_counts", "secret_key_check",
    "announcements", "telegram_blocked",
    "expenses", "expense_receipts", "expense_payments",
)  # fmt: skip
# Rows written per transaction into the target.
BATCH_ROWS = 1000


class CopyRefused(Exception):
    """The copy cannot be made: the target holds data, or the counts differ afterwards."""


async def _count(database: Database, table: str) -> int:
    rows = await database.fetch(f"SELECT COUNT(*) FROM {table}")
    return int(rows[0][0])


async def copy_database(source_url: str, target_url: str, now: datetime) -> dict[str, int]:
    """Copy every table; return each table's row count, the same on both sides."""
    source = await open_database(source_url)
    try:
        target = await open_database(target_url)
        try:
            if await legacy_secret_key(source) is not None:
                # Migrating it here would drop the key with its table (migration 10).
                raise CopyRefused(
                    "the source still keeps its secret key inside (made before schema version"
                    " 10): run `coffeebot migrate` on it first, which moves the key to its key"
                    " file, then copy (and keep that key file for the target)"
                )
            await migrate(source, now)
            await migrate(target, now)
            return await _copy(source, target)
        finally:
            await target.close()
    finally:
        await source.close()


async def _copy(source: Database, target: Database) -> dict[str, int]:
    tables = await source.tables()
    missing = set(tables) - set(TABLES) - {"schema_migrations"}
    if missing:
        raise CopyRefused(f"tables this version cannot copy: {', '.join(sorted(missing))}")
    for table in TABLES:
        if await _count(target, table):
            raise CopyRefused(f"the target is not empty (table {table} has rows): nothing copied")
    counts = {}
    for table in TABLES:
        columns = [name for name, _, _ in tables[table]]
        insert = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        )
        batch: list[tuple[object, ...]] = []
        async for row in source.stream(f"SELECT {', '.join(columns)} FROM {table}"):
            batch.append(tuple(row))
            if len(batch) == BATCH_ROWS:
                await target.run([(insert, values) for values in batch])
                batch = []
        if batch:
            await target.run([(insert, values) for values in batch])
        counts[table] = await _count(source, table)
        copied = await _count(target, table)
        if copied != counts[table]:
            raise CopyRefused(f"{table}: {counts[table]} rows in the source, {copied} copied")
    return counts
