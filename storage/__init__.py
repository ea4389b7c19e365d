"""Persistence behind small interfaces; the database is chosen by its URL: SQLite (a file, or
memory) or PostgreSQL. `Storage` holds one store per aggregate, all on one Database."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from storage.announcements import AnnouncementStore
from storage.audit_log import AuditLog
from storage.database import Database
from storage.draws import DrawStore
from storage.expenses import ExpenseStore
from storage.meetings import MeetingStore
from storage.outbox import EmailOutbox
from storage.participants import Participants
from storage.reports import Reports
from storage.sqlite import SqliteDatabase
from storage.telegram_outbox import TelegramQueue

SUPPORTED = (
    "sqlite:///relative.db, sqlite:////absolute.db, sqlite:///:memory:"
    " or postgresql://user@host:5432/database"
)


class UnsupportedDatabase(ValueError):
    """DATABASE_URL names a database this version cannot open."""


def sqlite_path(url: str) -> str | None:
    """The SQLite file (or :memory:) a DATABASE_URL names; None for PostgreSQL;
    UnsupportedDatabase otherwise."""
    scheme, separator, rest = url.partition("://")
    if scheme in ("postgresql", "postgres") and separator:
        return None
    if scheme != "sqlite" or not separator or not rest.startswith("/") or rest == "/":
        # Only the scheme is shown: the rest of a server URL may hold a password.
        shown = f"{scheme}://…" if separator else "that value"
        raise UnsupportedDatabase(f"DATABASE_URL {shown} is not supported: use {SUPPORTED}")
    return rest[1:]


def described(url: str) -> str:
    """The database a URL names, fit for a log or a banner: never its password."""
    path = sqlite_path(url)
    if path is not None:
        return path
    parts = urlsplit(url)
    return f"PostgreSQL {parts.path.lstrip('/')} on {parts.hostname}:{parts.port or 5432}"


@dataclass(frozen=True)
class DatabaseOptions:
    busy_timeout_ms: int = 5000
    checkpoint_every_commits: int = 250
    pool_size: int = 10


async def open_database(url: str, options: DatabaseOptions | None = None) -> Database:
    """Open the database a DATABASE_URL names (see SUPPORTED)."""
    chosen = options or DatabaseOptions()
    path = sqlite_path(url)
    if path is None:
        # Imported here: a SQLite deployment never loads the PostgreSQL driver.
        from storage.postgres import PostgresDatabase

        return await PostgresDatabase.open(url, chosen.pool_size)
    return await SqliteDatabase.open(path, chosen.busy_timeout_ms, chosen.checkpoint_every_commits)


@dataclass(frozen=True)
class Storage:
    database: Database
    participants: Participants
    outbox: EmailOutbox
    telegram: TelegramQueue
    draws: DrawStore
    meetings: MeetingStore
    audit: AuditLog
    reports: Reports
    announcements: AnnouncementStore
    expenses: ExpenseStore

    @classmethod
    def on(cls, database: Database) -> Storage:
        return cls(
            database,
            Participants(database),
            EmailOutbox(database),
            TelegramQueue(database),
            DrawStore(database),
            MeetingStore(database),
            AuditLog(database),
            Reports(database),
            AnnouncementStore(database),
            ExpenseStore(database),
        )

    async def close(self) -> None:
        await self.database.close()


async def open_storage(url: str, options: DatabaseOptions | None = None) -> Storage:
    """The stores on the database a DATABASE_URL names, not yet migrated (storage.migrator)."""
    return Storage.on(await open_database(url, options))
