"""The draw and its places and addenda, on any Database. Each change of the draw's status is
guarded by the status it comes from, so that two admins tapping at once make one draw. The
tickets are read as plain strings by one query: the draw never loads the participants."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from conversations.draw import ExclusionReason
from conversations.model import Area, ConsentKind, Travel
from conversations.winners import Place, PlaceStatus, Role
from storage.database import Database, Dialect, Statement
from storage.participants import _parse_time, _time
from storage.ports import StaleWrite

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
class Entries:
    """What the draw reads from the signups: the eligible tickets, and the excluded ones."""

    tickets: list[str]
    excluded: list[tuple[str, str]]


_NOT_FROZEN = (
    "NOT EXISTS (SELECT 1 FROM draws WHERE name = 'main'"
    " AND status IN ('pending', 'confirmed', 'done'))"
)


_CANCEL_INVITATIONS: Statement = (
    "UPDATE outbox SET status = 'cancelled', recipient = NULL, params = NULL"
    " WHERE kind = 'invitation' AND status = 'pending'",
    (),
)


_ENDED = (PlaceStatus.DECLINED, PlaceStatus.EXPIRED, PlaceStatus.REPLACED)


def _answered(place: Place, status: PlaceStatus, now: datetime) -> list[Statement]:
    """A winner who answered, or whose place ended, needs no reminder of the deadline; a place
    that ended closes its travel expense (not payable, its cap no longer counted; its receipts
    and payments stay for the accounts), and the request for receipts, if still waiting, goes."""
    ended: list[Statement] = []
    if status in _ENDED:
        ended = [
            (
                "UPDATE expenses SET step = 'closed', version = version + 1, updated_at = ?"
                " WHERE ticket = ? AND step <> 'closed'",
                (_time(now), place.ticket),
            ),
            (
                "UPDATE telegram_outbox SET status = 'cancelled', params = NULL"
                " WHERE idempotency_key = ? AND status = 'pending'",
                (f"expense-request:{place.ticket}",),
            ),
        ]
    if place.status != PlaceStatus.NOTIFIED or status == PlaceStatus.NOTIFIED:
        return ended
    return [
        *ended,
        (
            "UPDATE telegram_outbox SET status = 'cancelled', params = NULL"
            " WHERE idempotency_key = ? AND status = 'pending'",
            (f"deadline-reminder:{place.ticket}",),
        ),
    ]


def _unblocked(user_id: int | None) -> list[Statement]:
    """A person who pressed a button wrote to the bot: Telegram delivers to them again."""
    if user_id is None:
        return []
    return [("DELETE FROM telegram_blocked WHERE user_id = ?", (user_id,))]


@dataclass(frozen=True)
class Holder:
    """Who holds a ticket, and the area class of their entry."""

    user_id: int
    area: Area


def _consented(dialect: Dialect, kind: ConsentKind) -> str:
    """The condition that an entry's consents (a JSON list) hold one of `kind`."""
    if dialect is Dialect.POSTGRESQL:
        return f"""e.consents::jsonb @> '[{{"kind": "{kind}"}}]'"""
    return (
        "EXISTS (SELECT 1 FROM json_each(e.consents)"
        f" WHERE json_extract(json_each.value, '$.kind') = '{kind}')"
    )


def signup_consents(dialect: Dialect) -> str:
    """The condition that an entry's consents let it into the draw, as
    `conversations.model.signup_consents_given` says: the adult tick, and the rules and the
    processing, apart or (before they were separated) in the one "draw" tick."""
    rules_and_processing = (
        f"{_consented(dialect, ConsentKind.RULES)}"
        f" AND {_consented(dialect, ConsentKind.PROCESSING)}"
    )
    return (
        f"{_consented(dialect, ConsentKind.ADULT)}"
        f" AND (({rules_and_processing}) OR {_consented(dialect, ConsentKind.DRAW)})"
    )


class DrawStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def _guarded(self, statements: list[Statement], guarded: int = 0) -> bool:
        try:
            await self._database.run(statements, guarded)
        except StaleWrite:
            return False
        return True

    async def entries(self) -> Entries:
        """The one place the draw gets its tickets from: the eligible ones sorted, as strings
        (never the participants), and the excluded ones with their reason's category."""
        dialect = self._database.dialect
        eligible = (
            "SELECT e.ticket FROM entries AS e WHERE e.ticket IS NOT NULL"
            f" AND e.excluded_reason IS NULL AND {signup_consents(dialect)}"
        )
        tickets = [row[0] async for row in self._database.stream(eligible)]
        # Sorted here, by code point: a database's collation may order text otherwise.
        tickets.sort()
        rows = await self._database.fetch(
            "SELECT ticket, excluded_reason FROM entries"
            " WHERE ticket IS NOT NULL AND excluded_reason IS NOT NULL"
        )
        # Reasons typed freely before categories existed may name people: never made public.
        categories = set(ExclusionReason)
        excluded = sorted((t, r if r in categories else "other") for t, r in rows)
        return Entries(tickets, excluded)

    async def shared_phones(self) -> list[list[str]]:
        """The draw's tickets whose entries give one phone number, a group per number: a typed
        number proves nothing, so the admins decide. Only tickets, never the numbers."""
        eligible = (
            "e.ticket IS NOT NULL AND e.excluded_reason IS NULL"
            f" AND {signup_consents(self._database.dialect)}"
        )
        rows = await self._database.fetch(
            f"SELECT e.phone, e.ticket FROM entries AS e WHERE {eligible} AND e.phone IN"
            f" (SELECT e.phone FROM entries AS e WHERE {eligible}"
            " GROUP BY e.phone HAVING COUNT(*) > 1)"
        )
        groups: dict[str, list[str]] = {}
        for phone, ticket in rows:
            groups.setdefault(phone, []).append(ticket)
        return sorted(sorted(tickets) for tickets in groups.values())

    async def holders(self, tickets: list[str]) -> dict[str, Holder]:
        """Who holds each of these tickets (the draw's places: a few)."""
        if not tickets:
            return {}
        rows = await self._database.fetch(
            "SELECT ticket, user_id, area FROM entries"
            f" WHERE ticket IN ({', '.join('?' * len(tickets))})",
            tickets,
        )
        return {ticket: Holder(user_id, Area(area)) for ticket, user_id, area in rows}

    async def draw(self) -> DrawRecord | None:
        rows = await self._database.fetch("SELECT * FROM draws WHERE name = ?", (DRAW,))
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
        rows = await self._database.fetch("SELECT * FROM draw_places ORDER BY rank")
        return [
            Place(
                r["ticket"],
                r["rank"],
                Role(r["role"]),
                PlaceStatus(r["status"]),
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
        status: PlaceStatus,
        now: datetime,
        role: Role | None = None,
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
        status: PlaceStatus,
        now: datetime,
        role: Role | None = None,
        deadline: datetime | None = None,
        unblock: int | None = None,
    ) -> bool:
        """Change a place, unless someone else changed it since it was read; with `unblock`,
        that person (who pressed the answer) no longer counts as having blocked the bot."""
        return await self._guarded(
            [
                self._place_change(place, status, now, role, deadline),
                *_answered(place, status, now),
                *_unblocked(unblock),
            ]
        )

    async def replace_winner(
        self,
        place: Place,
        status: PlaceStatus,
        promoted: Place | None,
        deadline: datetime,
        addendum: dict[str, Any],
        now: datetime,
        notice: Sequence[Statement] = (),
        unblock: int | None = None,
    ) -> bool:
        """In one transaction: the winner's place ends, the reserve becomes a winner, the
        public addendum saying so is appended, and the new winner's messages and email are
        queued (`notice`). Refused if the winner's place changed meanwhile. With `unblock`,
        that person (the winner who declined) no longer counts as having blocked the bot."""
        statements = [
            self._place_change(place, status, now),
            *_answered(place, status, now),
            *_unblocked(unblock),
        ]
        if promoted is not None:
            statements.append(
                self._place_change(promoted, PlaceStatus.NOTIFIED, now, Role.WINNER, deadline)
            )
        statements.append(
            (
                "INSERT INTO draw_addenda VALUES (?, ?, ?)",
                (addendum["seq"], json.dumps(addendum), _time(now)),
            )
        )
        return await self._guarded([*statements, *notice])

    async def addenda(self) -> list[dict[str, Any]]:
        rows = await self._database.fetch("SELECT record FROM draw_addenda ORDER BY seq")
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
