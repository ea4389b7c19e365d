"""The admin tools' figures and lists, computed by the database: memory stays flat whatever
the number of participants. The export is streamed row by row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from conversations.admin import ExportRow, Statistics
from conversations.model import Action, ConsentKind
from storage.database import Database
from storage.draws import signup_consents

# `actions` holds the person's actions separated by commas.
_HAS_ACTION = "(',' || p.actions || ',') LIKE ?"
_NEWS = (
    "EXISTS (SELECT 1 FROM consents AS c WHERE c.user_id = p.user_id AND c.kind = ?"
    " AND c.withdrawn_at IS NULL)"
)


class Reports:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def statistics(self) -> Statistics:
        database = self._database
        engaged = ", ".join(f"COALESCE(SUM(CASE WHEN {_HAS_ACTION} THEN 1 ELSE 0 END), 0)"
                            for _ in Action)  # fmt: skip
        eligible = signup_consents(database.dialect)
        people, entered, joined, by_area, by_departement, per_day = await database.read(
            [
                (
                    "SELECT COUNT(*), COUNT(completed_at), COALESCE(SUM(friends_invited), 0)"
                    " FROM participants",
                    (),
                ),
                (
                    f"SELECT COUNT(*), {engaged},"
                    " COALESCE(SUM(CASE WHEN e.ticket IS NOT NULL AND e.excluded_reason IS NULL"
                    f" AND {eligible} THEN 1 ELSE 0 END), 0)"
                    " FROM entries AS e JOIN participants AS p ON p.user_id = e.user_id",
                    tuple(f"%,{action},%" for action in Action),
                ),
                # Each referrer looked up by the unique index on referral codes: an IN over
                # the whole table inside the aggregate would rescan it per row on PostgreSQL.
                (
                    "SELECT COUNT(*) FROM entries AS e JOIN participants AS p"
                    " ON p.user_id = e.user_id WHERE p.referrer IS NOT NULL AND EXISTS"
                    " (SELECT 1 FROM participants AS r WHERE r.referral_code = p.referrer)",
                    (),
                ),
                (
                    "SELECT area, COUNT(*) FROM entries GROUP BY area ORDER BY COUNT(*) DESC, area",
                    (),
                ),
                (
                    "SELECT departement, COUNT(*) FROM entries GROUP BY departement"
                    " ORDER BY COUNT(*) DESC, departement",
                    (),
                ),
                (
                    "SELECT substr(completed_at, 1, 10) AS day, COUNT(*) FROM participants"
                    " WHERE completed_at IS NOT NULL GROUP BY day ORDER BY day",
                    (),
                ),
            ]
        )
        started, completed, invited = people[0]
        confirmed, *counts = entered[0]
        *engaged_counts, eligible_count = counts
        return Statistics(
            started=int(started),
            completed=int(completed),
            confirmed=int(confirmed),
            eligible=int(eligible_count),
            engaged={str(a): int(n) for a, n in zip(Action, engaged_counts, strict=True)},
            friends_invited=int(invited),
            friends_joined=int(joined[0][0]),
            by_area={area: int(n) for area, n in by_area},
            by_departement={departement: int(n) for departement, n in by_departement},
            per_day=[(day, int(n)) for day, n in per_day],
        )

    async def export_rows(self) -> AsyncIterator[ExportRow]:
        """Every entry with its person, oldest first, one row at a time."""
        sql = (
            "SELECT e.ticket, p.first_name, p.last_name, e.phone, e.email, e.postcode,"
            f" e.departement, e.area, e.entered_at, p.actions, p.availability, {_NEWS}, {_NEWS},"
            " p.question, e.excluded_reason"
            " FROM entries AS e JOIN participants AS p ON p.user_id = e.user_id"
            " ORDER BY e.entered_at, e.user_id"
        )
        parameters = (str(ConsentKind.NEWS_EMAIL), str(ConsentKind.NEWS_SMS))
        async for row in self._database.stream(sql, parameters):
            yield ExportRow(
                ticket=row[0], first_name=row[1], last_name=row[2], phone=row[3], email=row[4],
                postcode=row[5], departement=row[6], area=row[7],
                entered_at=datetime.fromisoformat(row[8]),
                actions=frozenset(a for a in row[9].split(",") if a),
                availability=frozenset(a for a in row[10].split(",") if a),
                news_email=bool(row[11]), news_sms=bool(row[12]),
                question=row[13], excluded_reason=row[14],
            )  # fmt: skip

    async def questions(self, limit: int) -> list[tuple[str, str]]:
        """(postcode, question) of completed signups, newest first."""
        rows = await self._database.fetch(
            "SELECT postcode, question FROM participants WHERE question IS NOT NULL"
            " AND question <> '' AND completed_at IS NOT NULL ORDER BY completed_at DESC LIMIT ?",
            (limit,),
        )
        return [(postcode or "", question) for postcode, question in rows]
