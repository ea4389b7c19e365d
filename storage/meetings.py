"""The coffee's meeting: when, where, and whether the winners were reminded of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.database import Database
from storage.participants import _parse_time, _time

MEETING = "main"


@dataclass(frozen=True)
class Meeting:
    starts_at: datetime
    details: str
    reminded_at: datetime | None


class MeetingStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def meeting(self) -> Meeting | None:
        rows = await self._database.fetch("SELECT * FROM meetings WHERE name = ?", (MEETING,))
        if not rows:
            return None
        row = rows[0]
        return Meeting(
            datetime.fromisoformat(row["starts_at"]),
            row["details"],
            _parse_time(row["reminded_at"]),
        )

    async def set_meeting(self, starts_at: datetime, details: str, now: datetime) -> None:
        await self._database.run(
            [
                (
                    "INSERT INTO meetings VALUES (?, ?, ?, ?, NULL)"
                    " ON CONFLICT (name) DO UPDATE SET starts_at = excluded.starts_at,"
                    " details = excluded.details, updated_at = excluded.updated_at,"
                    " reminded_at = NULL",
                    (MEETING, _time(starts_at), details, _time(now)),
                )
            ]
        )

    async def mark_reminded(self, now: datetime) -> bool:
        """True for the one caller that marks it; False if it was reminded already."""
        counts = await self._database.run(
            [
                (
                    "UPDATE meetings SET reminded_at = ? WHERE name = ? AND reminded_at IS NULL",
                    (_time(now), MEETING),
                )
            ]
        )
        return counts[0] == 1
