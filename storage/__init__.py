"""Persistence behind small interfaces; the database is chosen by its URL."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from storage.sqlite import SqliteStore

SUPPORTED = "sqlite:///relative.db, sqlite:////absolute.db or sqlite:///:memory:"


class UnsupportedDatabase(ValueError):
    """DATABASE_URL names a database this version cannot open."""


def sqlite_path(url: str) -> str:
    """The SQLite file (or :memory:) a DATABASE_URL names; UnsupportedDatabase otherwise."""
    scheme, separator, rest = url.partition("://")
    if scheme != "sqlite" or not separator or not rest.startswith("/") or rest == "/":
        # Only the scheme is shown: the rest of a server URL may hold a password.
        shown = f"{scheme}://…" if separator else "that value"
        raise UnsupportedDatabase(
            f"DATABASE_URL {shown} is not supported: use {SUPPORTED}"
            " (PostgreSQL is planned behind the same interface, not available yet)"
        )
    return rest[1:]


async def open_store(
    url: str, busy_timeout_ms: int = 5000, checkpoint_every_commits: int = 250
) -> SqliteStore:
    """Open the store a DATABASE_URL names (see SUPPORTED)."""
    path = sqlite_path(url)
    if path != ":memory:":
        # Switching to WAL needs the file's lock: wait for it here, as long as the busy timeout
        # says, and fail with the connection closed. (Done first by SqliteStore.open, before its
        # busy timeout is set, a lock held elsewhere fails at once and leaves the connection's
        # thread running, so the process never exits.) Blocking, but only at start.
        with closing(sqlite3.connect(path, timeout=busy_timeout_ms / 1000)) as probe:
            probe.execute("PRAGMA journal_mode = WAL")
    return await SqliteStore.open(path, busy_timeout_ms, checkpoint_every_commits)
