"""A winner's travel expenses, from the receipts they send to the payments the mandataire makes.

Only a winner who accepted and whose place entitles them to travel (frozen at the draw, as
`Place.area` and `Place.travel`) has an `Expense`. In the chat they send each receipt (a photo or
a PDF), then the amount it shows, then confirm the summary: `claim_step` is that conversation as
a transition table, drawn in `expenses.mmd` beside this file; keep them in step. The bot keeps
Telegram's file id and the file's SHA-256, never the file itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from conversations.catalogue import Catalogue
from conversations.model import Area, Button, Press, Reply, Text, Travel
from conversations.money import format_amount, parse_amount
from conversations.validators import Refusal


@dataclass(frozen=True)
class ExpenseRules:
    """The caps and limits of expenses, from the settings."""

    # TRAVEL_MAX_EUR, TRAVEL_ARRANGED_MAX_EUR: the most paid for one winner's travel.
    train_max_eur: int = 200
    arranged_max_eur: int = 700
    # Any single receipt's amount above this is a typing mistake, not a ticket.
    amount_max_eur: int = 2000
    max_receipts: int = 10
    # Telegram lets a bot download files up to 20 MB: a bigger one could not be hashed.
    receipt_max_bytes: int = 20_000_000
    reference_max_length: int = 100
    reason_max_length: int = 300
    # The same payment again this soon, without a reference of its own, is a double tap.
    repeat_window: timedelta = timedelta(minutes=10)

    @property
    def receipt_max_mb(self) -> str:
        """The file size limit as people read it, in (decimal) megabytes."""
        return f"{self.receipt_max_bytes / 1_000_000:g}"

    def cap_cents(self, travel: Travel) -> int:
        """What travel of this kind is paid at most; nothing for no travel."""
        caps = {
            Travel.NONE: 0,
            Travel.TRAIN: self.train_max_eur,
            Travel.ARRANGED: self.arranged_max_eur,
        }
        return caps[travel] * 100


REMOVE_LAST = "expense.remove_last"


class ReceiptKind(StrEnum):
    PHOTO = "photo"
    PDF = "pdf"


@dataclass(frozen=True)
class Receipt:
    """A photo or a PDF the winner sent: the shell hashes the file and passes this on."""

    file_id: str
    file_unique_id: str
    sha256: str
    kind: ReceiptKind
    size: int


@dataclass(frozen=True)
class ClaimedReceipt:
    receipt: Receipt
    received_at: datetime
    # None until the winner has typed the amount it shows.
    amount_cents: int | None = None


@dataclass(frozen=True)
class Payment:
    amount_cents: int
    paid_at: datetime
    admin_id: int
    reference: str | None = None
    # Set when an admin paid more than was claimed, and why.
    override_reason: str | None = None
    # Set when an admin cancelled it (recorded by mistake), by whom and why: it stays listed,
    # and counts for nothing.
    cancelled_at: datetime | None = None
    cancelled_by: int | None = None
    cancel_reason: str | None = None

    @property
    def standing(self) -> bool:
        return self.cancelled_at is None


class ClaimStep(StrEnum):
    RECEIPT = "receipt"
    AMOUNT = "amount"
    SUMMARY = "summary"
    SUBMITTED = "submitted"
    # The winner's place ended (declined, deadline passed, replaced), or an admin refused the
    # claim (`Expense.refused_at`): nothing more is taken or paid; the receipts and payments
    # already recorded stay, for the accounts.
    CLOSED = "closed"


@dataclass(frozen=True)
class Expense:
    ticket: str
    user_id: int
    language: str
    # Frozen at the draw: a later postcode or setting changes neither.
    area: Area
    travel: Travel
    opened_at: datetime
    step: ClaimStep = ClaimStep.RECEIPT
    receipts: tuple[ClaimedReceipt, ...] = ()
    # What the winner last confirmed; a receipt added since counts once confirmed again.
    claimed_cents: int = 0
    claimed_at: datetime | None = None
    payments: tuple[Payment, ...] = ()
    # The stored row's version: a save from a stale read is refused.
    version: int = 0
    # Set when an admin refused the claim after checking it (`/refuser_frais`), by whom and
    # why: the expense is then closed, as when the place ends.
    refused_at: datetime | None = None
    refused_by: int | None = None
    refusal_reason: str | None = None

    @property
    def standing_payments(self) -> tuple[Payment, ...]:
        """The payments not cancelled: what was paid."""
        return tuple(payment for payment in self.payments if payment.standing)

    @property
    def paid_cents(self) -> int:
        return sum(payment.amount_cents for payment in self.standing_payments)

    @property
    def typed_cents(self) -> int:
        """The amounts typed so far, confirmed or not."""
        return sum(r.amount_cents or 0 for r in self.receipts)


@dataclass(frozen=True)
class ClaimContext:
    now: datetime
    texts: Catalogue
    rules: ExpenseRules


@dataclass(frozen=True)
class ClaimOutcome:
    expense: Expense
    replies: tuple[Reply, ...] = ()


@dataclass(frozen=True)
class NotAReceipt:
    """A file the shell could not take as a receipt (another type, too big, not downloaded):
    `reason` names the refusal (`expense.refusal.<reason>`)."""

    reason: str
    params: tuple[tuple[str, str], ...] = ()


ClaimInput = Receipt | NotAReceipt | Text | Press


def open_claim(
    ticket: str,
    user_id: int,
    language: str,
    area: Area | None,
    travel: Travel | None,
    ctx: ClaimContext,
) -> ClaimOutcome | None:
    """The expense of a winner who has just accepted, and the request for receipts; None when
    their place entitles them to no travel."""
    if area is None or travel is None or travel == Travel.NONE:
        return None
    expense = Expense(ticket, user_id, language, area, travel, ctx.now)
    cap = format_amount(ctx.rules.cap_cents(travel), language)
    text = _say(expense, ctx, f"expense.ask.{travel}", cap=cap)
    return ClaimOutcome(expense, (Reply(text),))


def accepts(expense: Expense, event: ClaimInput) -> bool:
    """Whether this input is for the expense conversation rather than the signup one."""
    return accepts_at(expense.step, event)


def accepts_at(step: ClaimStep, event: ClaimInput) -> bool:
    """`accepts`, knowing only the expense's step (a cheap read before the person's turn)."""
    if isinstance(event, Press):
        return event.key.startswith("expense.")
    if isinstance(event, Receipt | NotAReceipt):
        return True
    return step == ClaimStep.AMOUNT


def claim_step(expense: Expense, event: ClaimInput, ctx: ClaimContext) -> ClaimOutcome:
    """Return the expense after `event` and what to reply; a file that is not a receipt is
    refused at any step, changing nothing."""
    if expense.step == ClaimStep.CLOSED:
        return _closed(expense, event, ctx)
    if isinstance(event, NotAReceipt):
        refusal = Refusal(f"expense.refusal.{event.reason}", dict(event.params))
        if expense.step == ClaimStep.SUBMITTED:
            said = _say(expense, ctx, refusal.reason, **refusal.params)
            return ClaimOutcome(expense, (Reply(said),))
        return _refuse(expense, ctx, refusal)
    return TABLE[expense.step](expense, event, ctx)


def _say(expense: Expense, ctx: ClaimContext, key: str, **params: str) -> str:
    return ctx.texts.render(expense.language, key, **params)


def _amount(expense: Expense, cents: int) -> str:
    return format_amount(cents, expense.language)


def _prompt(expense: Expense, ctx: ClaimContext) -> Reply:
    """The current step's question, with its buttons."""
    if expense.step == ClaimStep.RECEIPT:
        buttons: tuple[tuple[Button, ...], ...] = ()
        if expense.receipts:
            buttons = ((Button(_say(expense, ctx, "expense.button.summary"), "expense.summary"),),)
        return Reply(_say(expense, ctx, "expense.send_receipt"), buttons)
    if expense.step == ClaimStep.AMOUNT:
        kind = _say(expense, ctx, f"expense.kind.{expense.receipts[-1].receipt.kind}")
        drop = Button(_say(expense, ctx, "expense.button.drop"), "expense.drop")
        return Reply(_say(expense, ctx, "expense.ask_amount", kind=kind), ((drop,),))
    if expense.step == ClaimStep.SUMMARY:
        return _summary(expense, ctx)
    return Reply(_status(expense, ctx))


