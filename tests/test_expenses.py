"""The winner's side of travel expenses: amounts as typed, receipts, the summary and the claim."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conversations.catalogue import Catalogue
from conversations.expenses import (
    ClaimContext,
    ClaimedReceipt,
    ClaimInput,
    ClaimStep,
    Expense,
    ExpenseRules,
    NotAReceipt,
    Payment,
    Receipt,
    ReceiptKind,
    accepts,
    claim_step,
    open_claim,
)
from conversations.model import Area, Press, Reply, Text
from conversations.money import format_amount, parse_amount
from conversations.policy import Travel
from conversations.validators import Refusal
from tests.conftest import NOW

MAX = 200_000  # 2000 €, the default bound of an absurd amount


@pytest.mark.parametrize(
    ("typed", "cents"),
    [
        ("85,50 €", 8550),
        ("85.50", 8550),
        ("85 €", 8500),
        ("€85.50", 8550),
        ("85,5", 8550),
        ("85\u00a0€", 8500),
        ("1\u202f234,56\u00a0€", 123456),
        ("1 234,56", 123456),
        ("1\u2009234.5", 123450),
        ("  42 EUR ", 4200),
        ("42 euros", 4200),
        ("0,01", 1),
    ],
)
def test_amounts_as_people_type_them_are_read_in_cents(typed: str, cents: int) -> None:
    assert parse_amount(typed, MAX) == cents


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("-85", "money.negative"),
        ("\u221285,50 €", "money.negative"),
        ("€-3", "money.negative"),
        ("0", "money.zero"),
        ("0,00 €", "money.zero"),
        ("85,505", "money.decimals"),
        ("1.234,56", "money.unreadable"),
        ("quatre-vingts", "money.unreadable"),
        ("", "money.unreadable"),
        ("85,50 € et 12 €", "money.unreadable"),
        ("12 34", "money.unreadable"),
        ("2000,01", "money.too_large"),
        ("9" * 5000, "money.too_large"),
    ],
)
def test_wrong_amounts_are_refused_with_the_reason(typed: str, reason: str) -> None:
    refusal = parse_amount(typed, MAX)
    assert isinstance(refusal, Refusal) and refusal.reason == reason


def test_the_most_allowed_is_accepted_and_named_when_refused() -> None:
    assert parse_amount("2000", MAX) == MAX
    assert parse_amount("2000,01", MAX) == Refusal(
        "money.too_large", {"max": "2\u202f000,00\u00a0€"}
    )


@given(st.integers(1, MAX), st.sampled_from(["fr", "en"]))
def test_an_amount_shown_reads_back_as_the_same_cents(cents: int, language: str) -> None:
    assert parse_amount(format_amount(cents, language), MAX) == cents


@given(st.text(max_size=40))
def test_any_text_is_an_amount_in_range_or_a_refusal(text: str) -> None:
    result = parse_amount(text, MAX)
    assert isinstance(result, Refusal) or 0 < result <= MAX


MB = 1_000_000
RULES = ExpenseRules(max_receipts=3, receipt_max_bytes=2 * MB)


def receipt(name: str, kind: ReceiptKind = ReceiptKind.PHOTO, size: int = 500) -> Receipt:
    sha = hashlib.sha256(name.encode()).hexdigest()
    return Receipt(f"file-{name}", f"unique-{name}", sha, kind, size)


@pytest.fixture
def claim(texts: Catalogue) -> ClaimContext:
    return ClaimContext(NOW, texts, RULES)


def opened(claim: ClaimContext, travel: Travel = Travel.TRAIN) -> Expense:
    outcome = open_claim("K7M2P9", 42, "fr", Area.PROVINCE, travel, claim)
    assert outcome is not None
    return outcome.expense


def run(expense: Expense, claim: ClaimContext, *events: ClaimInput) -> Expense:
    for event in events:
        expense = claim_step(expense, event, claim).expense
    return expense


@pytest.mark.parametrize(
    ("area", "travel"),
    [(Area.PARIS, Travel.NONE), (None, Travel.TRAIN), (Area.PROVINCE, None)],
)
def test_no_expense_without_travel_frozen_at_the_draw(
    claim: ClaimContext, area: Area | None, travel: Travel | None
) -> None:
    assert open_claim("K7M2P9", 42, "fr", area, travel, claim) is None


@pytest.mark.parametrize(("travel", "cap"), [(Travel.TRAIN, "200,00"), (Travel.ARRANGED, "700,00")])
def test_the_winner_is_asked_for_receipts_with_the_cap_of_their_travel(
    claim: ClaimContext, travel: Travel, cap: str
) -> None:
    outcome = open_claim("K7M2P9", 42, "fr", Area.CORSICA, travel, claim)
    assert outcome is not None
    assert outcome.expense.step == ClaimStep.RECEIPT and outcome.expense.travel == travel
    assert f"{cap}\u00a0€" in outcome.replies[0].text


def test_photo_and_pdf_receipts_with_their_amounts_make_the_claim(claim: ClaimContext) -> None:
    photo, pdf = receipt("aller", size=2 * MB), receipt("retour", ReceiptKind.PDF)
    expense = run(opened(claim), claim, photo)
    assert expense.step == ClaimStep.AMOUNT
    assert expense.receipts == (ClaimedReceipt(photo, NOW),)
    summary = claim_step(expense, Text("45,50 €"), claim)
    assert summary.expense.step == ClaimStep.SUMMARY
    assert "45,50\u00a0€" in summary.replies[0].text
    expense = run(summary.expense, claim, Press("expense.add"), pdf, Text("40"))
    assert [r.amount_cents for r in expense.receipts] == [4550, 4000]
    confirmed = claim_step(expense, Press("expense.confirm"), claim)
    assert confirmed.expense.step == ClaimStep.SUBMITTED
    assert confirmed.expense.claimed_cents == 8550 and confirmed.expense.claimed_at == NOW
    assert "85,50\u00a0€" in confirmed.replies[0].text
    # What is kept of each file: Telegram's ids and the hash, nothing of its content.
    kept = confirmed.expense.receipts[1].receipt
    assert (kept.file_id, kept.sha256, kept.kind) == ("file-retour", pdf.sha256, ReceiptKind.PDF)


@pytest.mark.parametrize(
    ("steps", "event", "reason"),
    [
        ((), receipt("lourd", size=2 * MB + 1), "expense.refusal.too_big"),
        ((receipt("a"), Text("10")), receipt("a"), "expense.refusal.duplicate"),
        ((), Text("85 €"), "expense.refusal.not_a_receipt"),
        ((receipt("a"),), Text("-3"), "money.negative"),
        ((receipt("a"),), Text("3,333"), "money.decimals"),
        ((receipt("a"),), receipt("b"), "expense.refusal.amount_first"),
        ((receipt("a"),), Press("expense.confirm"), "remind.stale_button"),
        ((receipt("a"), Text("10")), Text("bonjour"), "remind.use_buttons"),
        ((), Press("expense.summary"), "remind.stale_button"),
        (
            (receipt("a"), Text("1"), receipt("b"), Text("2"), receipt("c"), Text("3")),
            receipt("d"),
            "expense.refusal.too_many",
        ),
        (
            (receipt("a"), Text("1"), receipt("b"), Text("2"), receipt("c"), Text("3")),
            Press("expense.add"),
            "expense.refusal.too_many",
        ),
    ],
)
def test_refused_input_says_why_and_changes_nothing(
    claim: ClaimContext,
    texts: Catalogue,
    steps: tuple[ClaimInput, ...],
    event: ClaimInput,
    reason: str,
) -> None:
    before = run(opened(claim), claim, *steps)
    outcome = claim_step(before, event, claim)
    assert outcome.expense == before
    params = {"max": "2"} if reason == "expense.refusal.too_big" else {"max": "3"}
    expected = texts.render("fr", reason, **params).split("{")[0]
    assert outcome.replies[0].text.startswith(expected)


def test_a_receipt_can_be_dropped_or_removed_from_the_summary(claim: ClaimContext) -> None:
    dropped = run(opened(claim), claim, receipt("a"), Press("expense.drop"))
    assert dropped.receipts == () and dropped.step == ClaimStep.RECEIPT
    two = run(opened(claim), claim, receipt("a"), Text("10"), receipt("b"))
    shown = claim_step(two, Text("20"), claim)
    one = run(shown.expense, claim, remove_last_press(shown.replies[-1]))
    assert [r.amount_cents for r in one.receipts] == [1000] and one.step == ClaimStep.SUMMARY
    shown = claim_step(one, Press("expense.add"), claim)
    shown = claim_step(shown.expense, Press("expense.summary"), claim)
    none = run(shown.expense, claim, remove_last_press(shown.replies[-1]))
    assert none.receipts == () and none.step == ClaimStep.RECEIPT


def remove_last_press(summary: Reply) -> Press:
    """The summary's "remove the last one" button, as the winner sees it."""
    [key] = [b.key for row in summary.buttons for b in row if b.key.startswith("expense.remove")]
    return Press(key)


