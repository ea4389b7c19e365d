"""The emails waiting to be sent, written by the same transactions as the steps. Each email
changes state in its own small transaction; on PostgreSQL several senders may share the queue,
each claiming rows the others have not locked (FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from storage.database import Database, Dialect, Row, Statement
from storage.ports import OutboxEmail, StaleWrite


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _sent(key: str, now: datetime) -> Statement:
    return (
        "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
        " recipient = NULL, params = NULL, last_error = NULL WHERE idempotency_key = ?",
        (_time(now), key),
    )


_CANCEL = "UPDATE outbox SET status = 'cancelled', recipient = NULL, params = NULL"


def claimed(database: Database, table: str) -> str:
    """The condition that claims one waiting row by its key. On PostgreSQL a row another
    sender is claiming is skipped rather than waited for (FOR UPDATE SKIP LOCKED); either way
    the claim changes one row or none, so each message leaves once."""
    if database.dialect is Dialect.POSTGRESQL:
        return (
            f"idempotency_key = (SELECT idempotency_key FROM {table} WHERE idempotency_key = ?"
            " AND status = 'pending' FOR UPDATE SKIP LOCKED)"
        )
    return "idempotency_key = ? AND status = 'pending'"


async def with_announcement_texts(
    database: Database, cancel: str, rows: list[Row]
) -> list[tuple[Row, dict[str, Any]]]:
    """Each due row with its values to fill in. An announcement's messages name it
    (`{"announcement": N}`) rather than each carry a copy of its text, which at a million people
    would be gigabytes: the texts are read here, once for a batch of due rows. A message whose
    announcement is gone is cancelled (`cancel`, the table's own UPDATE … SET) rather than sent
    without its text."""
    params = [json.loads(row["params"]) for row in rows]
    numbers = sorted({p["announcement"] for p in params if "announcement" in p})
    if not numbers:
        return list(zip(rows, params, strict=True))
    found = await database.fetch(
        f"SELECT number, text FROM announcements WHERE number IN ({', '.join('?' * len(numbers))})",
        numbers,
    )
    texts = {int(number): text for number, text in found}
    due, orphans = [], []
    for row, values in zip(rows, params, strict=True):
        number = values.get("announcement")
        if number is None:
            due.append((row, values))
        elif number in texts:
            due.append((row, {"text": texts[number]}))
        else:
            orphans.append(row["idempotency_key"])
    if orphans:
        await database.run(
            [
                (
                    f"{cancel} WHERE status = 'pending' AND idempotency_key IN"
                    f" ({', '.join('?' * len(orphans))})",
                    orphans,
                )
            ]
        )
    return due


class EmailOutbox:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def due(
        self, now: datetime, limit: int, only_kinds: Collection[str] | None = None
    ) -> list[OutboxEmail]:
        kinds = "" if only_kinds is None else f" AND kind IN ({', '.join('?' * len(only_kinds))})"
        # Rows another process is sending are skipped, not waited for; `start_sending`
        # then settles who sends each one.
        claim = " FOR UPDATE SKIP LOCKED" if self._database.dialect is Dialect.POSTGRESQL else ""
        select = (
            "SELECT idempotency_key, kind, recipient, language, params, attempts"
            " FROM outbox{index} WHERE status = 'pending' AND next_attempt_at <= ?{kinds}{apart}"
            f" ORDER BY next_attempt_at LIMIT ?{claim}"
        )
        parameters = (_time(now), *(only_kinds or ()), limit)
        # A person's own emails (a code, an invitation) go before a batch's (an announcement
        # queues thousands at once, and EMAILS_PER_HOUR would keep a code waiting for hours).
        # They are few, found by the batch index: SQLite's planner would rather walk the due
        # index through a whole pending batch (34 ms a read at 200,000, against 0.01 ms).
        sqlite = self._database.dialect is Dialect.SQLITE
        index = " INDEXED BY outbox_batch" if sqlite else ""
        rows = await self._database.fetch(
            select.format(index=index, kinds=kinds, apart=" AND batch IS NULL"), parameters
        )
        if len(rows) < limit:
            rows += await self._database.fetch(
                select.format(index="", kinds=kinds, apart=" AND batch IS NOT NULL"),
                (*parameters[:-1], limit - len(rows)),
            )
        return [
            OutboxEmail(
                row["idempotency_key"],
                row["kind"],
                row["recipient"],
                row["language"],
                values,
                row["attempts"],
            )
            for row, values in await with_announcement_texts(self._database, _CANCEL, rows)
        ]

    async def start_sending(self, key: str, now: datetime, sent_before: str | None) -> bool:
        statements: list[Statement] = []
        if sent_before is not None:
            statements.append(_sent(sent_before, now))
        statements.append(
            (
                f"UPDATE outbox SET status = 'sending' WHERE {claimed(self._database, 'outbox')}",
                (key,),
            )
        )
        try:
            await self._database.run(statements, guarded=len(statements) - 1)
        except StaleWrite:
            return False
        return True

    async def mark_sent(self, key: str, now: datetime) -> None:
        await self._database.run([_sent(key, now)])

    async def retry_later(self, key: str, attempts: int, at: datetime, error: str) -> None:
        await self._database.run(
            [
                (
                    "UPDATE outbox SET status = 'pending', attempts = ?, next_attempt_at = ?,"
                    " last_error = ? WHERE idempotency_key = ?",
                    (attempts, _time(at), error[:500], key),
                )
            ]
        )

    async def mark_failed(self, key: str, attempts: int, error: str) -> None:
        await self._database.run(
            [
                (
                    "UPDATE outbox SET status = 'failed', attempts = ?, last_error = ?,"
                    " recipient = NULL, params = NULL WHERE idempotency_key = ?",
                    (attempts, error[:500], key),
                )
            ]
        )

    async def mark_interrupted(self) -> int:
        interrupted = (
            "UPDATE outbox SET status = 'interrupted', recipient = NULL, params = NULL,"
            " last_error = 'the bot stopped while sending' WHERE status = 'sending'"
        )
        return (await self._database.run([(interrupted, ())]))[0]

    async def kept(self, keys: list[str]) -> set[str]:
        """Which of these keys still have a row (an erasure deletes the person's rows)."""
        if not keys:
            return set()
        rows = await self._database.fetch(
            f"SELECT idempotency_key FROM outbox WHERE idempotency_key IN"
            f" ({', '.join('?' * len(keys))})",
            keys,
        )
        return {row[0] for row in rows}

    async def counts(self) -> dict[str, int]:
        rows = await self._database.fetch("SELECT status, COUNT(*) FROM outbox GROUP BY status")
        return {status: count for status, count in rows}
