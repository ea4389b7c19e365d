"""The Telegram outbox, on any Database.

Each message changes state in its own small transaction, and at most one is 'sending' at a
time: a crash leaves at most one message in doubt, which is then given up rather than sent
twice. Values to fill in are erased once a message is done with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from storage.database import Database, Statement
from storage.outbox import claimed, with_announcement_texts
from storage.participants import _parse_time, _time
from storage.ports import (
    QueuedTelegram,
    StaleWrite,
    TelegramKind,
    TelegramMessage,
    TelegramStatus,
)

# The channel on which a commit that queued messages tells every process's sender to look.
TELEGRAM_CHANNEL = "coffeebot_telegram"

# Queued only for a person still stored: an erased person is told nothing.
_QUEUE = (
    "INSERT INTO telegram_outbox (idempotency_key, user_id, kind, language, text_key, params,"
    " buttons, campaign, status, attempts, not_before, batch, created_at)"
    " SELECT ?, CAST(? AS BIGINT), ?, ?, ?, ?, ?, CAST(? AS SMALLINT), 'pending', 0, ?, ?, ?"
    " WHERE EXISTS (SELECT 1 FROM participants WHERE user_id = ?)"
    " ON CONFLICT (idempotency_key) DO NOTHING"
)
_DUE = (
    "SELECT idempotency_key, user_id, kind, language, text_key, params, buttons, campaign,"
    " not_before, batch, attempts FROM telegram_outbox"
    " WHERE status = 'pending' AND not_before <= ? AND campaign <= ?"
    " ORDER BY bulk, not_before, created_at, idempotency_key LIMIT ?"
)
# The states a message leaves the outbox in: what it said is no longer needed.
_DONE = "status = ?, attempts = ?, last_error = ?, params = NULL"


class TelegramQueue:
    def __init__(self, database: Database) -> None:
        self._database = database

    def queue_statements(
        self, messages: Iterable[TelegramMessage], now: datetime
    ) -> list[Statement]:
        """The statements queueing these messages, for the caller's own transaction; a message
        whose key is already queued (or sent) is left as it is."""
        at = _time(now)
        queued: list[Statement] = [
            (
                _QUEUE,
                (
                    message.key,
                    message.user_id,
                    str(message.kind),
                    message.language,
                    message.text_key,
                    json.dumps(dict(message.params)),
                    json.dumps([list(button) for button in message.buttons]),
                    int(message.campaign),
                    _time(message.not_before) or at,
                    message.batch,
                    at,
                    message.user_id,
                ),
            )
            for message in messages
        ]
        return [*queued, *self.queued()] if queued else []

    def queued(self) -> list[Statement]:
        """Tells other processes' senders, at commit, that a message is waiting."""
        notify = self._database.notify(TELEGRAM_CHANNEL)
        return [notify] if notify is not None else []

    def not_drawn_statement(self, text_key: str, batch: str, now: datetime) -> Statement:
        """Queue `text_key` for every entrant with a ticket in the draw but no place in it, in
        one statement: written in the draw's transaction, after the places. Tickets are plain
        ASCII letters and digits, so they go into the JSON as they are."""
        at = _time(now)
        return (
            "INSERT INTO telegram_outbox (idempotency_key, user_id, kind, language, text_key,"
            " params, buttons, campaign, status, attempts, not_before, batch, created_at, bulk)"
            " SELECT 'draw-result:' || e.ticket, e.user_id, ?, p.language, ?,"
            " '{\"ticket\": \"' || e.ticket || '\"}', '[]', 1, 'pending', 0, ?, ?, ?, 1"
            " FROM entries AS e JOIN participants AS p ON p.user_id = e.user_id"
            " WHERE e.ticket IS NOT NULL AND e.excluded_reason IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM draw_places AS d WHERE d.ticket = e.ticket)"
            " ON CONFLICT (idempotency_key) DO NOTHING",
            (str(TelegramKind.DRAW_RESULT), text_key, at, batch, at),
        )

    async def queue(self, messages: Iterable[TelegramMessage], now: datetime) -> None:
        statements = self.queue_statements(messages, now)
        if statements:
            await self._database.run(statements)

    async def due(self, now: datetime, limit: int, hold_campaign: bool) -> list[QueuedTelegram]:
        highest_campaign = 0 if hold_campaign else 1
        rows = await self._database.fetch(_DUE, (_time(now), highest_campaign, limit))
        due = await with_announcement_texts(
            self._database, "UPDATE telegram_outbox SET status = 'cancelled', params = NULL", rows
        )
        return [
            QueuedTelegram(
                TelegramMessage(
                    key=row["idempotency_key"],
                    user_id=row["user_id"],
                    kind=TelegramKind(row["kind"]),
                    language=row["language"],
                    text_key=row["text_key"],
                    params=values,
                    buttons=tuple((label, data) for label, data in json.loads(row["buttons"])),
                    campaign=bool(row["campaign"]),
                    not_before=_parse_time(row["not_before"]),
                    batch=row["batch"],
                ),
                row["attempts"],
            )
            for row, values in due
        ]

    async def start_sending(self, key: str) -> bool:
        leaving = (
            "UPDATE telegram_outbox SET status = 'sending'"
            f" WHERE {claimed(self._database, 'telegram_outbox')}",
            (key,),
        )
        try:
            await self._database.run([leaving], guarded=0)
        except StaleWrite:
            return False
        return True

    async def mark_sent(self, key: str, now: datetime) -> None:
        await self._database.run(
            [
                (
                    "UPDATE telegram_outbox SET status = 'sent', sent_at = ?,"
                    " attempts = attempts + 1, last_error = NULL, params = NULL"
                    " WHERE idempotency_key = ?",
                    (_time(now), key),
                )
            ]
        )

    async def mark_blocked(self, key: str, attempts: int, now: datetime | None = None) -> None:
        """The person blocked the bot: this message is given up, and so are later campaign
        messages (announcements) until they write to the bot again."""
        done = (
            f"UPDATE telegram_outbox SET {_DONE} WHERE idempotency_key = ?",
            (str(TelegramStatus.BLOCKED), attempts, "Forbidden", key),
        )
        remembered = (
            "INSERT INTO telegram_blocked (user_id, blocked_at)"
            " SELECT user_id, ? FROM telegram_outbox WHERE idempotency_key = ?"
            " ON CONFLICT (user_id) DO UPDATE SET blocked_at = excluded.blocked_at",
            (_time(now), key),
        )
        await self._database.run([done, remembered] if now is not None else [done])

    async def retry_later(self, key: str, attempts: int, at: datetime, error: str) -> None:
        await self._database.run(
            [
                (
                    "UPDATE telegram_outbox SET status = 'pending', attempts = ?, not_before = ?,"
                    " last_error = ? WHERE idempotency_key = ?",
                    (attempts, _time(at), error[:100], key),
                )
            ]
        )

    async def mark_failed(self, key: str, attempts: int, error: str) -> None:
        await self._done(key, TelegramStatus.FAILED, attempts, error)

    async def _done(self, key: str, status: TelegramStatus, attempts: int, error: str) -> None:
        await self._database.run(
            [
                (
                    f"UPDATE telegram_outbox SET {_DONE} WHERE idempotency_key = ?",
                    (str(status), attempts, error[:100], key),
                )
            ]
        )

    async def mark_interrupted(self) -> int:
        """At start, before the sender runs: give up the messages a crash left leaving. They
        may have been delivered, and sending them again could tell a person twice."""
        rows = await self._database.fetch(
            "SELECT COUNT(*) FROM telegram_outbox WHERE status = 'sending'"
        )
        await self._database.run(
            [
                (
                    "UPDATE telegram_outbox SET status = 'interrupted', params = NULL,"
                    " last_error = 'stopped while sending' WHERE status = 'sending'",
                    (),
                )
            ]
        )
        return int(rows[0][0])

    async def cancel_batch(self, batch: str) -> None:
        """The batch's messages not yet sent are not sent; those already sent stay as they are."""
        await self._database.run(
            [
                (
                    "UPDATE telegram_outbox SET status = 'cancelled', params = NULL"
                    " WHERE batch = ? AND status = 'pending'",
                    (batch,),
                )
            ]
        )

    async def progress(self, batch: str) -> dict[TelegramStatus, int]:
        rows = await self._database.fetch(
            "SELECT status, COUNT(*) FROM telegram_outbox WHERE batch = ? GROUP BY status",
            (batch,),
        )
        return {TelegramStatus(status): count for status, count in rows}
