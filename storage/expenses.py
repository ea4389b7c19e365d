"""Travel expenses on any Database: each entitled winner's claim, its receipts, its payments.

An expense is saved whole, guarded by its version, with the update that changed it (a
redelivered update changes nothing). A payment is numbered within its expense: recording the
same next number twice records it once. The messages the winner is sent (asked for receipts,
told of a payment) are queued in the Telegram outbox in the same transaction.

What the mandataire's accounts need (storage for the purge to keep): `expenses` without
`user_id` and `language`, `expense_payments`, and `expense_receipts.sha256`, `kind`, `size`,
`amount_cents`, `received_at`; Telegram's `file_id` and `file_unique_id` are only for showing
a receipt again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from conversations.expenses import (
    ClaimedReceipt,
    ClaimStep,
    Expense,
    Payment,
    Receipt,
    ReceiptKind,
)
from conversations.model import Area, Travel
from conversations.outgoing import TelegramMessage
from storage.database import Database, Row, Statement
from storage.participants import _parse_time, _time
from storage.ports import StaleWrite
from storage.telegram_outbox import TelegramQueue


class ExpenseClosed(Exception):
    """The winner's place ended (the expense closed) before the payment could be recorded."""


@dataclass(frozen=True)
class Claimant:
    """Who an expense is paid to, as copied when it opened: the accounts outlive the signup."""

    first_name: str
    last_name: str
    postcode: str


@dataclass(frozen=True)
class StoredExpense:
    expense: Expense
    claimant: Claimant


@dataclass(frozen=True)
class EntitledWinner:
    """A winner who accepted, whose place (as frozen at the draw) entitles them to travel, and
    who has no expense yet."""

    ticket: str
    user_id: int
    language: str
    area: Area
    travel: Travel
    claimant: Claimant


_EXPENSE = "SELECT * FROM expenses WHERE {where}"
_RECEIPTS = "SELECT * FROM expense_receipts WHERE {where} ORDER BY ticket, position"
_PAYMENTS = "SELECT * FROM expense_payments WHERE {where} ORDER BY ticket, seq"
_OF_USER = "ticket = (SELECT ticket FROM expenses WHERE user_id = ?)"
_ENTITLED = (
    "SELECT d.ticket, d.user_id, d.area, d.travel, p.language, p.first_name, p.last_name,"
    " COALESCE(e.postcode, p.postcode) AS postcode"
    " FROM draw_places AS d JOIN participants AS p ON p.user_id = d.user_id"
    " LEFT JOIN entries AS e ON e.user_id = d.user_id"
    " WHERE d.status = 'accepted' AND d.travel IS NOT NULL AND d.travel <> 'none'"
    " AND d.area IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM expenses AS x WHERE x.ticket = d.ticket)"
    " ORDER BY d.rank"
)
_OPEN = (
    "INSERT INTO expenses (ticket, user_id, language, first_name, last_name, postcode, area,"
    " travel, step, claimed_cents, claimed_at, version, opened_at, updated_at)"
    " VALUES (?, CAST(? AS BIGINT), ?, ?, ?, ?, ?, ?, ?, 0, NULL, 1, ?, ?)"
    " ON CONFLICT (ticket) DO NOTHING"
)
_UPDATE = (
    "UPDATE expenses SET step = ?, language = ?, claimed_cents = ?, claimed_at = ?,"
    " version = version + 1, updated_at = ? WHERE ticket = ? AND version = ?"
)
_RECEIPT = (
    "INSERT INTO expense_receipts (ticket, position, file_id, file_unique_id, sha256, kind, size,"
    " amount_cents, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PAYMENT = (
    "INSERT INTO expense_payments (ticket, seq, amount_cents, reference, override_reason,"
    " admin_id, paid_at) VALUES (?, ?, ?, ?, ?, CAST(? AS BIGINT), ?)"
)
# The payment's guard: the expense is open in the payment's own transaction. On PostgreSQL the
# row is locked first, so that a place ending at the same instant (`/remplacer`) either waits
# for the payment or is seen by it (the condition is read again once the row is free).
_PAID = "UPDATE expenses SET last_paid_at = ? WHERE ticket = ? AND step <> 'closed'"
_CANCEL = (
    "UPDATE expense_payments SET cancelled_at = ?, cancelled_by = CAST(? AS BIGINT),"
    " cancel_reason = ? WHERE ticket = ? AND seq = ? AND cancelled_at IS NULL"
)
# The latest payment still standing: the mandataire's line is kept from it (storage/purge.py).
_LAST_PAID = (
    "UPDATE expenses SET last_paid_at = (SELECT MAX(paid_at) FROM expense_payments"
    " WHERE ticket = ? AND cancelled_at IS NULL), updated_at = ?"
    " WHERE ticket = ?"
)
# A claim refused after checking closes, unless a payment stands or it closed meanwhile. The
# guard is on the expense's own row (`last_paid_at` is set by a payment in its transaction, and
# cleared when the last one standing is cancelled): on PostgreSQL, a payment in flight holds the
# row, and the refusal, once it is free, reads the row again and finds it paid.
# The reason is not kept on the expense of a winner erased already (`user_id` NULL), as their
# erasure would have emptied it (participants._UNLINK_EXPENSE): read on the row once locked.
_REFUSE = (
    "UPDATE expenses SET step = 'closed', refused_at = ?, refused_by = CAST(? AS BIGINT),"
    " refusal_reason = CASE WHEN user_id IS NULL THEN NULL ELSE CAST(? AS TEXT) END,"
    " version = version + 1, updated_at = ?"
    " WHERE ticket = ? AND step <> 'closed' AND last_paid_at IS NULL"
)
_NOTICE_GOES = (
    "UPDATE telegram_outbox SET status = 'cancelled', params = NULL"
    " WHERE idempotency_key = ? AND status = 'pending'"
)
# A notice in these states may have reached the person (an interrupted one, too).
_MAYBE_TOLD = ("sending", "sent", "interrupted")
_PROCESSED = "INSERT INTO processed_updates (update_id, processed_at, replies) VALUES (?, ?, ?)"


