"""Counters that outlive the people they count (conversations/quotas.py): per quota, a keyed
hash of the subject, a count and the end of its window, which starts at the first use. Rows
whose window has ended mean nothing and are purged."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from conversations.model import Quota
from conversations.quotas import WINDOWS, Use
from storage.database import Database, Row, Statement

# A use in an ended window starts a new one; `limit` (the last parameter) refuses a use past
# it, changing nothing: the statement's row count says whether the use was taken.
_TAKE = (
    "INSERT INTO quota_counts (quota, subject_hash, count, expires_at) VALUES (?, ?, 1, ?)"
    " ON CONFLICT (quota, subject_hash) DO UPDATE SET"
    " count = CASE WHEN quota_counts.expires_at <= ? THEN 1 ELSE quota_counts.count + 1 END,"
    " expires_at = CASE WHEN quota_counts.expires_at <= ? THEN excluded.expires_at"
    " ELSE quota_counts.expires_at END"
    " WHERE quota_counts.expires_at <= ? OR quota_counts.count < ?"
)
_USE = (
    "SELECT count, expires_at FROM quota_counts"
    " WHERE quota = ? AND subject_hash = ? AND expires_at > ?"
)
_PURGE = "DELETE FROM quota_counts WHERE expires_at <= ?"
# Counted without a limit (an erasure is counted whatever the count).
_UNLIMITED = 2**31 - 1


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


class Quotas:
    """The quota counters on any Database; `hashed` is the keyed hash the participant store
    uses for addresses, so that one key protects every hash."""

    def __init__(self, database: Database, hashed: Callable[[str], str]) -> None:
        self._database = database
        self._hashed = hashed

    def _subject(self, quota: Quota, subject: str) -> str:
        # The quota's name is hashed with the subject: one account's hash under one quota
        # says nothing about the same account under another.
        return self._hashed(f"{quota}:{subject}")

    def count_statement(
        self, quota: Quota, subject: str, now: datetime, limit: int | None = None
    ) -> Statement:
        """Count one use, within another transaction (a step's); with a `limit`, only if fewer
        were counted in the window (the row count says whether it was), so that steps racing
        for the last use take it once."""
        return self._take_statement(quota, subject, now, _UNLIMITED if limit is None else limit)

    def _take_statement(self, quota: Quota, subject: str, now: datetime, limit: int) -> Statement:
        at = _time(now)
        ends = _time(now + WINDOWS[quota])
        return (_TAKE, (str(quota), self._subject(quota, subject), ends, at, at, at, limit))

    def use_query(self, quota: Quota, subject: str, now: datetime) -> Statement:
        return (_USE, (str(quota), self._subject(quota, subject), _time(now)))

    async def take(self, quota: Quota, subject: str, now: datetime, limit: int) -> bool:
        """Count one use unless `limit` uses were counted in the window: whether it was."""
        counts = await self._database.run([self._take_statement(quota, subject, now, limit)])
        return counts[0] == 1

    async def used(self, quota: Quota, subject: str, now: datetime) -> Use:
        rows = (await self._database.read([self.use_query(quota, subject, now)]))[0]
        return use_of(rows)

    async def purge(self, now: datetime) -> int:
        """Forget the counters whose window has ended."""
        return (await self._database.run([(_PURGE, (_time(now),))]))[0]


def use_of(rows: Sequence[Row]) -> Use:
    if not rows:
        return Use()
    return Use(int(rows[0]["count"]), datetime.fromisoformat(rows[0]["expires_at"]))
