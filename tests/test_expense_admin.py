"""The admins' side of travel expenses: the list, /rembourser's checks, the mandataire's CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conversations.admin_effects import Audit, TellPerson
from conversations.catalogue import Catalogue
from conversations.expense_admin import (
    EXPENSE_COLUMNS,
    CancelRequest,
    ExpenseStatus,
    MandataireLine,
    PaymentRequest,
    RecordPayment,
    RefuseRequest,
    cancel_payment,
    detail_text,
    expense_row,
    expense_status,
    expenses_csv,
    mandataire_line,
    parse_cancel,
    parse_payment,
    parse_refusal,
    pay,
    refuse_claim,
    row_text,
)
from conversations.expenses import (
    ClaimedReceipt,
    ClaimStep,
    Expense,
    ExpenseRules,
    Payment,
    Receipt,
    ReceiptKind,
)
from conversations.model import Area
from conversations.policy import Travel
from conversations.validators import Refusal
from tests.conftest import NOW

RULES = ExpenseRules()
PARIS = ZoneInfo("Europe/Paris")


def expense(
    claimed: int = 0, travel: Travel = Travel.TRAIN, paid: tuple[int, ...] = (), ticket: str = "K7"
) -> Expense:
    receipts = (ClaimedReceipt(Receipt("f1", "u1", "a" * 64, ReceiptKind.PHOTO, 10), NOW, claimed),)
    return Expense(
        ticket=ticket,
        user_id=42,
        language="fr",
        area=Area.PROVINCE if travel == Travel.TRAIN else Area.OVERSEAS,
        travel=travel,
        opened_at=NOW,
        step=ClaimStep.SUBMITTED if claimed else ClaimStep.RECEIPT,
        receipts=receipts if claimed else (),
        claimed_cents=claimed,
        claimed_at=NOW if claimed else None,
        payments=tuple(Payment(cents, NOW, 1, f"VIR-{n}") for n, cents in enumerate(paid)),
    )


@pytest.mark.parametrize(
    ("claimed", "paid", "status"),
    [
        (0, (), ExpenseStatus.AWAITING_RECEIPTS),
        (8550, (), ExpenseStatus.CLAIMED),
        (8550, (5000,), ExpenseStatus.PARTLY_PAID),
        (8550, (5000, 3550), ExpenseStatus.PAID),
        # Above the cap, paying the cap settles it.
        (25000, (20000,), ExpenseStatus.PAID),
        # Forced before any receipt came.
        (0, (3000,), ExpenseStatus.PAID),
    ],
)
def test_status_follows_the_claim_the_cap_and_the_payments(
    claimed: int, paid: tuple[int, ...], status: ExpenseStatus
) -> None:
    assert expense_status(expense(claimed, paid=paid), RULES) == status


def test_a_row_gives_entitlement_cap_receipts_claimed_paid_and_status(texts: Catalogue) -> None:
    row = expense_row(expense(25000, Travel.ARRANGED, (10000,)), RULES)
    assert (row.cap_cents, row.receipts, row.claimed_cents, row.paid_cents) == (
        70000,
        1,
        25000,
        10000,
    )
    assert (row.area, row.travel, row.status) == (Area.OVERSEAS, Travel.ARRANGED, "partly_paid")
    text = row_text(row, "Zoé Martin", texts, "fr")
    for part in (
        "K7",
        "Zoé Martin",
        "outre-mer",
        "700,00\u00a0€",
        "250,00\u00a0€",
        "100,00\u00a0€",
    ):
        assert part in text
    assert texts.render("fr", "admin.expense.status.partly_paid") in text


def test_the_detail_shows_each_receipt_hash_and_each_payment(texts: Catalogue) -> None:
    forced = Payment(500, NOW, 1, None, "billet retour perdu")
    shown = detail_text(
        replace(expense(8550, paid=(8550,)), payments=(Payment(8550, NOW, 1, "VIR-0"), forced)),
        "Zoé Martin",
        RULES,
        texts,
        "fr",
        PARIS,
    )
    assert "a" * 64 in shown and "VIR-0" in shown and "billet retour perdu" in shown
    assert NOW.astimezone(PARIS).date().isoformat() in shown


@pytest.mark.parametrize(
    ("argument", "request_"),
    [
        ("K7 85,50", PaymentRequest("K7", 8550)),
        ("k7 85,50 € VIR-0412", PaymentRequest("K7", 8550, "VIR-0412")),
        ("K7 €85.50 VIR 0412", PaymentRequest("K7", 8550, "VIR 0412")),
        ("K7 85 forcer billet perdu", PaymentRequest("K7", 8500, None, "billet perdu")),
        ("K7 85 VIR-1 override lost ticket", PaymentRequest("K7", 8500, "VIR-1", "lost ticket")),
        # A mistyped thousand is read whole, never as 1 € with a reference of "234,56".
        ("K7 1 234,56", PaymentRequest("K7", 123456)),
        ("K7 120 500123", PaymentRequest("K7", 12000, "500123")),
        # A reference with a letter or a sign in it is clearly not an amount.
        ("K7 12 réf-50", PaymentRequest("K7", 1200, "réf-50")),
        ("K7 12 N°50 virement", PaymentRequest("K7", 1200, "N°50 virement")),
    ],
)
def test_rembourser_reads_ticket_amount_reference_and_override(
    argument: str, request_: PaymentRequest
) -> None:
    assert parse_payment(argument, RULES) == request_


@pytest.mark.parametrize(
    ("argument", "reason"),
    [
        ("", "admin.expense.usage"),
        ("K7", "admin.expense.usage"),
        ("K7 forcer raison", "admin.expense.usage"),
        ("K7 -5", "money.negative"),
        ("K7 0", "money.zero"),
        ("K7 85,555", "money.decimals"),
        ("K7 beaucoup", "money.unreadable"),
        ("K7 99999", "money.too_large"),
        ("K7 85 forcer", "admin.expense.reason_missing"),
        (f"K7 85 {'R' * 101}", "admin.expense.reference_too_long"),
        (f"K7 85 forcer {'r' * 301}", "admin.expense.reason_too_long"),
        # The reference is itself an amount: 12,50 € was meant, not 12 € and "50".
        ("K7 12 50", "admin.expense.reference_is_amount"),
        ("K7 12 50,00", "admin.expense.reference_is_amount"),
        ("K7 12 0,50 VIR-1", "admin.expense.reference_is_amount"),
        ("K7 12 50 forcer billet perdu", "admin.expense.reference_is_amount"),
    ],
)
def test_rembourser_refuses_what_it_cannot_read(argument: str, reason: str) -> None:
    refusal = parse_payment(argument, RULES)
    assert isinstance(refusal, Refusal) and refusal.reason == reason


LATER = NOW + timedelta(days=3)


def test_a_payment_within_the_claim_is_recorded_audited_and_told() -> None:
    before = expense(8550)
    outcome = pay(before, PaymentRequest("K7", 8550, "VIR-0412"), 7, LATER, RULES, "fr")
    assert not isinstance(outcome, Refusal)
    payment = Payment(8550, LATER, 7, "VIR-0412")
    assert outcome.expense.payments == (payment,)
    assert outcome.effects == (
        RecordPayment("K7", payment),
        Audit(7, "expense.pay", "K7 85,50", "ref=VIR-0412", "K7"),
        TellPerson(
            "expense-paid:K7:1",
            42,
            "fr",
            "expense.paid",
            (("amount", "85,50\u00a0€"), ("total", "85,50\u00a0€")),
        ),
    )
    assert expense_status(outcome.expense, RULES) == ExpenseStatus.PAID


@pytest.mark.parametrize(
    ("claimed", "paid", "request_", "reason"),
    [
        # Above the train cap, even forced.
        (30000, (), PaymentRequest("K7", 20001), "admin.expense.above_cap"),
        (30000, (), PaymentRequest("K7", 20001, None, "billet cher"), "admin.expense.above_cap"),
        (30000, (15000,), PaymentRequest("K7", 5001, None, "x"), "admin.expense.above_cap"),
        # Above the claim, without an override.
        (8550, (), PaymentRequest("K7", 8551), "admin.expense.above_claimed"),
        (8550, (8000,), PaymentRequest("K7", 600), "admin.expense.above_claimed"),
        (0, (), PaymentRequest("K7", 100), "admin.expense.above_claimed"),
    ],
)
def test_a_payment_above_the_cap_or_the_claim_is_refused(
    claimed: int, paid: tuple[int, ...], request_: PaymentRequest, reason: str
) -> None:
    refusal = pay(expense(claimed, paid=paid), request_, 7, LATER, RULES, "fr")
    assert isinstance(refusal, Refusal) and refusal.reason == reason


def test_an_override_with_a_reason_pays_above_the_claim_within_the_cap() -> None:
    request_ = PaymentRequest("K7", 9000, None, "billet retour acheté en gare")
    outcome = pay(expense(8550), request_, 7, LATER, RULES, "fr")
    assert not isinstance(outcome, Refusal)
    assert outcome.expense.payments[0].override_reason == "billet retour acheté en gare"
    audit = next(effect for effect in outcome.effects if isinstance(effect, Audit))
    assert (audit.details, audit.note) == ("K7 90,00", "forced=billet retour acheté en gare")


def test_the_arranged_cap_applies_to_arranged_travel() -> None:
    outcome = pay(
        expense(70000, Travel.ARRANGED), PaymentRequest("K7", 70000), 7, LATER, RULES, "fr"
    )
    assert not isinstance(outcome, Refusal)
    refused = pay(outcome.expense, PaymentRequest("K7", 1, None, "x"), 7, LATER, RULES, "fr")
    assert isinstance(refused, Refusal) and refused.reason == "admin.expense.above_cap"


@given(st.lists(st.integers(1, 30000), max_size=8), st.sampled_from(list(Travel)[1:]))
def test_payments_never_add_up_above_the_cap(amounts: list[int], travel: Travel) -> None:
    current = expense(100000, travel)
    for cents in amounts:
        outcome = pay(current, PaymentRequest("K7", cents, None, "forcé"), 7, LATER, RULES, "fr")
        if not isinstance(outcome, Refusal):
            current = outcome.expense
    assert current.paid_cents <= RULES.cap_cents(travel)


def _rows(data: bytes) -> list[list[str]]:
    assert data.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))


def test_the_mandataire_csv_has_one_line_per_expense_and_the_totals() -> None:
    evening = datetime(2027, 3, 15, 23, 30, tzinfo=UTC)  # already the 16th in Paris
    paid = replace(expense(8550, ticket="B2"), payments=(Payment(8550, evening, 7, "VIR-1"),))
    lines = [
        mandataire_line(paid, "Zoé", "Martin", "69003", RULES, PARIS),
        mandataire_line(
            expense(25000, Travel.ARRANGED, ticket="A1"), "=cmd", "Léa", "97400", RULES, PARIS
        ),
    ]
    rows = _rows(expenses_csv(lines))
    assert tuple(rows[0]) == EXPENSE_COLUMNS
    assert rows[1] == [
        "A1", "'=cmd", "Léa", "97400", "overseas", "arranged", "700,00", "250,00", "0,00", "", "",
        "a" * 64, "claimed",
    ]  # fmt: skip
    assert rows[2] == [
        "B2", "Zoé", "Martin", "69003", "province", "train", "200,00", "85,50", "85,50",
        "2027-03-16", "VIR-1", "a" * 64, "paid",
    ]  # fmt: skip
    assert rows[3] == ["TOTAL", "", "", "", "", "", "900,00", "335,50", "85,50", "", "", "", ""]
    assert len(rows) == 4


def test_an_empty_csv_still_has_its_header_and_zero_totals() -> None:
    rows = _rows(expenses_csv([]))
    assert rows[1][6:9] == ["0,00", "0,00", "0,00"] and len(rows) == 2


def test_a_line_keeps_every_reference_and_receipt_hash() -> None:
    two = replace(
        expense(8550, paid=(5000, 3550)),
        receipts=(
            *expense(8550).receipts,
            ClaimedReceipt(Receipt("f2", "u2", "b" * 64, ReceiptKind.PDF, 9), NOW, 0),
        ),
    )
    line = mandataire_line(two, "Zoé", "Martin", "69003", RULES, PARIS)
    assert line == MandataireLine(
        "K7", "Zoé", "Martin", "69003", Area.PROVINCE, Travel.TRAIN, 20000, 8550, 8550,
        NOW.astimezone(PARIS).date(), ("VIR-0", "VIR-1"), ("a" * 64, "b" * 64),
        ExpenseStatus.PAID,
    )  # fmt: skip


def test_the_same_payment_sent_twice_is_recorded_once() -> None:
    first = pay(expense(8550), PaymentRequest("K7", 4000, "VIR-1"), 7, LATER, RULES, "fr")
    assert not isinstance(first, Refusal)
    paid = first.expense
    # A reference names one transfer: the same one again is a repeat, however late.
    much_later = LATER + timedelta(days=3)
    again = pay(paid, PaymentRequest("K7", 4000, "VIR-1"), 7, much_later, RULES, "fr")
    assert again == Refusal("admin.expense.repeat", {"ticket": "K7"})
    other = pay(paid, PaymentRequest("K7", 4000, "VIR-2"), 7, LATER, RULES, "fr")
    assert not isinstance(other, Refusal)


def test_without_a_reference_the_same_amount_is_a_repeat_only_within_the_window() -> None:
    first = pay(expense(8550), PaymentRequest("K7", 4000), 7, LATER, RULES, "fr")
    assert not isinstance(first, Refusal)
    soon = LATER + RULES.repeat_window - timedelta(seconds=1)
    repeat = pay(first.expense, PaymentRequest("K7", 4000), 7, soon, RULES, "fr")
    assert repeat == Refusal("admin.expense.repeat", {"ticket": "K7"})
    later = LATER + RULES.repeat_window
    assert not isinstance(
        pay(first.expense, PaymentRequest("K7", 4000), 7, later, RULES, "fr"), Refusal
    )
    different = pay(first.expense, PaymentRequest("K7", 4550), 7, soon, RULES, "fr")
    assert not isinstance(different, Refusal)


@pytest.mark.parametrize(
    ("argument", "parsed"),
    [
        ("k7 montant mal tapé", CancelRequest("K7", None, "montant mal tapé")),
        ("K7 2 doublon", CancelRequest("K7", 2, "doublon")),
        ("K7 n°2 doublon", CancelRequest("K7", 2, "doublon")),
        ("K7 #2 doublon du 12", CancelRequest("K7", 2, "doublon du 12")),
        ("K7", Refusal("admin.expense.cancel_reason_missing", {"ticket": "K7"})),
        ("K7 n°2", Refusal("admin.expense.cancel_reason_missing", {"ticket": "K7"})),
        ("", Refusal("admin.expense.cancel_usage")),
        (f"K7 {'r' * 301}", Refusal("admin.expense.reason_too_long", {"max": "300"})),
    ],
)
def test_annuler_remboursement_reads_ticket_number_and_a_required_reason(
    argument: str, parsed: CancelRequest | Refusal
) -> None:
    assert parse_cancel(argument, RULES) == parsed


def test_a_cancelled_payment_stays_listed_and_counts_for_nothing(texts: Catalogue) -> None:
    paid = expense(8550, paid=(1200,))
    assert expense_status(paid, RULES) == ExpenseStatus.PARTLY_PAID
    outcome = cancel_payment(paid, CancelRequest("K7", None, "12,50 et non 12"), 7, LATER)
    assert not isinstance(outcome, Refusal)
    cancelled = outcome.expense
    assert cancelled.paid_cents == 0 and len(cancelled.payments) == 1
    assert cancelled.payments[0].cancel_reason == "12,50 et non 12"
    assert expense_status(cancelled, RULES) == ExpenseStatus.CLAIMED
    assert outcome.audit == Audit(
        7, "expense.pay.cancel", "K7 n°1 12,00", "reason=12,50 et non 12", "K7"
    )
    assert outcome.told.key == "expense-paid-cancelled:K7:1"
    assert dict(outcome.told.params) == {"amount": "12,00\u00a0€", "total": "0,00\u00a0€"}
    line = mandataire_line(cancelled, "Zoé", "Martin", "69003", RULES, PARIS)
    assert line.paid_cents == 0 and line.paid_on is None and line.references == ()
    shown = detail_text(cancelled, "Zoé Martin", RULES, texts, "fr", PARIS)
    assert "n°1 — 12,00\u00a0€" in shown and "annulé le" in shown and "12,50 et non 12" in shown
    # Its reference names no transfer any more: the right payment may use it.
    again = pay(cancelled, PaymentRequest("K7", 1250, "VIR-0"), 7, LATER, RULES, "fr")
    assert not isinstance(again, Refusal) and again.expense.paid_cents == 1250
    # Cancelled once: the same command again changes nothing.
    twice = cancel_payment(cancelled, CancelRequest("K7", None, "encore"), 7, LATER)
    assert twice == Refusal("admin.expense.cancel_none", {"ticket": "K7"})
    named = cancel_payment(cancelled, CancelRequest("K7", 1, "encore"), 7, LATER)
    assert named == Refusal("admin.expense.cancel_already", {"ticket": "K7", "number": "1"})


def test_with_several_payments_standing_the_one_to_cancel_is_named() -> None:
    paid = expense(8550, paid=(4000, 4550))
    which = cancel_payment(paid, CancelRequest("K7", None, "doublon"), 7, LATER)
    assert which == Refusal("admin.expense.cancel_which", {"ticket": "K7", "numbers": "n°1, n°2"})
    unknown = cancel_payment(paid, CancelRequest("K7", 3, "doublon"), 7, LATER)
    assert unknown == Refusal("admin.expense.cancel_unknown", {"ticket": "K7", "number": "3"})
    second = cancel_payment(paid, CancelRequest("K7", 2, "doublon"), 7, LATER)
    assert not isinstance(second, Refusal)
    assert second.cancelled.seq == 2 and second.expense.paid_cents == 4000


@pytest.mark.parametrize(
    ("argument", "parsed"),
    [
        ("k7 billet d’une autre date", RefuseRequest("K7", "billet d’une autre date")),
        ("", Refusal("admin.expense.refuse_usage")),
        ("K7", Refusal("admin.expense.refuse_reason_missing", {"ticket": "K7"})),
        ("K7 " + "x" * 301, Refusal("admin.expense.reason_too_long", {"max": "300"})),
    ],
)
def test_refuser_frais_reads_a_ticket_and_a_required_reason(
    argument: str, parsed: RefuseRequest | Refusal
) -> None:
    assert parse_refusal(argument, RULES) == parsed


def test_a_refused_claim_is_closed_not_payable_and_its_cap_leaves_the_totals(
    texts: Catalogue,
) -> None:
    claimed = expense(8550)
    request = RefuseRequest("K7", "billet d’une autre date")
    outcome = refuse_claim(claimed, request, 7, LATER, "fr")
    assert not isinstance(outcome, Refusal)
    refused = outcome.expense
    assert refused.step == ClaimStep.CLOSED and refused.refused_by == 7
    status = expense_status(refused, RULES)
    assert status == ExpenseStatus.REFUSED and not status.owed
    assert ExpenseStatus.CLOSED.owed is False and ExpenseStatus.CLAIMED.owed
    assert outcome.audit == Audit(
        7, "expense.refuse", "K7 85,50", "reason=billet d’une autre date", "K7"
    )
    assert outcome.told.key == "expense-refused:K7" and outcome.told.user_id == 42
    assert "refusée le" in detail_text(refused, "Zoé Martin", RULES, texts, "fr", PARIS)
    line = mandataire_line(refused, "Zoé", "Martin", "69003", RULES, PARIS)
    csv_rows = list(
        csv.reader(io.StringIO(expenses_csv([line]).decode("utf-8-sig")), delimiter=";")
    )
    assert csv_rows[1][12] == "refused" and csv_rows[-1][6:9] == ["0,00", "85,50", "0,00"]
    paying = pay(refused, PaymentRequest("K7", 1000, "VIR-1"), 7, LATER, RULES, "fr")
    assert paying == Refusal("admin.expense.closed_refused", {"ticket": "K7"})
    # Once: refused again, the claim says so; a place that ended says that instead.
    assert refuse_claim(refused, request, 7, LATER, "fr") == Refusal(
        "admin.expense.refuse_already", {"ticket": "K7"}
    )
    ended = replace(claimed, step=ClaimStep.CLOSED)
    assert refuse_claim(ended, request, 7, LATER, "fr") == Refusal(
        "admin.expense.closed", {"ticket": "K7"}
    )


def test_a_claim_is_not_refused_while_a_payment_stands() -> None:
    paid = expense(8550, paid=(1200,))
    request = RefuseRequest("K7", "billet d’une autre date")
    assert refuse_claim(paid, request, 7, LATER, "fr") == Refusal(
        "admin.expense.refuse_paid", {"ticket": "K7", "paid": "12,00\u00a0€"}
    )
    cancelled = cancel_payment(paid, CancelRequest("K7", None, "erreur"), 7, LATER)
    assert not isinstance(cancelled, Refusal)
    assert not isinstance(refuse_claim(cancelled.expense, request, 7, LATER, "fr"), Refusal)