def test_a_double_tap_on_remove_the_last_one_removes_one_receipt(claim: ClaimContext) -> None:
    """Two presses of the same button (a double tap, or an old summary's button) removed a
    receipt each: the second one removed a receipt the winner meant to keep."""
    before = run(opened(claim), claim, receipt("a"), Text("10"), receipt("b"), Text("20"),
                 receipt("c"))  # fmt: skip
    shown = claim_step(before, Text("30"), claim)
    press = remove_last_press(shown.replies[-1])
    two = run(shown.expense, claim, press)
    assert [r.amount_cents for r in two.receipts] == [1000, 2000]
    again = claim_step(two, press, claim)
    assert again.expense == two


def test_the_summary_warns_when_the_total_is_above_the_cap(
    claim: ClaimContext, texts: Catalogue
) -> None:
    outcome = claim_step(run(opened(claim), claim, receipt("a")), Text("250"), claim)
    warning = texts.render("fr", "expense.above_cap", cap="200,00\u00a0€")
    assert warning in outcome.replies[0].text


def test_a_forgotten_receipt_reopens_the_claim_until_a_payment(claim: ClaimContext) -> None:
    submitted = run(opened(claim), claim, receipt("a"), Text("10"), Press("expense.confirm"))
    later = replace(claim, now=NOW + timedelta(days=1))
    reopened = run(submitted, later, receipt("b"), Text("5"))
    # The claim stays what was confirmed until it is confirmed again.
    assert reopened.step == ClaimStep.SUMMARY and reopened.claimed_cents == 1000
    assert reopened.receipts[1].received_at == later.now
    again = run(reopened, later, Press("expense.confirm"))
    assert again.claimed_cents == 1500 and again.claimed_at == later.now

    paid = replace(again, payments=(Payment(1500, NOW, 1),))
    outcome = claim_step(paid, receipt("c"), claim)
    assert outcome.expense == paid
    assert outcome.replies[0].text == claim.texts.render("fr", "expense.already_paid")