def _summary(expense: Expense, ctx: ClaimContext) -> Reply:
    lines = [
        _say(
            expense,
            ctx,
            "expense.summary_line",
            number=str(number),
            kind=_say(expense, ctx, f"expense.kind.{claimed.receipt.kind}"),
            amount=_amount(expense, claimed.amount_cents or 0),
        )
        for number, claimed in enumerate(expense.receipts, 1)
    ]
    cap = expense_cap(expense, ctx.rules)
    text = _say(
        expense,
        ctx,
        "expense.summary",
        lines="\n".join(lines),
        total=_amount(expense, expense.typed_cents),
        cap=_amount(expense, cap),
    )
    if expense.typed_cents > cap:
        text += "\n\n" + _say(expense, ctx, "expense.above_cap", cap=_amount(expense, cap))
    rows: list[tuple[Button, ...]] = []
    if len(expense.receipts) < ctx.rules.max_receipts:
        rows.append((Button(_say(expense, ctx, "expense.button.add"), "expense.add"),))
    # The button names the receipt it removes: a double tap, or an older summary's button,
    # removes nothing more.
    remove = f"{REMOVE_LAST}:{len(expense.receipts)}"
    rows.append((Button(_say(expense, ctx, "expense.button.remove_last"), remove),))
    rows.append((Button(_say(expense, ctx, "expense.button.confirm"), "expense.confirm"),))
    return Reply(text, tuple(rows))


