"""What the admins do with expenses, as plain functions: the `/frais` list and detail, the
checks of `/rembourser`, and the mandataire's CSV.

Every amount is whole cents. A payment is refused above the cap of the winner's area class
(frozen at the draw), whatever the reason; above the amount claimed only with `forcer <reason>`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, tzinfo
from enum import StrEnum

from conversations.admin import neutralised
from conversations.admin_effects import Audit, TellPerson
from conversations.catalogue import Catalogue
from conversations.expenses import ClaimStep, Expense, ExpenseRules, Payment, expense_cap
from conversations.model import Area, Travel
from conversations.money import csv_amount, format_amount, parse_amount
from conversations.validators import Refusal


class ExpenseStatus(StrEnum):
    AWAITING_RECEIPTS = "awaiting_receipts"
    CLAIMED = "claimed"
    PARTLY_PAID = "partly_paid"
    PAID = "paid"
    # The winner's place ended: not payable, its cap not counted.
    CLOSED = "closed"
    # The claim was refused after checking (`/refuser_frais`): closed too, and says why.
    REFUSED = "refused"

    @property
    def owed(self) -> bool:
        """Whether its cap still counts in the totals: nothing more is paid on a closed one."""
        return self not in (ExpenseStatus.CLOSED, ExpenseStatus.REFUSED)


def expense_status(expense: Expense, rules: ExpenseRules) -> ExpenseStatus:
    """Paid once what is due (the claim, within the cap) is paid; a payment forced before any
    claim also settles it. A closed expense is closed (or refused), paid or not."""
    if expense.step == ClaimStep.CLOSED:
        return ExpenseStatus.REFUSED if expense.refused_at else ExpenseStatus.CLOSED
    due = min(expense.claimed_cents, expense_cap(expense, rules))
    paid = expense.paid_cents
    if paid and paid >= due:
        return ExpenseStatus.PAID
    if paid:
        return ExpenseStatus.PARTLY_PAID
    return ExpenseStatus.CLAIMED if expense.claimed_at else ExpenseStatus.AWAITING_RECEIPTS


@dataclass(frozen=True)
class ExpenseRow:
    """One line of `/frais`."""

    ticket: str
    area: Area
    travel: Travel
    cap_cents: int
    receipts: int
    claimed_cents: int
    paid_cents: int
    status: ExpenseStatus


def expense_row(expense: Expense, rules: ExpenseRules) -> ExpenseRow:
    return ExpenseRow(
        ticket=expense.ticket,
        area=expense.area,
        travel=expense.travel,
        cap_cents=expense_cap(expense, rules),
        receipts=len(expense.receipts),
        claimed_cents=expense.claimed_cents,
        paid_cents=expense.paid_cents,
        status=expense_status(expense, rules),
    )


def row_text(row: ExpenseRow, name: str, texts: Catalogue, language: str) -> str:
    return texts.render(
        language,
        "admin.expense.row",
        ticket=row.ticket,
        name=name,
        area=texts.render(language, f"area.{row.area}"),
        travel=texts.render(language, f"admin.expense.travel.{row.travel}"),
        cap=format_amount(row.cap_cents, language),
        receipts=str(row.receipts),
        claimed=format_amount(row.claimed_cents, language),
        paid=format_amount(row.paid_cents, language),
        status=texts.render(language, f"admin.expense.status.{row.status}"),
    )


def detail_text(
    expense: Expense,
    name: str,
    rules: ExpenseRules,
    texts: Catalogue,
    language: str,
    zone: tzinfo,
) -> str:
    """`/frais TICKET`: the row, then each receipt with its hash, then each payment."""
    lines = [row_text(expense_row(expense, rules), name, texts, language)]
    for number, claimed in enumerate(expense.receipts, 1):
        amount = claimed.amount_cents
        lines.append(
            texts.render(
                language,
                "admin.expense.receipt",
                number=str(number),
                kind=texts.render(language, f"expense.kind.{claimed.receipt.kind}"),
                amount=format_amount(amount, language) if amount is not None else "—",
                sha256=claimed.receipt.sha256,
                day=_day(claimed.received_at, zone).isoformat(),
            )
        )
    for number, payment in enumerate(expense.payments, 1):
        key = "admin.expense.payment_forced" if payment.override_reason else "admin.expense.payment"
        lines.append(
            texts.render(
                language,
                key,
                number=str(number),
                amount=format_amount(payment.amount_cents, language),
                day=_day(payment.paid_at, zone).isoformat(),
                reference=payment.reference or "—",
                reason=payment.override_reason or "",
            )
        )
        if payment.cancelled_at is not None:
            lines.append(
                texts.render(
                    language,
                    "admin.expense.payment_cancelled",
                    day=_day(payment.cancelled_at, zone).isoformat(),
                    reason=payment.cancel_reason or "",
                )
            )
    if expense.refused_at is not None:
        lines.append(
            texts.render(
                language,
                "admin.expense.refused_line",
                day=_day(expense.refused_at, zone).isoformat(),
                reason=expense.refusal_reason or "",
            )
        )
    return "\n".join(lines)


def _day(moment: datetime, zone: tzinfo) -> date:
    return moment.astimezone(zone).date()


@dataclass(frozen=True)
class PaymentRequest:
    ticket: str
    amount_cents: int
    reference: str | None = None
    override_reason: str | None = None


# The word before the reason that lets an admin pay more than was claimed.
OVERRIDE_WORDS = ("forcer", "override")
# An amount may be typed with spaces (`1 234,56 €`): at most this many words.
_AMOUNT_WORDS = 4


def parse_payment(argument: str, rules: ExpenseRules) -> PaymentRequest | Refusal:
    """`TICKET MONTANT [référence] [forcer raison…]`.

    The amount is the longest run of words after the ticket that reads as an amount, so that a
    mistyped `1 234,56` is read whole (and then refused above the cap) rather than as 1 € with a
    reference of `234,56`.
    """
    every = argument.split()
    cut = next((i for i, w in enumerate(every) if w.casefold() in OVERRIDE_WORDS), None)
    words = every if cut is None else every[:cut]
    reason = None if cut is None else " ".join(every[cut + 1 :])
    if len(words) < 2:
        return Refusal("admin.expense.usage")
    ticket, rest = words[0].upper(), words[1:]
    maximum = rules.amount_max_eur * 100
    amount: int | Refusal = Refusal("admin.expense.usage")
    taken = 1
    for taken in range(min(_AMOUNT_WORDS, len(rest)), 0, -1):
        amount = parse_amount(" ".join(rest[:taken]), maximum)
        if amount != Refusal("money.unreadable"):
            break
    if isinstance(amount, Refusal):
        return amount
    reference = " ".join(rest[taken:]) or None
    if reference and _reads_as_amount(rest[taken], maximum):
        # `/rembourser T 12 50` meant 12,50 €, not 12 € with the reference "50".
        typed = {"ticket": ticket, "amount": " ".join(rest[:taken]), "reference": rest[taken]}
        return Refusal("admin.expense.reference_is_amount", typed)
    if reference and len(reference) > rules.reference_max_length:
        limit = {"max": str(rules.reference_max_length)}
        return Refusal("admin.expense.reference_too_long", limit)
    if reason == "":
        return Refusal("admin.expense.reason_missing")
    if reason and len(reason) > rules.reason_max_length:
        return Refusal("admin.expense.reason_too_long", {"max": str(rules.reason_max_length)})
    return PaymentRequest(ticket, amount, reference, reason)


def _reads_as_amount(word: str, maximum_cents: int) -> bool:
    """A reference whose first word is itself an amount /rembourser would take (`50`, `50,00`,
    `0,50`) is taken for a mistyped amount; one with a letter or a sign in it (`VIR-0412`,
    `réf-50`), or a number above EXPENSE_AMOUNT_MAX_EUR (a bank's long number), is clearly not."""
    return isinstance(parse_amount(word, maximum_cents), int)


@dataclass(frozen=True)
class RecordPayment:
    ticket: str
    payment: Payment


@dataclass(frozen=True)
class PaymentOutcome:
    expense: Expense
    effects: tuple[RecordPayment | Audit | TellPerson, ...]


def pay(
    expense: Expense,
    request: PaymentRequest,
    admin_id: int,
    now: datetime,
    rules: ExpenseRules,
    language: str,
) -> PaymentOutcome | Refusal:
    """Record a payment: within the cap always, within the claim unless forced with a reason;
    the winner is told, and the audit log says who paid what."""
    cap = expense_cap(expense, rules)
    paid = expense.paid_cents
    after = paid + request.amount_cents
    amounts = {
        "cap": format_amount(cap, language),
        "paid": format_amount(paid, language),
        "claimed": format_amount(expense.claimed_cents, language),
        "room": format_amount(max(cap - paid, 0), language),
    }
    if expense.step == ClaimStep.CLOSED:
        closed = "admin.expense.closed_refused" if expense.refused_at else "admin.expense.closed"
        return Refusal(closed, {"ticket": expense.ticket})
    if _repeated(expense, request, now, rules):
        return Refusal("admin.expense.repeat", {"ticket": expense.ticket})
    if after > cap:
        return Refusal("admin.expense.above_cap", amounts)
    if after > expense.claimed_cents and request.override_reason is None:
        return Refusal("admin.expense.above_claimed", amounts)
    payment = Payment(
        request.amount_cents, now, admin_id, request.reference, request.override_reason
    )
    new = replace(expense, payments=(*expense.payments, payment))
    details = f"{expense.ticket} {csv_amount(request.amount_cents)}"
    typed = []
    if request.reference:
        typed.append(f"ref={request.reference}")
    if request.override_reason:
        typed.append(f"forced={request.override_reason}")
    told = TellPerson(
        key=f"expense-paid:{expense.ticket}:{len(new.payments)}",
        user_id=expense.user_id,
        language=expense.language,
        text_key="expense.paid",
        params=(
            ("amount", format_amount(request.amount_cents, expense.language)),
            ("total", format_amount(new.paid_cents, expense.language)),
        ),
    )
    effects = (
        RecordPayment(expense.ticket, payment),
        Audit(admin_id, "expense.pay", details, " ".join(typed), expense.ticket),
        told,
    )
    return PaymentOutcome(new, effects)


def _repeated(
    expense: Expense, request: PaymentRequest, now: datetime, rules: ExpenseRules
) -> bool:
    """A double tap, or the same command sent again: a reference names one transfer, so it is
    recorded once; without one, the same amount within the repeat window is taken as a repeat."""
    for payment in expense.standing_payments:
        if request.reference is not None and payment.reference == request.reference:
            return True
        if (
            request.reference is None
            and payment.reference is None
            and payment.amount_cents == request.amount_cents
            and now - payment.paid_at < rules.repeat_window
        ):
            return True
    return False


@dataclass(frozen=True)
class CancelRequest:
    ticket: str
    # The payment's number as /frais TICKET shows it; None: the only one not cancelled.
    number: int | None
    reason: str


_NUMBER_MARKS = ("n°", "no", "#")


def parse_cancel(argument: str, rules: ExpenseRules) -> CancelRequest | Refusal:
    """`TICKET [numéro] raison…`: the payment's number (`2`, `n°2`, `#2`) is needed only when
    more than one payment stands; the reason always (it goes to the audit log)."""
    words = argument.split()
    if not words:
        return Refusal("admin.expense.cancel_usage")
    ticket, rest = words[0].upper(), words[1:]
    number = None
    if rest:
        first = rest[0].casefold()
        for mark in _NUMBER_MARKS:
            if first.startswith(mark) and first[len(mark) :].isdigit():
                first = first[len(mark) :]
                break
        if first.isdigit() and first.isascii():
            number, rest = int(first), rest[1:]
    reason = " ".join(rest)
    if not reason:
        return Refusal("admin.expense.cancel_reason_missing", {"ticket": ticket})
    if len(reason) > rules.reason_max_length:
        return Refusal("admin.expense.reason_too_long", {"max": str(rules.reason_max_length)})
    return CancelRequest(ticket, number, reason)


@dataclass(frozen=True)
class CancelPayment:
    ticket: str
    # The payment's number within its expense (its key, from 1).
    seq: int


@dataclass(frozen=True)
class CancelOutcome:
    expense: Expense
    cancelled: CancelPayment
    audit: Audit
    # The winner's notice of the correction, for when they had been told of the payment.
    told: TellPerson


def cancel_payment(
    expense: Expense, request: CancelRequest, admin_id: int, now: datetime
) -> CancelOutcome | Refusal:
    """Cancel a payment recorded by mistake: it stays listed, marked, and counts for nothing
    (the amount paid, the status and the mandataire's line follow). Cancelled once: the same
    command again finds it cancelled (or no payment left standing) and changes nothing."""
    ticket = {"ticket": expense.ticket}
    standing = [n for n, p in enumerate(expense.payments, 1) if p.standing]
    if request.number is None:
        if not standing:
            return Refusal("admin.expense.cancel_none", ticket)
        if len(standing) > 1:
            numbers = ", ".join(f"n°{n}" for n in standing)
            return Refusal("admin.expense.cancel_which", {**ticket, "numbers": numbers})
        seq = standing[0]
    else:
        seq = request.number
        if not 1 <= seq <= len(expense.payments):
            return Refusal("admin.expense.cancel_unknown", {**ticket, "number": str(seq)})
        if seq not in standing:
            return Refusal("admin.expense.cancel_already", {**ticket, "number": str(seq)})
    payment = expense.payments[seq - 1]
    cancelled = replace(
        payment, cancelled_at=now, cancelled_by=admin_id, cancel_reason=request.reason
    )
    payments = (*expense.payments[: seq - 1], cancelled, *expense.payments[seq:])
    new = replace(expense, payments=payments)
    details = f"{expense.ticket} n°{seq} {csv_amount(payment.amount_cents)}"
    told = TellPerson(
        key=f"expense-paid-cancelled:{expense.ticket}:{seq}",
        user_id=expense.user_id,
        language=expense.language,
        text_key="expense.payment_cancelled",
        params=(
            ("amount", format_amount(payment.amount_cents, expense.language)),
            ("total", format_amount(new.paid_cents, expense.language)),
        ),
    )
    return CancelOutcome(
        new,
        CancelPayment(expense.ticket, seq),
        Audit(admin_id, "expense.pay.cancel", details, f"reason={request.reason}", expense.ticket),
        told,
    )


@dataclass(frozen=True)
class RefuseRequest:
    ticket: str
    reason: str


def parse_refusal(argument: str, rules: ExpenseRules) -> RefuseRequest | Refusal:
    """`TICKET raison…`: the reason is required (it goes to the audit log)."""
    words = argument.split()
    if not words:
        return Refusal("admin.expense.refuse_usage")
    ticket, reason = words[0].upper(), " ".join(words[1:])
    if not reason:
        return Refusal("admin.expense.refuse_reason_missing", {"ticket": ticket})
    if len(reason) > rules.reason_max_length:
        return Refusal("admin.expense.reason_too_long", {"max": str(rules.reason_max_length)})
    return RefuseRequest(ticket, reason)


@dataclass(frozen=True)
class RefuseOutcome:
    expense: Expense
    audit: Audit
    # The winner is told their claim is not paid (the reason stays in the audit log).
    told: TellPerson


def refuse_claim(
    expense: Expense, request: RefuseRequest, admin_id: int, now: datetime, language: str
) -> RefuseOutcome | Refusal:
    """Close a claim the mandataire decides not to pay, with a reason: not payable any more,
    its cap no longer counted, its receipts kept for the accounts, and the purge no longer keeps
    it as owed. Refused while a payment stands (cancel it first if it was a mistake: a claim
    paid in part is not refused), and once closed: a double tap or the command delivered
    again changes nothing."""
    ticket = {"ticket": expense.ticket}
    if expense.step == ClaimStep.CLOSED:
        if expense.refused_at is not None:
            return Refusal("admin.expense.refuse_already", ticket)
        return Refusal("admin.expense.closed", ticket)
    if expense.standing_payments:
        paid = format_amount(expense.paid_cents, language)
        return Refusal("admin.expense.refuse_paid", {**ticket, "paid": paid})
    new = replace(
        expense,
        step=ClaimStep.CLOSED,
        refused_at=now,
        refused_by=admin_id,
        refusal_reason=request.reason,
    )
    details = f"{expense.ticket} {csv_amount(expense.claimed_cents)}"
    told = TellPerson(
        key=f"expense-refused:{expense.ticket}",
        user_id=expense.user_id,
        language=expense.language,
        text_key="expense.refused",
        params=(),
    )
    audit = Audit(admin_id, "expense.refuse", details, f"reason={request.reason}", expense.ticket)
    return RefuseOutcome(new, audit, told)


@dataclass(frozen=True)
class MandataireLine:
    """What the campaign accounts keep of an expense: the purge leaves exactly this."""

    ticket: str
    first_name: str
    last_name: str
    postcode: str
    area: Area
    travel: Travel
    cap_cents: int
    claimed_cents: int
    paid_cents: int
    # The day of the last payment, in the operation's zone.
    paid_on: date | None
    references: tuple[str, ...]
    receipt_sha256: tuple[str, ...]
    # A closed expense (the winner's place ended) or a refused one is listed, its cap not
    # counted in the total.
    status: ExpenseStatus


def mandataire_line(
    expense: Expense,
    first_name: str,
    last_name: str,
    postcode: str,
    rules: ExpenseRules,
    zone: tzinfo,
) -> MandataireLine:
    standing = expense.standing_payments
    last = standing[-1].paid_at if standing else None
    return MandataireLine(
        ticket=expense.ticket,
        first_name=first_name,
        last_name=last_name,
        postcode=postcode,
        area=expense.area,
        travel=expense.travel,
        cap_cents=expense_cap(expense, rules),
        claimed_cents=expense.claimed_cents,
        paid_cents=expense.paid_cents,
        paid_on=_day(last, zone) if last else None,
        references=tuple(p.reference for p in standing if p.reference),
        receipt_sha256=tuple(r.receipt.sha256 for r in expense.receipts),
        status=expense_status(expense, rules),
    )


EXPENSE_COLUMNS = (
    "ticket", "first_name", "last_name", "postcode", "area", "travel", "cap_eur", "claimed_eur",
    "paid_eur", "paid_on", "payment_references", "receipt_sha256", "status",
)  # fmt: skip
TOTAL_LABEL = "TOTAL"


def expenses_csv(lines: Iterable[MandataireLine]) -> bytes:
    """One line per expense, in ticket order, then the totals: the export's safe format (UTF-8
    with a BOM, `;` between cells, no cell a spreadsheet would run as a formula)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(EXPENSE_COLUMNS)
    ordered = sorted(lines, key=lambda line: line.ticket)
    for line in ordered:
        row = (
            line.ticket, line.first_name, line.last_name, line.postcode, str(line.area),
            str(line.travel), csv_amount(line.cap_cents), csv_amount(line.claimed_cents),
            csv_amount(line.paid_cents), line.paid_on.isoformat() if line.paid_on else "",
            ", ".join(line.references), " ".join(line.receipt_sha256), str(line.status),
        )  # fmt: skip
        writer.writerow([neutralised(value) for value in row])
    totals = (
        TOTAL_LABEL, "", "", "", "", "",
        csv_amount(sum(line.cap_cents for line in ordered if line.status.owed)),
        csv_amount(sum(line.claimed_cents for line in ordered)),
        csv_amount(sum(line.paid_cents for line in ordered)),
        "", "", "", "",
    )  # fmt: skip
    writer.writerow(totals)
    return "\ufeff".encode() + out.getvalue().encode()
