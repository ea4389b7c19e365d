"""What the admin tools keep, on the participant store's SQLite connection: the draw and its
places and addenda, the meeting, the audit log as a hash chain. Each change of the draw's status
is guarded by the status it comes from, so that two admins tapping at once make one draw."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from conversations.draw import ExclusionReason, why_ineligible
from conversations.ledger import GENESIS, audit_entry, record_hash
from conversations.model import Area, QueueEmail, Travel
from conversations.phases import OperationState
from storage.ports import StaleWrite
from storage.sqlite import SqliteStore, Statement, _parse_time, _time

DRAW = "main"


class DrawStatus(StrEnum):
    COMMITTED = "committed"  # a secret is chosen, its hash published; no list yet
    PENDING = "pending"  # the list is frozen, awaiting an admin's confirmation
    CONFIRMED = "confirmed"  # confirmed, awaiting the beacon
    DONE = "done"


# Once frozen, the list and the exclusions no longer change.
FROZEN = (DrawStatus.PENDING, DrawStatus.CONFIRMED, DrawStatus.DONE)


@dataclass(frozen=True)
class DrawRecord:
    status: DrawStatus
    secret: str | None
    commitment: str | None
    winners: int | None
    reserves: int | None
    tickets: tuple[str, ...]
    tickets_sha256: str | None
    requested_by: int | None
    confirmed_by: int | None
    frozen_at: datetime | None
    beacon: dict[str, Any] | None
    excluded: tuple[tuple[str, str], ...]
    certificate: dict[str, Any] | None


@dataclass(frozen=True)
class Place:
    ticket: str
    rank: int
    role: str  # winner, reserve
    status: str  # waiting, notified, accepted, declined, expired, replaced
    user_id: int | None
    deadline: datetime | None
    # The entry's area class and what it entitled to when the draw was made: later edits of the
    # postcode or of the settings change neither.
    area: Area | None = None
    travel: Travel | None = None


@dataclass(frozen=True)
class Meeting:
    starts_at: datetime
    details: str
    reminded_at: datetime | None


@dataclass(frozen=True)
class Entries:
    """What the draw reads from the signups: the eligible tickets, and the excluded ones."""

    tickets: list[str]
    excluded: list[tuple[str, str]]
    owners: dict[str, int]
    areas: dict[str, Area]


_NOT_FROZEN = (
    "NOT EXISTS (SELECT 1 FROM draws WHERE name = 'main'"
    " AND status IN ('pending', 'confirmed', 'done'))"
)


_CANCEL_INVITATIONS: Statement = (
    "UPDATE outbox SET status = 'cancelled', recipient = NULL, params = NULL"
    " WHERE kind = 'invitation' AND status = 'pending'",
    (),
)


def _answered(place: Place, status: str) -> list[Statement]:
    """A winner who answered, or whose place ended, needs no reminder of the deadline."""
    if place.status != "notified" or status == "notified":
        return []
    return [
        (
            "UPDATE telegram_outbox SET status = 'cancelled', params = NULL"
            " WHERE idempotency_key = ? AND status = 'pending'",
            (f"deadline-reminder:{place.ticket}",),
        )
    ]


class SqliteAdminStore:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def _guarded(self, statements: list[Statement], guarded: int = 0) -> bool:
        try:
            await self._store.write(statements, guarded)
        except StaleWrite:
            return False
        return True

    async def entries(self) -> Entries:
        """The one place the draw gets its tickets from: swap it to read another source."""
        people = await self._store.all_participants()
        entered = [(p, p.entry) for p in people if p.entry is not None and p.entry.ticket]
        # Reasons typed freely before categories existed may name people: never made public.
        categories = set(ExclusionReason)
        excluded = [
            (e.ticket, e.excluded_reason if e.excluded_reason in categories else "other")
            for _, e in entered
            if e.ticket and e.excluded_reason
        ]
        return Entries(
            sorted(e.ticket for p, e in entered if e.ticket and why_ineligible(p) is None),
            sorted(excluded),
            {e.ticket: p.user_id for p, e in entered if e.ticket},
            {e.ticket: e.area for _, e in entered if e.ticket},
        )

    async def operation(self) -> OperationState:
        return await self._store.operation()

    async def draw(self) -> DrawRecord | None:
        rows = await self._store.fetch("SELECT * FROM draws WHERE name = ?", (DRAW,))
        if not rows:
            return None
        row = rows[0]
        return DrawRecord(
            status=DrawStatus(row["status"]),
            # The column is named after version 1's seed; it holds the committed secret.
            secret=row["seed"],
            commitment=row["commitment"],
            winners=row["winners"],
            reserves=row["reserves"],
            tickets=tuple(row["tickets"].split()) if row["tickets"] else (),
            tickets_sha256=row["tickets_sha256"],
            requested_by=row["requested_by"],
            confirmed_by=row["confirmed_by"],
            frozen_at=_parse_time(row["frozen_at"]),
            beacon=json.loads(row["beacon"]) if row["beacon"] else None,
            excluded=tuple((t, r) for t, r in json.loads(row["excluded"] or "[]")),
            certificate=json.loads(row["certificate"]) if row["certificate"] else None,
        )

    async def commit_secret(self, secret: str, commitment: str, now: datetime) -> bool:
        """Keep a secret for the draw, having published its hash; only before any draw."""
        return await self._guarded(
            [
                (
                    "INSERT INTO draws (name, status, seed, commitment, created_at, updated_at)"
                    " VALUES (?, 'committed', ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                    (DRAW, secret, commitment, _time(now), _time(now)),
                )
            ]
        )

    async def freeze(
        self,
        entries: Entries,
        tickets_sha256: str,
        places: tuple[int, int],
        admin_id: int,
        beacon: dict[str, Any],
        now: datetime,
    ) -> bool:
        """Freeze the list of a draw whose secret is committed, unless one is frozen already."""
        return await self._guarded(
            [
                (
                    "UPDATE draws SET status = 'pending', tickets = ?, tickets_sha256 = ?,"
                    " winners = ?, reserves = ?, requested_by = ?, frozen_at = ?, beacon = ?,"
                    " excluded = ?, updated_at = ? WHERE name = ? AND status = 'committed'",
                    (
                        " ".join(entries.tickets), tickets_sha256, *places, admin_id, _time(now),
                        json.dumps(beacon), json.dumps(entries.excluded), _time(now), DRAW,
                    ),
                ),
                # Freezing the list closes entries, for good, if they were still open; invitations
                # to take part that have not left are dropped.
                (
                    "INSERT INTO operation (name, entries_closed_at) VALUES ('main', ?)"
                    " ON CONFLICT (name) DO NOTHING",
                    (_time(now),),
                ),
                _CANCEL_INVITATIONS,
            ]
        )  # fmt: skip

    async def unfreeze(self, now: datetime) -> bool:
        """Drop a frozen list not yet confirmed; the committed secret stays for the next one."""
        return await self._guarded(
            [
                (
                    "UPDATE draws SET status = 'committed', tickets = NULL, tickets_sha256 = NULL,"
                    " frozen_at = NULL, beacon = NULL, excluded = NULL, requested_by = NULL,"
                    " updated_at = ? WHERE name = ? AND status = 'pending'",
                    (_time(now), DRAW),
                )
            ]
        )

    async def confirm(self, admin_id: int, now: datetime) -> bool:
        return await self._guarded(
            [
                (
                    "UPDATE draws SET status = 'confirmed', confirmed_by = ?, updated_at = ?"
                    " WHERE name = ? AND status = 'pending'",
                    (admin_id, _time(now), DRAW),
                )
            ]
        )

    async def set_beacon(
        self, before: dict[str, Any], after: dict[str, Any], now: datetime
    ) -> bool:
        """Change the beacon's record, unless someone else changed it since it was read."""
        return await self._guarded(
            [
                (
                    "UPDATE draws SET beacon = ?, updated_at = ? WHERE name = ? AND beacon = ?"
                    " AND status IN ('pending', 'confirmed')",
                    (json.dumps(after), _time(now), DRAW, json.dumps(before)),
                )
            ]
        )

    async def finish(
        self,
        certificate: dict[str, Any],
        places: list[Place],
        now: datetime,
        announcements: list[Statement],
    ) -> bool:
        """Record the result with what each entrant is to be told, in one transaction; refused
        unless the draw is confirmed (one draw, once)."""
        statements: list[Statement] = [
            (
                "UPDATE draws SET status = 'done', certificate = ?, updated_at = ?"
                " WHERE name = ? AND status = 'confirmed'",
                (json.dumps(certificate), _time(now), DRAW),
            )
        ]
        statements += [
            (
                "INSERT INTO draw_places (ticket, rank, role, status, user_id, deadline,"
                " updated_at, area, travel) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    p.ticket,
                    p.rank,
                    p.role,
                    p.status,
                    p.user_id,
                    _time(p.deadline),
                    _time(now),
                    p.area and str(p.area),
                    p.travel and str(p.travel),
                ),
            )
            for p in places
        ]
        return await self._guarded([*statements, *announcements])

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
                Area(r["area"]) if r["area"] else None,
                Travel(r["travel"]) if r["travel"] else None,
            )
            for r in rows
        ]

    def _place_change(
        self,
        place: Place,
        status: str,
        now: datetime,
        role: str | None = None,
        deadline: datetime | None = None,
    ) -> Statement:
        return (
            "UPDATE draw_places SET status = ?, role = ?, deadline = ?, updated_at = ?"
            " WHERE ticket = ? AND status = ? AND role = ?",
            (status, role or place.role, _time(deadline), _time(now), place.ticket, place.status,
             place.role),
        )  # fmt: skip

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
            [self._place_change(place, status, now, role, deadline), *_answered(place, status)]
        )

    async def replace_winner(
        self,
        place: Place,
        status: str,
        promoted: Place | None,
        deadline: datetime,
        addendum: dict[str, Any],
        now: datetime,
    ) -> bool:
        """In one transaction: the winner's place ends, the reserve becomes a winner, and the
        public addendum saying so is appended. Refused if the winner's place changed meanwhile."""
        statements = [self._place_change(place, status, now), *_answered(place, status)]
        if promoted is not None:
            statements.append(self._place_change(promoted, "notified", now, "winner", deadline))
        statements.append(
            (
                "INSERT INTO draw_addenda VALUES (?, ?, ?)",
                (addendum["seq"], json.dumps(addendum), _time(now)),
            )
        )
        return await self._guarded(statements)

    async def addenda(self) -> list[dict[str, Any]]:
        rows = await self._store.fetch("SELECT record FROM draw_addenda ORDER BY seq")
        return [json.loads(row[0]) for row in rows]

    async def exclude(self, ticket: str, reason: str) -> bool:
        """Set a ticket aside, only while no list is frozen."""
        # A person's own step never writes the exclusion, so no version guard is needed.
        return await self._guarded(
            [
                (
                    f"UPDATE entries SET excluded_reason = ? WHERE ticket = ? AND {_NOT_FROZEN}",
                    (reason, ticket),
                )
            ]
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
        """Append an entry chained to the last one; a concurrent append makes this one retry."""
        while True:
            seq, prev = await self._head()
            entry = audit_entry(seq + 1, now, admin_id, action, details, prev)
            if await self._guarded(
                [
                    (
                        "INSERT INTO audit_log (at, admin_id, action, details, seq, prev_hash,"
                        " hash) SELECT ?, ?, ?, ?, ?, ?, ?"
                        " WHERE COALESCE((SELECT MAX(seq) FROM audit_log), 0) = ?",
                        (_time(now), admin_id, action, details, seq + 1, prev,
                         record_hash(entry), seq),
                    )
                ]
            ):  # fmt: skip
                return

    async def _head(self) -> tuple[int, str]:
        rows = await self._store.fetch(
            "SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
        )
        return (rows[0][0], rows[0][1]) if rows else (0, GENESIS)

    async def audit_head(self) -> str:
        return (await self._head())[1]

    async def audit_chain(self) -> list[dict[str, Any]]:
        """The chained entries as stored, in order, each with its stored hash."""
        rows = await self._store.fetch(
            "SELECT seq, at, admin_id, action, details, prev_hash, hash FROM audit_log"
            " WHERE seq IS NOT NULL ORDER BY seq"
        )
        return [
            {
                **audit_entry(r[0], datetime.fromisoformat(r[1]), r[2], r[3], r[4], r[5]),
                "hash": r[6],
            }
            for r in rows
        ]

    async def logged(self, action: str) -> bool:
        rows = await self._store.fetch(
            "SELECT 1 FROM audit_log WHERE action = ? LIMIT 1", (action,)
        )
        return bool(rows)

    async def unchained_after(self) -> int:
        """Entries without a place in the chain, dated after it began: none was written so."""
        rows = await self._store.fetch(
            "SELECT COUNT(*) FROM audit_log WHERE seq IS NULL"
            " AND at >= (SELECT MIN(at) FROM audit_log WHERE seq IS NOT NULL)"
        )
        return int(rows[0][0])

    async def unchained_entries(self) -> int:
        rows = await self._store.fetch("SELECT COUNT(*) FROM audit_log WHERE seq IS NULL")
        return int(rows[0][0])

    async def journal(self, limit: int) -> list[tuple[datetime, int, str, str]]:
        rows = await self._store.fetch(
            "SELECT at, admin_id, action, details FROM audit_log ORDER BY at DESC, seq DESC"
            " LIMIT ?",
            (limit,),
        )
        return [(datetime.fromisoformat(r[0]), r[1], r[2], r[3]) for r in rows]

    async def queue_email(self, email: QueueEmail, user_id: int, now: datetime) -> None:
        await self._store.write(self._store.effect_statements(user_id, email, now))
