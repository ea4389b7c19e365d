"""The admins' travel expenses: `/frais` lists every entitled winner's expense, `/frais TICKET`
shows one with its receipts (sent again from Telegram's copies), `/rembourser TICKET MONTANT
[référence] [forcer raison]` records a payment, `/annuler_remboursement TICKET [n°] raison`
cancels one recorded by mistake, `/refuser_frais TICKET raison` closes a claim the mandataire
decides not to pay. The checks are the core's
(conversations/expense_admin.py); each action goes to the audit log, and the winner is told of a
payment through the Telegram outbox, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

from bot.admin.tools import COMMAND_UPDATE, AdminCommand, AdminJob
from bot.settings import Settings
from conversations.admin_effects import Audit, TellPerson
from conversations.catalogue import Catalogue
from conversations.expense_admin import (
    RecordPayment,
    cancel_payment,
    detail_text,
    expense_row,
    expenses_csv,
    mandataire_line,
    parse_cancel,
    parse_payment,
    parse_refusal,
    pay,
    refuse_claim,
    row_text,
)
from conversations.expenses import ReceiptKind
from conversations.model import Reply
from conversations.money import format_amount
from conversations.outgoing import TelegramKind, TelegramMessage
from conversations.validators import Refusal
from storage import Storage
from storage.database import Statement
from storage.expenses import ExpenseClosed, StoredExpense
from storage.ports import DuplicateUpdate, StaleWrite

# Telegram takes 4,096 characters a message: longer lists are split before that.
_MESSAGE_MAX = 4000


class ReceiptMessenger(Protocol):
    async def send(self, chat_id: int, reply: Reply) -> None: ...

    async def send_receipt(
        self, chat_id: int, file_id: str, kind: ReceiptKind, caption: str
    ) -> None: ...


def _name(stored: StoredExpense) -> str:
    return f"{stored.claimant.first_name} {stored.claimant.last_name}".strip()


class ExpenseAdmin(AdminJob):
    """/frais and /rembourser: the winners' travel expenses for the mandataire."""

    def __init__(
        self,
        storage: Storage,
        texts: Catalogue,
        settings: Settings,
        clock: Callable[[], datetime],
        messenger: ReceiptMessenger,
        telegram_queued: Callable[[], None],
    ) -> None:
        self._store = storage.expenses
        self._audit_log = storage.audit
        self._texts = texts
        self._rules = settings.expense_rules
        self._zone = settings.zone
        self._clock = clock
        self._messenger = messenger
        self._telegram_queued = telegram_queued

    def commands(self) -> Mapping[str, AdminCommand]:
        return {
            "frais": self.show,
            "expenses": self.show,
            "rembourser": self.pay,
            "reimburse": self.pay,
            "annuler_remboursement": self.cancel,
            "cancel_payment": self.cancel,
            "refuser_frais": self.refuse,
            "reject_expense": self.refuse,
        }

    def _say(self, language: str, key: str, **params: str) -> str:
        return self._texts.render(language, key, **params)

    async def _reply(self, chat_id: int, text: str) -> None:
        await self._messenger.send(chat_id, Reply(text))

    async def _audit(self, admin_id: int, action: str, details: str) -> None:
        await self._audit_log.log(admin_id, action, details, self._clock())

    async def _entry(self, audit: Audit, now: datetime) -> Statement:
        """The audit entry's insert, for the action's own transaction."""
        return await self._audit_log.append_statement(
            audit.admin_id, audit.action, audit.details, now, audit.note, audit.ticket
        )

    async def show(self, admin_id: int, language: str, argument: str) -> None:
        """`/frais`: every expense, with the totals; `/frais TICKET`: one, with its receipts."""
        ticket = argument.split()[0].upper() if argument.split() else ""
        if ticket:
            await self._show_one(admin_id, language, ticket)
            return
        every = await self._store.all()
        await self._audit(admin_id, "expense.list", f"{len(every)} shown")
        if not every:
            await self._reply(admin_id, self._say(language, "admin.expense.none"))
            return
        rows = [expense_row(stored.expense, self._rules) for stored in every]
        lines = [
            row_text(row, _name(stored), self._texts, language)
            for row, stored in zip(rows, every, strict=True)
        ]
        lines.append(
            self._say(
                language,
                "admin.expense.totals",
                # A closed expense (the place ended, or the claim refused) is owed nothing more:
                # its cap is not counted.
                cap=format_amount(
                    sum(row.cap_cents for row in rows if row.status.owed),
                    language,
                ),
                claimed=format_amount(sum(row.claimed_cents for row in rows), language),
                paid=format_amount(sum(row.paid_cents for row in rows), language),
            )
        )
        title = self._say(language, "admin.expense.title", count=str(len(every)))
        await self._send_lines(admin_id, [title, *lines])

    async def _find(self, admin_id: int, language: str, ticket: str) -> StoredExpense | None:
        """The expense of `ticket`, or None once the admin is told there is none."""
        stored = await self._store.by_ticket(ticket)
        if stored is None:
            await self._reply(admin_id, self._say(language, "admin.expense.unknown", ticket=ticket))
        return stored

    async def _show_one(self, admin_id: int, language: str, ticket: str) -> None:
        stored = await self._find(admin_id, language, ticket)
        if stored is None:
            return
        await self._audit(admin_id, "expense.show", ticket)
        expense = stored.expense
        text = detail_text(expense, _name(stored), self._rules, self._texts, language, self._zone)
        await self._send_lines(admin_id, text.split("\n"))
        for number, claimed in enumerate(expense.receipts, 1):
            if claimed.receipt.file_id:  # none once the purge has cut the link to Telegram
                caption = self._say(
                    language, "admin.expense.receipt_caption", number=str(number), ticket=ticket
                )
                await self._messenger.send_receipt(
                    admin_id, claimed.receipt.file_id, claimed.receipt.kind, caption
                )

    async def pay(self, admin_id: int, language: str, argument: str) -> None:
        """`/rembourser`: records a payment within the cap, and within the claim unless forced
        with a reason; the same payment sent twice is recorded once."""
        request = parse_payment(argument, self._rules)
        if isinstance(request, Refusal):
            await self._reply(admin_id, self._say(language, request.reason, **request.params))
            return
        stored = await self._find(admin_id, language, request.ticket)
        if stored is None:
            return
        expense = stored.expense
        now = self._clock()
        outcome = pay(expense, request, admin_id, now, self._rules, language)
        if isinstance(outcome, Refusal):
            refused = f"{request.ticket} {request.amount_cents} {outcome.reason}"
            await self._audit(admin_id, "expense.pay.refused", refused)
            await self._reply(admin_id, self._say(language, outcome.reason, **outcome.params))
            return
        recorded = next(e for e in outcome.effects if isinstance(e, RecordPayment))
        told = next(e for e in outcome.effects if isinstance(e, TellPerson))
        audit = next(e for e in outcome.effects if isinstance(e, Audit))
        try:
            # The payment and its audit entry commit together: a kill leaves both or neither.
            while not await self._store.record_payment(
                expense.ticket,
                len(expense.payments) + 1,
                recorded.payment,
                _message(told),
                await self._entry(audit, now),
                now,
                COMMAND_UPDATE.get(),
            ):
                pass
        except DuplicateUpdate:
            # This very command, delivered again: its payment was recorded the first time.
            await self._reply(
                admin_id, self._say(language, "admin.expense.repeat", ticket=expense.ticket)
            )
            return
        except StaleWrite:
            await self._reply(
                admin_id, self._say(language, "admin.expense.changed", ticket=expense.ticket)
            )
            return
        except ExpenseClosed:
            # The place ended (a /remplacer, say) after the expense was read: nothing recorded.
            refused = f"{request.ticket} {request.amount_cents} admin.expense.closed"
            await self._audit(admin_id, "expense.pay.refused", refused)
            await self._reply(
                admin_id, self._say(language, "admin.expense.closed", ticket=expense.ticket)
            )
            return
        self._telegram_queued()
        done = self._say(
            language,
            "admin.expense.recorded",
            amount=format_amount(recorded.payment.amount_cents, language),
            ticket=expense.ticket,
            total=format_amount(outcome.expense.paid_cents, language),
        )
        await self._reply(admin_id, done)

    async def cancel(self, admin_id: int, language: str, argument: str) -> None:
        """`/annuler_remboursement`: a payment recorded by mistake is cancelled, with a reason
        (audited); the amounts and status follow, and the winner, if they had been told of the
        payment, is sent the correction. Once: the command delivered again, or typed twice,
        finds it cancelled."""
        request = parse_cancel(argument, self._rules)
        if isinstance(request, Refusal):
            await self._reply(admin_id, self._say(language, request.reason, **request.params))
            return
        while True:
            stored = await self._find(admin_id, language, request.ticket)
            if stored is None:
                return
            now = self._clock()
            outcome = cancel_payment(stored.expense, request, admin_id, now)
            if isinstance(outcome, Refusal):
                refused = f"{request.ticket} {request.number or '-'} {outcome.reason}"
                await self._audit(admin_id, "expense.pay.cancel.refused", refused)
                await self._reply(admin_id, self._say(language, outcome.reason, **outcome.params))
                return
            seq = outcome.cancelled.seq
            audit = outcome.audit
            try:
                told = await self._store.cancel_payment(
                    request.ticket,
                    seq,
                    outcome.expense.payments[seq - 1],
                    f"expense-paid:{request.ticket}:{seq}",
                    _message(outcome.told),
                    await self._entry(audit, now),
                    now,
                    COMMAND_UPDATE.get(),
                )
            except DuplicateUpdate:
                # This very command, delivered again: the payment was cancelled the first time.
                await self._reply(
                    admin_id,
                    self._say(
                        language,
                        "admin.expense.cancel_already",
                        ticket=request.ticket,
                        number=str(seq),
                    ),
                )
                return
            except StaleWrite:
                continue  # cancelled meanwhile (a double tap): read again, and say so
            if told is not False:
                break
        if told:
            self._telegram_queued()
        key = "admin.expense.cancelled_told" if told else "admin.expense.cancelled_untold"
        done = self._say(
            language,
            key,
            number=str(seq),
            amount=format_amount(outcome.expense.payments[seq - 1].amount_cents, language),
            ticket=request.ticket,
            total=format_amount(outcome.expense.paid_cents, language),
        )
        await self._reply(admin_id, done)

    async def refuse(self, admin_id: int, language: str, argument: str) -> None:
        """`/refuser_frais`: a claim the mandataire decides not to pay is closed, with a reason
        (audited), and the winner told; not while a payment stands. Once: the command delivered
        again, or typed twice, finds it refused."""
        request = parse_refusal(argument, self._rules)
        if isinstance(request, Refusal):
            await self._reply(admin_id, self._say(language, request.reason, **request.params))
            return
        while True:
            stored = await self._find(admin_id, language, request.ticket)
            if stored is None:
                return
            now = self._clock()
            outcome = refuse_claim(stored.expense, request, admin_id, now, language)
            if isinstance(outcome, Refusal):
                await self._audit(
                    admin_id, "expense.refuse.refused", f"{request.ticket} {outcome.reason}"
                )
                await self._reply(admin_id, self._say(language, outcome.reason, **outcome.params))
                return
            audit = outcome.audit
            try:
                done = await self._store.refuse(
                    outcome.expense,
                    _message(outcome.told, TelegramKind.EXPENSE_REFUSED),
                    await self._entry(audit, now),
                    now,
                    COMMAND_UPDATE.get(),
                )
            except DuplicateUpdate:
                # This very command, delivered again: the claim was refused the first time.
                await self._reply(
                    admin_id,
                    self._say(language, "admin.expense.refuse_already", ticket=request.ticket),
                )
                return
            except StaleWrite:
                continue  # refused, closed or paid meanwhile: read again, and say so
            if done:
                break
        self._telegram_queued()
        await self._reply(
            admin_id,
            self._say(
                language,
                "admin.expense.refused",
                ticket=request.ticket,
                claimed=format_amount(stored.expense.claimed_cents, language),
            ),
        )

    async def _send_lines(self, chat_id: int, lines: list[str]) -> None:
        message = ""
        for line in lines:
            if message and len(message) + len(line) + 1 > _MESSAGE_MAX:
                await self._reply(chat_id, message.rstrip())
                message = ""
            message += line[:_MESSAGE_MAX] + "\n"
        if message:
            await self._reply(chat_id, message.rstrip())


async def expenses_csv_of(storage: Storage, settings: Settings) -> bytes:
    """`coffeebot expenses`: one line per expense, then the totals."""
    rules, zone = settings.expense_rules, settings.zone
    lines = [
        mandataire_line(
            stored.expense,
            stored.claimant.first_name,
            stored.claimant.last_name,
            stored.claimant.postcode,
            rules,
            zone,
        )
        for stored in await storage.expenses.all()
    ]
    return expenses_csv(lines)


def _message(told: TellPerson, kind: TelegramKind = TelegramKind.EXPENSE_PAID) -> TelegramMessage:
    """The payment's notice (or its correction, or the claim's refusal), keyed by the payment's
    number (or the ticket): queued twice, sent once."""
    return TelegramMessage(
        key=told.key,
        user_id=told.user_id,
        kind=kind,
        language=told.language,
        text_key=told.text_key,
        params=dict(told.params),
    )