def test_after_the_claim_any_message_shows_where_it_stands(claim: ClaimContext) -> None:
    submitted = run(opened(claim), claim, receipt("a"), Text("10"), Press("expense.confirm"))
    outcome = claim_step(submitted, Press("expense.confirm"), claim)
    assert outcome.expense == submitted
    assert "10,00\u00a0€" in outcome.replies[0].text


@pytest.mark.parametrize(
    ("step", "event", "routed"),
    [
        (ClaimStep.RECEIPT, receipt("a"), True),
        (ClaimStep.SUBMITTED, receipt("a"), True),
        (ClaimStep.RECEIPT, Text("85"), False),
        (ClaimStep.AMOUNT, Text("85"), True),
        (ClaimStep.SUMMARY, Press("expense.confirm"), True),
        (ClaimStep.SUMMARY, Press("news.news_email"), False),
    ],
)
def test_only_input_for_the_expense_goes_to_it(
    claim: ClaimContext, step: ClaimStep, event: ClaimInput, routed: bool
) -> None:
    assert accepts(replace(opened(claim), step=step), event) is routed


@pytest.mark.parametrize(
    "steps",
    [
        (),
        (receipt("billet"),),
        (receipt("billet"), Text("45")),
        (receipt("billet"), Text("45"), Press("expense.confirm")),
    ],
)
@pytest.mark.parametrize(
    ("reason", "params"), [("file_type", ()), ("too_big", (("max", "2"),)), ("unreadable_file", ())]
)
def test_a_file_that_is_not_a_receipt_is_refused_at_any_step_and_changes_nothing(
    claim: ClaimContext,
    texts: Catalogue,
    steps: tuple[ClaimInput, ...],
    reason: str,
    params: tuple[tuple[str, str], ...],
) -> None:
    before = run(opened(claim), claim, *steps)
    event = NotAReceipt(reason, params)
    assert accepts(before, event)
    outcome = claim_step(before, event, claim)
    assert outcome.expense == before
    [reply] = outcome.replies
    assert reply.text.startswith(texts.render("fr", f"expense.refusal.{reason}", **dict(params)))
