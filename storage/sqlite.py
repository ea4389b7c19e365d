"""The participant store on SQLite through aiosqlite: WAL, foreign keys, a busy timeout.

One connection serves the whole process; its statements run one after another on aiosqlite's
thread. A lock keeps one transaction at a time on it, which is also all SQLite allows for
writes. A transaction's statements are queued together (`_pipeline`), so that the thread runs
them back to back instead of waiting for the event loop between statements: that wait, with the
lock held, is what limited throughput when the loop was busy.

Reads take no lock: callers serialise each user's steps, so no transaction open on the
connection touches the rows a read asks for.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from conversations.model import (
    Area,
    Consent,
    ConsentKind,
    Effect,
    ErasePersonalData,
    Participant,
    RecordConsent,
    Step,
)
from storage.migrations import LATEST_VERSION, MIGRATIONS
from storage.ports import ContactTaken, DuplicateUpdate, NewerSchemaError, StaleWrite

_COLUMNS = (
    "user_id", "version", "language", "step", "paused", "editing", "consent_ticks",
    "first_name", "last_name", "phone", "email", "pending_email", "postcode", "departement",
    "area", "question", "referrer", "created_at", "updated_at", "completed_at",
)  # fmt: skip
_INSERT = (
    f"INSERT INTO participants ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)
_UPDATE = (
    f"UPDATE participants SET {', '.join(f'{name} = ?' for name in _COLUMNS[1:])}"
    " WHERE user_id = ? AND version = ?"
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM participants WHERE user_id = ?"
_FRIENDS = "SELECT email FROM friends WHERE user_id = ? ORDER BY position"
_CONSENTS = "SELECT kind, version, given_at FROM consents WHERE user_id = ? ORDER BY given_at, kind"
_PROCESSED = "INSERT INTO processed_updates VALUES (?, ?)"
_ERASURE_COUNT = (
    "INSERT INTO anonymous_counts (name, value)"
    " SELECT CASE WHEN completed_at IS NULL THEN 'erased.incomplete' ELSE 'erased.complete' END, 1"
    " FROM participants WHERE user_id = ? AND version = ?"
    " ON CONFLICT (name) DO UPDATE SET value = anonymous_counts.value + 1"
)

Statement = tuple[str, Sequence[Any]]


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _row(state: Participant, version: int, now: datetime) -> tuple[Any, ...]:
    return (
        state.user_id, version, state.language, str(state.step), int(state.paused),
        int(state.editing), ",".join(sorted(state.consent_ticks)), state.first_name,
        state.last_name, state.phone, state.email, state.pending_email, state.postcode,
        state.departement, state.area and str(state.area), state.question, state.referrer,
        _time(state.created_at), _time(now), _time(state.completed_at),
    )  # fmt: skip


def _conflict(error: sqlite3.IntegrityError) -> Exception:
    message = str(error)
    if "processed_updates" in message:
        return DuplicateUpdate()
    if "participants.phone" in message or "participants_phone_key" in message:
        return ContactTaken("phone")
    if "participants_email_key" in message:
        return ContactTaken("email")
    if "participants.user_id" in message:
        return StaleWrite()
    return error


class SqliteStore:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str, busy_timeout_ms: int = 5000) -> SqliteStore:
        connection = await aiosqlite.connect(path, isolation_level=None)
        connection.row_factory = aiosqlite.Row
        if path != ":memory:":
            await connection.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a committed step survives the process being killed;
        # only a power cut can lose the last few.
        await connection.execute("PRAGMA synchronous = NORMAL")
        await connection.execute("PRAGMA foreign_keys = ON")
        await connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        return cls(connection)

    async def close(self) -> None:
        await self._connection.close()

    async def schema_version(self) -> int:
        async with self._lock:
            return await self._schema_version()

    async def _schema_version(self) -> int:
        await self._connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        rows = await self._connection.execute_fetchall("SELECT MAX(version) FROM schema_migrations")
        value = next(iter(rows))[0]
        return int(value) if value is not None else 0

    async def migrate(self, now: datetime) -> list[str]:
        """Apply the missing migrations in order, each in its own transaction."""
        async with self._lock:
            current = await self._schema_version()
        if current > LATEST_VERSION:
            raise NewerSchemaError(
                f"the database is at schema version {current}, this bot knows up to "
                f"{LATEST_VERSION}: upgrade the bot rather than run an older one on it"
            )
        applied = []
        for migration in MIGRATIONS[current:]:
            record = (migration.version, migration.description, _time(now))
            statements: list[Statement] = [(sql, ()) for sql in migration.statements]
            await self._transaction(
                [*statements, ("INSERT INTO schema_migrations VALUES (?, ?, ?)", record)]
            )
            applied.append(f"{migration.version}: {migration.description}")
        return applied

    async def load(self, user_id: int) -> Participant | None:
        rows, friends, consents = await self._pipeline(
            self._connection.execute_fetchall(_SELECT, (user_id,)),
            self._connection.execute_fetchall(_FRIENDS, (user_id,)),
            self._connection.execute_fetchall(_CONSENTS, (user_id,)),
        )
        if not rows:
            return None
        row = rows[0]
        return Participant(
            user_id=row["user_id"],
            language=row["language"],
            created_at=datetime.fromisoformat(row["created_at"]),
            step=Step(row["step"]),
            version=row["version"],
            paused=bool(row["paused"]),
            editing=bool(row["editing"]),
            consent_ticks=frozenset(
                ConsentKind(tick) for tick in row["consent_ticks"].split(",") if tick
            ),
            consents=tuple(
                Consent(ConsentKind(kind), version, datetime.fromisoformat(given_at))
                for kind, version, given_at in consents
            ),
            first_name=row["first_name"],
            last_name=row["last_name"],
            phone=row["phone"],
            email=row["email"],
            pending_email=row["pending_email"],
            postcode=row["postcode"],
            departement=row["departement"],
            area=Area(row["area"]) if row["area"] else None,
            friends=tuple(friend[0] for friend in friends),
            question=row["question"],
            referrer=row["referrer"],
            completed_at=_parse_time(row["completed_at"]),
        )

    async def save(
        self,
        state: Participant,
        expected_version: int,
        effects: Sequence[Effect],
        update_id: int | None,
    ) -> int:
        now = datetime.now(UTC)
        statements: list[Statement] = []
        if update_id is not None:
            statements.append((_PROCESSED, (update_id, _time(now))))
        if any(isinstance(effect, ErasePersonalData) for effect in effects):
            # Friends and consents go with the participant (ON DELETE CASCADE).
            key = (state.user_id, expected_version)
            statements += [
                (_ERASURE_COUNT, key),
                ("DELETE FROM participants WHERE user_id = ? AND version = ?", key),
            ]
            await self._transaction(
                statements, guarded=len(statements) - 1 if expected_version else None
            )
            return 0
        version = expected_version + 1
        row = _row(state, version, now)
        if expected_version == 0:
            statements.append((_INSERT, row))
        else:
            statements.append((_UPDATE, (*row[1:], state.user_id, expected_version)))
        guarded = len(statements) - 1
        statements.append(("DELETE FROM friends WHERE user_id = ?", (state.user_id,)))
        statements += [
            ("INSERT INTO friends VALUES (?, ?, ?)", (state.user_id, position, email))
            for position, email in enumerate(state.friends)
        ]
        statements += [
            (
                "INSERT INTO consents VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (state.user_id, str(e.consent.kind), e.consent.version, _time(e.consent.given_at)),
            )
            for e in effects
            if isinstance(e, RecordConsent)
        ]
        await self._transaction(statements, guarded)
        return version

    async def mark_processed(self, update_id: int, now: datetime) -> None:
        await self._transaction([(_PROCESSED, (update_id, _time(now)))])

    async def _transaction(
        self, statements: Sequence[Statement], guarded: int | None = None
    ) -> None:
        """Run statements in one transaction; the `guarded` one must change exactly one row."""
        async with self._lock:
            try:
                begin, *results = await self._pipeline(
                    self._connection.execute("BEGIN IMMEDIATE"),
                    *(self._connection.execute(sql, parameters) for sql, parameters in statements),
                )
                for result in (begin, *results):
                    if isinstance(result, sqlite3.IntegrityError):
                        raise _conflict(result) from result
                    if isinstance(result, BaseException):
                        raise result
                if guarded is not None and results[guarded].rowcount != 1:
                    raise StaleWrite()
            except BaseException:
                if self._connection.in_transaction:
                    await self._connection.execute("ROLLBACK")
                raise
            await self._connection.execute("COMMIT")

    async def _pipeline(self, *calls: Awaitable[Any]) -> list[Any]:
        """Queue calls on the connection's thread in this order and wait for them together."""
        return await asyncio.gather(*calls, return_exceptions=True)

    async def forget_processed_before(self, moment: datetime) -> int:
        async with self._lock:
            cursor = await self._connection.execute(
                "DELETE FROM processed_updates WHERE processed_at < ?", (_time(moment),)
            )
            return cursor.rowcount

    async def export(self, user_id: int) -> dict[str, Any]:
        rows, friends, consents = await self._pipeline(
            self._connection.execute_fetchall(_SELECT, (user_id,)),
            self._connection.execute_fetchall(_FRIENDS, (user_id,)),
            self._connection.execute_fetchall(_CONSENTS, (user_id,)),
        )
        return {
            "telegram_user_id": user_id,
            "signup": dict(rows[0]) if rows else None,
            "friends": [friend[0] for friend in friends],
            "consents": [dict(consent) for consent in consents],
        }

    async def count(self, name: str) -> int:
        rows = await self._connection.execute_fetchall(
            "SELECT value FROM anonymous_counts WHERE name = ?", (name,)
        )
        return int(rows[0][0]) if rows else 0