class ExpenseStore:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._telegram = TelegramQueue(database)

    @asynccontextmanager
    async def serving(self, user_id: int) -> AsyncIterator[ExpenseStore]:
        """This store within the person's turn (Database.serving), committed at the end."""
        async with self._database.serving(user_id) as database:
            yield self if database is self._database else ExpenseStore(database)

    async def entitled_without_expense(self) -> list[EntitledWinner]:
        rows = await self._database.fetch(_ENTITLED)
        return [
            EntitledWinner(
                r["ticket"],
                r["user_id"],
                r["language"],
                Area(r["area"]),
                Travel(r["travel"]),
                Claimant(r["first_name"] or "", r["last_name"] or "", r["postcode"] or ""),
            )
            for r in rows
        ]

    async def open(
        self, expense: Expense, claimant: Claimant, asked: TelegramMessage, now: datetime
    ) -> bool:
        """Open the expense and queue the request for receipts; False if it was open already."""
        at = _time(now)
        values = (
            expense.ticket, expense.user_id, expense.language, claimant.first_name,
            claimant.last_name, claimant.postcode, str(expense.area), str(expense.travel),
            str(expense.step), _time(expense.opened_at), at,
        )  # fmt: skip
        counts = await self._database.run(
            [(_OPEN, values), *self._telegram.queue_statements([asked], now)]
        )
        return counts[0] == 1

    async def receipt_hashes(self) -> set[str]:
        """The SHA-256 of every receipt still held: a copy of any other goes."""
        rows = await self._database.fetch("SELECT DISTINCT sha256 FROM expense_receipts")
        return {str(row[0]) for row in rows}

    async def any(self) -> bool:
        rows = await self._database.fetch("SELECT 1 FROM expenses LIMIT 1")
        return bool(rows)

    async def step_of(self, user_id: int) -> ClaimStep | None:
        """The step of the person's expense, or None without one: one small indexed read."""
        rows = await self._database.fetch("SELECT step FROM expenses WHERE user_id = ?", (user_id,))
        return ClaimStep(rows[0][0]) if rows else None

    async def by_user(self, user_id: int) -> Expense | None:
        found = await self._load(_OF_USER, (user_id,))
        return found[0].expense if found else None

    async def by_ticket(self, ticket: str) -> StoredExpense | None:
        found = await self._load("ticket = ?", (ticket,))
        return found[0] if found else None

    async def all(self) -> list[StoredExpense]:
        return await self._load("1 = 1", ())

    async def _load(self, where: str, key: Sequence[object]) -> list[StoredExpense]:
        expenses, receipts, payments = await self._database.read(
            [
                (_EXPENSE.format(where=where), key),
                (_RECEIPTS.format(where=where), key),
                (_PAYMENTS.format(where=where), key),
            ]
        )
        claimed: dict[str, list[ClaimedReceipt]] = {}
        for r in receipts:
            claimed.setdefault(r["ticket"], []).append(_receipt(r))
        paid: dict[str, list[Payment]] = {}
        for r in payments:
            paid.setdefault(r["ticket"], []).append(_payment(r))
        stored = [
            StoredExpense(
                Expense(
                    ticket=r["ticket"],
                    user_id=r["user_id"] or 0,
                    language=r["language"],
                    area=Area(r["area"]),
                    travel=Travel(r["travel"]),
                    opened_at=datetime.fromisoformat(r["opened_at"]),
                    step=ClaimStep(r["step"]),
                    receipts=tuple(claimed.get(r["ticket"], ())),
                    claimed_cents=r["claimed_cents"],
                    claimed_at=_parse_time(r["claimed_at"]),
                    payments=tuple(paid.get(r["ticket"], ())),
                    version=r["version"],
                    refused_at=_parse_time(r["refused_at"]),
                    refused_by=r["refused_by"],
                    refusal_reason=r["refusal_reason"],
                ),
                Claimant(r["first_name"], r["last_name"], r["postcode"]),
            )
            for r in expenses
        ]
        return sorted(stored, key=lambda s: s.expense.ticket)

    async def save(
        self,
        expense: Expense,
        update_id: int | None,
        now: datetime,
        replies: str | None = None,
    ) -> None:
        """Write the expense as the step left it, unless it changed since it was read
        (StaleWrite) or this update was processed before (DuplicateUpdate): then nothing.
        `replies` are kept with the update until they have left (bot/kept_replies.py)."""
        at = _time(now)
        changed = (
            str(expense.step), expense.language, expense.claimed_cents,
            _time(expense.claimed_at), at, expense.ticket, expense.version,
        )  # fmt: skip
        statements: list[Statement] = [
            (_UPDATE, changed),
            ("DELETE FROM expense_receipts WHERE ticket = ?", (expense.ticket,)),
        ]
        for position, claimed in enumerate(expense.receipts, 1):
            receipt = claimed.receipt
            row = (
                expense.ticket, position, receipt.file_id, receipt.file_unique_id, receipt.sha256,
                str(receipt.kind), receipt.size, claimed.amount_cents, _time(claimed.received_at),
            )  # fmt: skip
            statements.append((_RECEIPT, row))
        if update_id is not None:
            statements.append((_PROCESSED, (update_id, at, replies)))
        # The winner wrote to the bot: they no longer block it (few winners, so no read first).
        statements.append(("DELETE FROM telegram_blocked WHERE user_id = ?", (expense.user_id,)))
        await self._database.run(statements, guarded=0)

    async def mark_processed(
        self, update_id: int, now: datetime, replies: str | None = None
    ) -> None:
        """An update that changed nothing, noted so that its redelivery is not acted on."""
        await self._database.run([(_PROCESSED, (update_id, _time(now), replies))])

    async def _closed(self, ticket: str) -> bool:
        rows = await self._database.fetch("SELECT step FROM expenses WHERE ticket = ?", (ticket,))
        return not rows or rows[0][0] == str(ClaimStep.CLOSED)

    async def record_payment(
        self,
        ticket: str,
        seq: int,
        payment: Payment,
        told: TelegramMessage,
        audited: Statement,
        now: datetime,
        update_id: int | None = None,
    ) -> bool:
        """Record the expense's `seq`th payment, its audit entry (`AuditLog.append_statement`)
        and the winner's notice, in one transaction. False when the audit log moved on since
        its head was read (nothing written: read it again); StaleWrite when that payment was
        recorded meanwhile; ExpenseClosed when the expense closed since it was read (the place
        ended); DuplicateUpdate when the command's `update_id` was acted on."""
        values = (
            ticket, seq, payment.amount_cents, payment.reference, payment.override_reason,
            payment.admin_id, _time(payment.paid_at),
        )  # fmt: skip
        queued = self._telegram.queue_statements([told], now)
        try:
            paid = (_PAID, (_time(payment.paid_at), ticket))
            processed = (
                [(_PROCESSED, (update_id, _time(now), None))] if update_id is not None else []
            )
            statements = [paid, audited, (_PAYMENT, values), *queued, *processed]
            # In the winner's turn, as a refusal: an erasure in flight ends first, and the
            # entry's note (a reference, a reason) then finds the ticket held by nobody.
            await self._database.run(statements, guarded=(0, 1), user_id=told.user_id or None)
        except StaleWrite:
            taken = await self._database.fetch(
                "SELECT 1 FROM expense_payments WHERE ticket = ? AND seq = ?", (ticket, seq)
            )
            if taken:
                raise
            if await self._closed(ticket):
                raise ExpenseClosed(ticket) from None
            return False
        return True

    async def notice_status(self, key: str) -> str | None:
        """The status of a message queued in the Telegram outbox, None if there is none."""
        rows = await self._database.fetch(
            "SELECT status FROM telegram_outbox WHERE idempotency_key = ?", (key,)
        )
        return str(rows[0][0]) if rows else None

    async def cancel_payment(
        self,
        ticket: str,
        seq: int,
        cancelled: Payment,
        paid_notice: str,
        correction: TelegramMessage,
        audited: Statement,
        now: datetime,
        update_id: int | None = None,
    ) -> bool | None:
        """Cancel the expense's `seq`th payment, with its audit entry, in one transaction. The
        winner is sent `correction` if the notice of the payment (`paid_notice`, its outbox
        key) may have reached them; a notice still waiting is withdrawn instead. True when the
        winner is told, None when not; False when the audit log or the notice moved on since
        they were read (nothing written: read them again); StaleWrite when the payment was
        cancelled meanwhile; DuplicateUpdate when the command's `update_id` was acted on."""
        assert cancelled.cancelled_at is not None
        status = await self.notice_status(paid_notice)
        told = status in _MAYBE_TOLD
        statements: list[Statement] = [
            (
                _CANCEL,
                (
                    _time(cancelled.cancelled_at),
                    cancelled.cancelled_by,
                    cancelled.cancel_reason,
                    ticket,
                    seq,
                ),
            ),
            audited,
            (_LAST_PAID, (ticket, _time(now), ticket)),
        ]
        guarded: tuple[int, ...] = (0, 1)
        if told:
            statements += self._telegram.queue_statements([correction], now)
        elif status == "pending":
            # Not sent yet: it goes, in this transaction, or the sender took it meanwhile and
            # this is tried again (then the winner is told).
            guarded = (*guarded, len(statements))
            statements.append((_NOTICE_GOES, (paid_notice,)))
        if update_id is not None:
            statements.append((_PROCESSED, (update_id, _time(now), None)))
        try:
            # In the winner's turn, as a refusal (the reason's note and an erasure in flight).
            await self._database.run(
                statements, guarded=guarded, user_id=correction.user_id or None
            )
        except StaleWrite:
            rows = await self._database.fetch(
                "SELECT cancelled_at FROM expense_payments WHERE ticket = ? AND seq = ?",
                (ticket, seq),
            )
            if not rows or rows[0][0] is not None:
                raise
            return False
        return True if told else None

    async def refuse(
        self,
        refused: Expense,
        told: TelegramMessage,
        audited: Statement,
        now: datetime,
        update_id: int | None = None,
    ) -> bool:
        """Close the claim as refused (`refused.refused_at`, `_by`, `refusal_reason`), with its
        audit entry and the winner's notice, in one transaction; the request for receipts, if
        still waiting, goes. False when the audit log moved on since its head was read (nothing
        written: read it again); StaleWrite when the expense closed or was paid meanwhile;
        DuplicateUpdate when the command's `update_id` was acted on."""
        assert refused.refused_at is not None
        at = _time(now)
        refusal = (
            _time(refused.refused_at), refused.refused_by, refused.refusal_reason, at,
            refused.ticket,
        )  # fmt: skip
        statements: list[Statement] = [
            (_REFUSE, refusal),
            audited,
            (_NOTICE_GOES, (f"expense-request:{refused.ticket}",)),
            *self._telegram.queue_statements([told], now),
        ]
        if update_id is not None:
            statements.append((_PROCESSED, (update_id, at, None)))
        # In the winner's turn: an erasure in flight, which empties the notes about their
        # ticket, ends first, and the refusal then finds the ticket held by nobody.
        person = refused.user_id or None
        try:
            await self._database.run(statements, guarded=(0, 1), user_id=person)
        except StaleWrite:
            rows = await self._database.fetch(
                "SELECT step, last_paid_at FROM expenses WHERE ticket = ?", (refused.ticket,)
            )
            if not rows or rows[0][0] == str(ClaimStep.CLOSED) or rows[0][1] is not None:
                raise
            return False
        return True


def _receipt(row: Row) -> ClaimedReceipt:
    return ClaimedReceipt(
        Receipt(
            row["file_id"] or "",
            row["file_unique_id"] or "",
            row["sha256"],
            ReceiptKind(row["kind"]),
            row["size"],
        ),
        datetime.fromisoformat(row["received_at"]),
        row["amount_cents"],
    )


def _payment(row: Row) -> Payment:
    return Payment(
        row["amount_cents"],
        datetime.fromisoformat(row["paid_at"]),
        row["admin_id"],
        row["reference"],
        row["override_reason"],
        _parse_time(row["cancelled_at"]),
        row["cancelled_by"],
        row["cancel_reason"],
    )
