"""What the admin tools keep, on the participant store's SQLite connection: the draw and its
places, the meeting, the audit log. Each change of the draw's status is guarded by the status it
comes from, so that two admins tapping at once make one draw."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conversations.model import QueueEmail
from storage.ports import StaleWrite
from storage.sqlite import SqliteStore, Statement, _parse_time, _time

DRAW = "main"


@dataclass(frozen=True)
class DrawRecord:
    status: str  # committed, pending, done
    seed: str | None
    commitment: str | None
    winners: int | None
    reserves: int | None
    tickets: tuple[str, ...]
    tickets_sha256: str | None
    requested_by: int | None
    certificate: dict[str, Any] | None


@dataclass(frozen=True)
class Place:
    ticket: str
    rank: int
    role: str  # winner, reserve
    status: str  # waiting, notified, accepted, declined, expired, replaced
    user_id: int | None
    deadline: datetime | None


@dataclass(frozen=True)
class Meeting:
    starts_at: datetime
    details: str
    reminded_at: datetime | None


class SqliteAdminStore:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def _guarded(self, statements: list[Statement], guarded: int = 0) -> bool:
        try:
            await self._store.write(statements, guarded)
        except StaleWrite:
            return False
        return True

    async def draw(self) -> DrawRecord | None:
        rows = await self._store.fetch("SELECT * FROM draws WHERE name = ?", (DRAW,))
        if not rows:
            return None
        row = rows[0]
        return DrawRecord(
            status=row["status"],
            seed=row["seed"],
            commitment=row["commitment"],
            winners=row["winners"],
            reserves=row["reserves"],
            tickets=tuple(row["tickets"].split()) if row["tickets"] else (),
            tickets_sha256=row["tickets_sha256"],
            requested_by=row["requested_by"],
            certificate=json.loads(row["certificate"]) if row["certificate"] else None,
        )

    async def commit_seed(self, seed: str, commitment: str, now: datetime) -> bool:
        """Keep a seed secret until the draw, having published its hash; only before any draw."""
        return await self._guarded(
            [
                (
                    "INSERT INTO draws (name, status, seed, commitment, created_at, updated_at)"
                    " VALUES (?, 'committed', ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                    (DRAW, seed, commitment, _time(now), _time(now)),
                )
            ]
        )

    async def prepare(
        self,
        tickets: list[str],
        tickets_sha256: str,
        winners: int,
        reserves: int,
        admin_id: int,
        now: datetime,
    ) -> bool:
        """Freeze the tickets of a draw awaiting confirmation, unless one is pending or done."""
        values = (
            " ".join(sorted(tickets)),
            tickets_sha256,
            winners,
            reserves,
            admin_id,
            _time(now),
        )
        after_commitment = await self._guarded(
            [
                (
                    "UPDATE draws SET status = 'pending', tickets = ?, tickets_sha256 = ?,"
                    " winners = ?, reserves = ?, requested_by = ?, updated_at = ?"
                    " WHERE name = ? AND status = 'committed'",
                    (*values, DRAW),
                )
            ]
        )
        if after_commitment:
            return True
        return await self._guarded(
            [
                (
                    "INSERT INTO draws (name, status, tickets, tickets_sha256, winners, reserves,"
                    " requested_by, created_at, updated_at)"
                    " VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (name) DO NOTHING",
                    (DRAW, *values, _time(now)),
                )
            ]
        )

    async def cancel(self, now: datetime) -> bool:
        """Drop a pending draw; a committed seed stays committed for the next attempt."""
        record = await self.draw()
        if record is None or record.status != "pending":
            return False
        statement: Statement
        if record.commitment:
            statement = (
                "UPDATE draws SET status = 'committed', tickets = NULL, tickets_sha256 = NULL,"
                " updated_at = ? WHERE name = ? AND status = 'pending'",
                (_time(now), DRAW),
            )
        else:
            statement = ("DELETE FROM draws WHERE name = ? AND status = 'pending'", (DRAW,))
        return await self._guarded([statement])

    async def finish(self, certificate: dict[str, Any], places: list[Place], now: datetime) -> bool:
        """Record the result; refused unless the draw is still pending (one draw, once)."""
        statements: list[Statement] = [
            (
                "UPDATE draws SET status = 'done', seed = ?, certificate = ?, updated_at = ?"
                " WHERE name = ? AND status = 'pending'",
                (certificate["seed"], json.dumps(certificate), _time(now), DRAW),
            )
        ]
        statements += [
            (
                "INSERT INTO draw_places VALUES (?, ?, ?, ?, ?, ?, ?)",
                (p.ticket, p.rank, p.role, p.status, p.user_id, _time(p.deadline), _time(now)),
            )
            for p in places
        ]
        return await self._guarded(statements)

    async def places(self) -> list[Place]:
        rows = await self._store.fetch("SELECT * FROM draw_places ORDER BY rank")
        return [
            Place(
                r["ticket"],
                r["rank"],
                r["role"],
                r["status"],
                r["user_id"],
                _parse_time(r["deadline"]),
            )
            for r in rows
        ]

    async def update_place(
        self,
        place: Place,
        status: str,
        now: datetime,
        role: str | None = None,
        deadline: datetime | None = None,
    ) -> bool:
        """Change a place, unless someone else changed it since it was read."""
        return await self._guarded(
            [
                (
                    "UPDATE draw_places SET status = ?, role = ?, deadline = ?, updated_at = ?"
                    " WHERE ticket = ? AND status = ? AND role = ?",
                    (status, role or place.role, _time(deadline), _time(now), place.ticket,
                     place.status, place.role),
                )
            ]
        )  # fmt: skip

    async def exclude(self, ticket: str, reason: str) -> bool:
        # A person's own step never writes the exclusion, so no version guard is needed.
        return await self._guarded(
            [("UPDATE entries SET excluded_reason = ? WHERE ticket = ?", (reason, ticket))]
        )

    async def meeting(self) -> Meeting | None:
        rows = await self._store.fetch("SELECT * FROM meetings WHERE name = ?", (DRAW,))
        if not rows:
            return None
        row = rows[0]
        return Meeting(
            datetime.fromisoformat(row["starts_at"]),
            row["details"],
            _parse_time(row["reminded_at"]),
        )

    async def set_meeting(self, starts_at: datetime, details: str, now: datetime) -> None:
        await self._store.write(
            [
                (
                    "INSERT INTO meetings VALUES (?, ?, ?, ?, NULL)"
                    " ON CONFLICT (name) DO UPDATE SET starts_at = excluded.starts_at,"
                    " details = excluded.details, updated_at = excluded.updated_at,"
                    " reminded_at = NULL",
                    (DRAW, _time(starts_at), details, _time(now)),
                )
            ]
        )

    async def mark_reminded(self, now: datetime) -> bool:
        return await self._guarded(
            [
                (
                    "UPDATE meetings SET reminded_at = ? WHERE name = ? AND reminded_at IS NULL",
                    (_time(now), DRAW),
                )
            ]
        )

    async def log(self, admin_id: int, action: str, details: str, now: datetime) -> None:
        await self._store.write(
            [("INSERT INTO audit_log VALUES (?, ?, ?, ?)", (_time(now), admin_id, action, details))]
        )

    async def journal(self, limit: int) -> list[tuple[datetime, int, str, str]]:
        rows = await self._store.fetch(
            "SELECT at, admin_id, action, details FROM audit_log ORDER BY at DESC LIMIT ?", (limit,)
        )
        return [(datetime.fromisoformat(r[0]), r[1], r[2], r[3]) for r in rows]

    async def queue_email(self, email: QueueEmail, user_id: int, now: datetime) -> None:
        await self._store.write(self._store.effect_statements(user_id, email, now))
