"""The participant store on SQLite through aiosqlite: WAL, foreign keys, a busy timeout.

One connection serves the whole process; a lock keeps one transaction at a time on it, which is
also all SQLite allows for writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
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
        cursor = await self._connection.execute("SELECT MAX(version) FROM schema_migrations")
        row = await cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def migrate(self, now: datetime) -> list[str]:
        """Apply the missing migrations in order, each in its own transaction."""
        applied = []
        async with self._lock:
            current = await self._schema_version()
            if current > LATEST_VERSION:
                raise NewerSchemaError(
                    f"the database is at schema version {current}, this bot knows up to "
                    f"{LATEST_VERSION}: upgrade the bot rather than run an older one on it"
                )
            for migration in MIGRATIONS[current:]:
                await self._connection.execute("BEGIN IMMEDIATE")
                try:
                    for statement in migration.statements:
                        await self._connection.execute(statement)
                    await self._connection.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        (migration.version, migration.description, _time(now)),
                    )
                except BaseException:
                    await self._connection.execute("ROLLBACK")
                    raise
                await self._connection.execute("COMMIT")
                applied.append(f"{migration.version}: {migration.description}")
        return applied

    async def load(self, user_id: int) -> Participant | None:
        async with self._lock:
            cursor = await self._connection.execute(_SELECT, (user_id,))
            row = await cursor.fetchone()
            if row is None:
                return None
            friends = await self._connection.execute_fetchall(
                "SELECT email FROM friends WHERE user_id = ? ORDER BY position", (user_id,)
            )
            consents = await self._connection.execute_fetchall(
                "SELECT kind, version, given_at FROM consents WHERE user_id = ?"
                " ORDER BY given_at, kind",
                (user_id,),
            )
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
        version = expected_version + 1
        async with self._lock:
            await self._connection.execute("BEGIN IMMEDIATE")
            try:
                if update_id is not None:
                    await self._insert_processed(update_id, now)
                if any(isinstance(effect, ErasePersonalData) for effect in effects):
                    await self._erase(state.user_id, expected_version)
                    version = 0
                else:
                    await self._write(state, expected_version, version, now)
                    for effect in effects:
                        if isinstance(effect, RecordConsent):
                            await self._connection.execute(
                                "INSERT INTO consents VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                (
                                    state.user_id,
                                    str(effect.consent.kind),
                                    effect.consent.version,
                                    _time(effect.consent.given_at),
                                ),
                            )
            except sqlite3.IntegrityError as error:
                await self._connection.execute("ROLLBACK")
                raise _conflict(error) from error
            except BaseException:
                await self._connection.execute("ROLLBACK")
                raise
            await self._connection.execute("COMMIT")
        return version

    async def _insert_processed(self, update_id: int, now: datetime) -> None:
        await self._connection.execute(
            "INSERT INTO processed_updates VALUES (?, ?)", (update_id, _time(now))
        )

    async def _write(
        self, state: Participant, expected_version: int, version: int, now: datetime
    ) -> None:
        row = _row(state, version, now)
        if expected_version == 0:
            await self._connection.execute(_INSERT, row)
        else:
            cursor = await self._connection.execute(
                _UPDATE, (*row[1:], state.user_id, expected_version)
            )
            if cursor.rowcount != 1:
                raise StaleWrite()
        await self._connection.execute("DELETE FROM friends WHERE user_id = ?", (state.user_id,))
        await self._connection.executemany(
            "INSERT INTO friends VALUES (?, ?, ?)",
            [(state.user_id, position, email) for position, email in enumerate(state.friends)],
        )

    async def _erase(self, user_id: int, expected_version: int) -> None:
        cursor = await self._connection.execute(
            "SELECT completed_at, version FROM participants WHERE user_id = ?", (user_id,)
        )
        row = await cursor.fetchone()
        if row is None:
            return
        if row["version"] != expected_version:
            raise StaleWrite()
        counter = "erased.complete" if row["completed_at"] else "erased.incomplete"
        await self._connection.execute(
            "INSERT INTO anonymous_counts VALUES (?, 1)"
            " ON CONFLICT (name) DO UPDATE SET value = anonymous_counts.value + 1",
            (counter,),
        )
        await self._connection.execute("DELETE FROM participants WHERE user_id = ?", (user_id,))

    async def mark_processed(self, update_id: int, now: datetime) -> None:
        async with self._lock:
            try:
                await self._insert_processed(update_id, now)
            except sqlite3.IntegrityError as error:
                raise _conflict(error) from error

    async def forget_processed_before(self, moment: datetime) -> int:
        async with self._lock:
            cursor = await self._connection.execute(
                "DELETE FROM processed_updates WHERE processed_at < ?", (_time(moment),)
            )
            return cursor.rowcount

    async def export(self, user_id: int) -> dict[str, Any]:
        async with self._lock:
            cursor = await self._connection.execute(_SELECT, (user_id,))
            row = await cursor.fetchone()
            friends = await self._connection.execute_fetchall(
                "SELECT email FROM friends WHERE user_id = ? ORDER BY position", (user_id,)
            )
            consents = await self._connection.execute_fetchall(
                "SELECT kind, version, given_at FROM consents WHERE user_id = ?"
                " ORDER BY given_at, kind",
                (user_id,),
            )
        return {
            "telegram_user_id": user_id,
            "signup": dict(row) if row else None,
            "friends": [friend[0] for friend in friends],
            "consents": [dict(consent) for consent in consents],
        }

    async def count(self, name: str) -> int:
        async with self._lock:
            cursor = await self._connection.execute(
                "SELECT value FROM anonymous_counts WHERE name = ?", (name,)
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0