def _status(expense: Expense, ctx: ClaimContext) -> str:
    key = "expense.status_paid" if expense.standing_payments else "expense.status_claimed"
    return _say(
        expense,
        ctx,
        key,
        claimed=_amount(expense, expense.claimed_cents),
        paid=_amount(expense, expense.paid_cents),
    )


def expense_cap(expense: Expense, rules: ExpenseRules) -> int:
    return rules.cap_cents(expense.travel)


def _to(expense: Expense, ctx: ClaimContext, **changes: Any) -> ClaimOutcome:
    new = replace(expense, **changes)
    return ClaimOutcome(new, (_prompt(new, ctx),))


def _refuse(expense: Expense, ctx: ClaimContext, refusal: Refusal) -> ClaimOutcome:
    """Say what is wrong, ask the step's question again, and change nothing."""
    question = _prompt(expense, ctx)
    text = f"{_say(expense, ctx, refusal.reason, **refusal.params)}\n\n{question.text}"
    return ClaimOutcome(expense, (Reply(text, question.buttons),))


def _take_receipt(expense: Expense, receipt: Receipt, ctx: ClaimContext) -> ClaimOutcome:
    rules = ctx.rules
    if receipt.size > rules.receipt_max_bytes:
        maximum = rules.receipt_max_mb
        return _refuse(expense, ctx, Refusal("expense.refusal.too_big", {"max": maximum}))
    if any(claimed.receipt.sha256 == receipt.sha256 for claimed in expense.receipts):
        return _refuse(expense, ctx, Refusal("expense.refusal.duplicate"))
    if len(expense.receipts) >= rules.max_receipts:
        maximum = str(rules.max_receipts)
        return _refuse(expense, ctx, Refusal("expense.refusal.too_many", {"max": maximum}))
    claimed = ClaimedReceipt(receipt, ctx.now)
    return _to(expense, ctx, step=ClaimStep.AMOUNT, receipts=(*expense.receipts, claimed))


def _stale(expense: Expense, ctx: ClaimContext) -> ClaimOutcome:
    return _refuse(expense, ctx, Refusal("remind.stale_button"))


