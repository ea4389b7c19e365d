"""Persistence behind small interfaces; the database is chosen by its URL."""

from __future__ import annotations

from storage.sqlite import SqliteStore


async def open_store(
    url: str, busy_timeout_ms: int = 5000, checkpoint_every_commits: int = 250
) -> SqliteStore:
    """Open the store a DATABASE_URL names: sqlite:///relative.db, sqlite:////abs.db,
    sqlite:///:memory:."""
    scheme, separator, rest = url.partition("://")
    if scheme != "sqlite" or not separator or not rest.startswith("/"):
        raise ValueError(
            f"DATABASE_URL {url!r} is not supported: use sqlite:///path/to/file.db"
            " (PostgreSQL is planned behind the same interface)"
        )
    return await SqliteStore.open(rest[1:], busy_timeout_ms, checkpoint_every_commits)