def _receipt(expense: Expense, event: ClaimInput, ctx: ClaimContext) -> ClaimOutcome:
    """Waits for a photo or a PDF; once one is typed in, the summary is one press away."""
    if isinstance(event, Receipt):
        return _take_receipt(expense, event, ctx)
    if event == Press("expense.summary") and expense.receipts:
        return _to(expense, ctx, step=ClaimStep.SUMMARY)
    if isinstance(event, Press):
        return _stale(expense, ctx)
    return _refuse(expense, ctx, Refusal("expense.refusal.not_a_receipt"))


def _amount_step(expense: Expense, event: ClaimInput, ctx: ClaimContext) -> ClaimOutcome:
    """Reads the amount of the receipt just sent, or drops that receipt."""
    if isinstance(event, Text):
        cents = parse_amount(event.text, ctx.rules.amount_max_eur * 100)
        if isinstance(cents, Refusal):
            return _refuse(expense, ctx, cents)
        last = replace(expense.receipts[-1], amount_cents=cents)
        return _to(expense, ctx, step=ClaimStep.SUMMARY, receipts=(*expense.receipts[:-1], last))
    if event == Press("expense.drop"):
        kept = expense.receipts[:-1]
        return _to(
            expense, ctx, step=ClaimStep.SUMMARY if kept else ClaimStep.RECEIPT, receipts=kept
        )
    if isinstance(event, Receipt):
        return _refuse(expense, ctx, Refusal("expense.refusal.amount_first"))
    return _stale(expense, ctx)


def _summary_step(expense: Expense, event: ClaimInput, ctx: ClaimContext) -> ClaimOutcome:
    """Adds a receipt, removes the last one, or confirms the claim."""
    if isinstance(event, Receipt):
        return _take_receipt(expense, event, ctx)
    if event == Press("expense.add"):
        if len(expense.receipts) >= ctx.rules.max_receipts:
            maximum = str(ctx.rules.max_receipts)
            return _refuse(expense, ctx, Refusal("expense.refusal.too_many", {"max": maximum}))
        return _to(expense, ctx, step=ClaimStep.RECEIPT)
    if event == Press(f"{REMOVE_LAST}:{len(expense.receipts)}"):
        kept = expense.receipts[:-1]
        return _to(
            expense, ctx, step=ClaimStep.SUMMARY if kept else ClaimStep.RECEIPT, receipts=kept
        )
    if event == Press("expense.confirm"):
        new = replace(
            expense, step=ClaimStep.SUBMITTED, claimed_cents=expense.typed_cents, claimed_at=ctx.now
        )
        thanks = _say(new, ctx, "expense.submitted", total=_amount(new, new.claimed_cents))
        return ClaimOutcome(new, (Reply(thanks),))
    if isinstance(event, Press):
        return _stale(expense, ctx)
    return _refuse(expense, ctx, Refusal("remind.use_buttons"))


def _submitted(expense: Expense, event: ClaimInput, ctx: ClaimContext) -> ClaimOutcome:
    """A receipt forgotten can still be added until a payment is made; then it is settled."""
    if isinstance(event, Receipt):
        if expense.standing_payments:
            return ClaimOutcome(expense, (Reply(_say(expense, ctx, "expense.already_paid")),))
        return _take_receipt(expense, event, ctx)
    return ClaimOutcome(expense, (Reply(_status(expense, ctx)),))


def _closed(expense: Expense, event: ClaimInput, ctx: ClaimContext) -> ClaimOutcome:
    """The place ended, or the claim was refused: whatever the winner sends, they are told so,
    and what was paid stays."""
    if expense.refused_at is not None:
        text = _say(expense, ctx, "expense.refused_status")
    elif expense.standing_payments:
        text = _say(expense, ctx, "expense.closed_paid", paid=_amount(expense, expense.paid_cents))
    else:
        text = _say(expense, ctx, "expense.closed")
    return ClaimOutcome(expense, (Reply(text),))


TABLE: dict[ClaimStep, Callable[[Expense, ClaimInput, ClaimContext], ClaimOutcome]] = {
    ClaimStep.RECEIPT: _receipt,
    ClaimStep.AMOUNT: _amount_step,
    ClaimStep.SUMMARY: _summary_step,
    ClaimStep.SUBMITTED: _submitted,
    ClaimStep.CLOSED: _closed,
}
