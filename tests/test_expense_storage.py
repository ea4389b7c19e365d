"""The expense store's contract, on a SQLite file, SQLite in memory and PostgreSQL: opening once,
a whole expense round-tripping, stale and redelivered saves refused, one payment per number."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from conversations.expenses import (
    ClaimedReceipt,
    ClaimStep,
    Expense,
    Payment,
    Receipt,
    ReceiptKind,
)
from conversations.ledger import verify_audit_chain
from conversations.model import Area, ErasePersonalData, RecordConsent, Travel
from conversations.outgoing import TelegramKind, TelegramMessage
from storage import Storage, open_storage
from storage.copy import copy_database
from storage.database import Statement
from storage.expenses import Claimant, ExpenseClosed
from storage.migrator import migrate
from storage.ports import DuplicateUpdate, StaleWrite
from tests.conftest import NOW
from tests.factories import entered
from tests.test_storage import BACKENDS, backend_url

Result = TypeVar("Result")

CLAIMANT = Claimant("Zoé", "N’Diaye", "69003")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await open_storage(backend_url(request, tmp_path))
    await migrate(opened.database, NOW)
    yield opened
    await opened.close()


async def winner(store: Storage, user_id: int, travel: Travel, status: str = "accepted") -> None:
    person = entered(user_id, phone=f"+3361234{user_id:04d}", ticket=f"TK{user_id:08d}")
    await store.participants.save(person, 0, [RecordConsent(c) for c in person.consents], None, NOW)
    await store.database.run(
        [
            (
                "INSERT INTO draw_places (ticket, rank, role, status, user_id, deadline,"
                " updated_at, area, travel) VALUES (?, ?, 'winner', ?, ?, NULL, ?, ?, ?)",
                (
                    f"TK{user_id:08d}",
                    user_id,
                    status,
                    user_id,
                    NOW.isoformat(),
                    str(Area.PROVINCE),
                    str(travel),
                ),
            )
        ]
    )


def asked(ticket: str, user_id: int) -> TelegramMessage:
    return TelegramMessage(
        f"expense-request:{ticket}",
        user_id,
        TelegramKind.EXPENSE_REQUEST,
        "fr",
        "expense.ask.train",
    )


def new_expense(user_id: int = 1) -> Expense:
    return Expense(f"TK{user_id:08d}", user_id, "fr", Area.PROVINCE, Travel.TRAIN, NOW)


async def test_only_accepted_winners_entitled_to_travel_are_due_and_open_once(
    store: Storage,
) -> None:
    await winner(store, 1, Travel.TRAIN)
    await winner(store, 2, Travel.NONE)
    await winner(store, 3, Travel.ARRANGED, status="notified")
    [due] = await store.expenses.entitled_without_expense()
    assert (due.ticket, due.user_id, due.travel, due.language) == ("TK00000001", 1, "train", "fr")
    assert await store.expenses.open(new_expense(), due.claimant, asked(due.ticket, 1), NOW)
    assert not await store.expenses.open(new_expense(), due.claimant, asked(due.ticket, 1), NOW)
    assert await store.expenses.entitled_without_expense() == []
    queued = await store.telegram.due(NOW, 10, hold_campaign=False)
    assert [message.message.key for message in queued] == ["expense-request:TK00000001"]
    assert await store.expenses.any()


async def test_an_expense_round_trips_whole_and_a_stale_or_repeated_save_changes_nothing(
    store: Storage,
) -> None:
    await store.expenses.open(new_expense(), CLAIMANT, asked("TK00000001", 1), NOW)
    loaded = await store.expenses.by_user(1)
    assert loaded is not None and loaded.version == 1 and loaded.step == ClaimStep.RECEIPT
    assert await store.expenses.step_of(1) == ClaimStep.RECEIPT
    assert await store.expenses.step_of(2) is None and await store.expenses.by_user(2) is None
    photo = Receipt("F1", "U1", "a" * 64, ReceiptKind.PHOTO, 1234)
    pdf = Receipt("F2", "U2", "b" * 64, ReceiptKind.PDF, 99)
    later = NOW + timedelta(minutes=5)
    changed = replace(
        loaded,
        step=ClaimStep.SUBMITTED,
        receipts=(ClaimedReceipt(photo, NOW, 4550), ClaimedReceipt(pdf, later, 3000)),
        claimed_cents=7550,
        claimed_at=later,
    )
    await store.expenses.save(changed, 41, later)
    assert await store.expenses.step_of(1) == ClaimStep.SUBMITTED
    again = await store.expenses.by_ticket("TK00000001")
    assert again is not None and again.claimant == CLAIMANT
    assert again.expense == replace(changed, version=2)
    with pytest.raises(StaleWrite):
        await store.expenses.save(replace(changed, receipts=()), 42, later)  # read at version 1
    with pytest.raises(DuplicateUpdate):
        await store.expenses.save(replace(changed, version=2, receipts=()), 41, later)
    after = await store.expenses.by_user(1)
    assert after is not None and after.receipts == changed.receipts and after.version == 2
    removed = replace(after, receipts=after.receipts[:1])
    await store.expenses.save(removed, None, later)
    assert (await store.expenses.by_user(1)) == replace(removed, version=3)


async def audited(store: Storage, details: str) -> Statement:
    return await store.audit.append_statement(900, "expense.pay", details, NOW)


async def test_each_payment_number_is_recorded_once_with_its_notice_and_audit_entry(
    store: Storage,
) -> None:
    await winner(store, 1, Travel.TRAIN)
    await store.expenses.open(new_expense(), CLAIMANT, asked("TK00000001", 1), NOW)
    payment = Payment(7550, NOW, 900, "VIR-1", None)
    told = TelegramMessage(
        "expense-paid:TK00000001:1", 1, TelegramKind.EXPENSE_PAID, "fr", "expense.paid",
        {"amount": "75,50 €", "total": "75,50 €"},
    )  # fmt: skip
    first = await audited(store, "TK00000001 75,50")
    assert await store.expenses.record_payment("TK00000001", 1, payment, told, first, NOW)
    with pytest.raises(StaleWrite):  # the same number again: recorded once
        await store.expenses.record_payment(
            "TK00000001", 1, replace(payment, amount_cents=1), told, await audited(store, "x"), NOW
        )
    forced = Payment(1200, NOW, 900, None, "taxi")
    # Another entry is appended after this one's head was read: nothing is written.
    late = await audited(store, "TK00000001 12,00")
    await store.audit.log(900, "expense.list", "1 shown", NOW)
    assert not await store.expenses.record_payment(
        "TK00000001", 2, forced, replace(told, key="k2"), late, NOW
    )
    found = await store.expenses.by_ticket("TK00000001")
    assert found is not None and found.expense.payments == (payment,)
    again = await audited(store, "TK00000001 12,00")
    assert await store.expenses.record_payment(
        "TK00000001", 2, forced, replace(told, key="k2"), again, NOW
    )
    found = await store.expenses.by_ticket("TK00000001")
    assert found is not None and found.expense.payments == (payment, forced)
    assert found.expense.paid_cents == 8750
    keys = [m.message.key for m in await store.telegram.due(NOW, 10, hold_campaign=False)]
    assert sorted(keys) == ["expense-paid:TK00000001:1", "expense-request:TK00000001", "k2"]
    chain = await store.audit.chain()
    assert [(e["action"], e["details"]) for e in chain] == [
        ("expense.pay", "TK00000001 75,50"),
        ("expense.list", "1 shown"),
        ("expense.pay", "TK00000001 12,00"),
    ]
    assert verify_audit_chain(chain) == []


async def test_the_expense_outlives_the_participant_for_the_accounts(store: Storage) -> None:
    await winner(store, 1, Travel.TRAIN)
    await store.expenses.open(new_expense(), CLAIMANT, asked("TK00000001", 1), NOW)
    await store.database.run([("DELETE FROM participants WHERE user_id = ?", (1,))])
    [kept] = await store.expenses.all()
    assert kept.claimant == CLAIMANT and kept.expense.ticket == "TK00000001"


async def test_an_erased_winner_sees_their_expense_then_leaves_it_to_the_accounts_unlinked(
    store: Storage,
) -> None:
    await winner(store, 1, Travel.TRAIN)
    store.participants.use_key(b"the key of the tests")
    await store.expenses.open(new_expense(), CLAIMANT, asked("TK00000001", 1), NOW)
    loaded = await store.expenses.by_user(1)
    assert loaded is not None
    photo = Receipt("F1", "U1", "a" * 64, ReceiptKind.PHOTO, 1234)
    claimed = replace(loaded, step=ClaimStep.SUBMITTED, claimed_cents=4550, claimed_at=NOW,
                      receipts=(ClaimedReceipt(photo, NOW, 4550),))  # fmt: skip
    await store.expenses.save(claimed, 41, NOW)
    data = await store.participants.export(1)
    expense = data["travel_expense"]
    assert expense["ticket"] == "TK00000001" and expense["claimed_cents"] == 4550
    assert [r["sha256"] for r in expense["receipts"]] == ["a" * 64]
    assert "file_id" not in expense["receipts"][0]  # Telegram's ids are the bot's, not data
    person = await store.participants.load(1)
    assert person is not None
    await store.participants.save(person, person.version, [ErasePersonalData()], 42, NOW)
    assert await store.expenses.by_user(1) is None
    [kept] = await store.expenses.all()
    assert kept.expense.ticket == "TK00000001" and kept.claimant == CLAIMANT
    assert (await store.participants.export(1))["travel_expense"] is None


async def test_expenses_move_with_the_campaign_to_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    source = await open_storage(source_url)
    try:
        await migrate(source.database, NOW)
        await winner(source, 1, Travel.TRAIN)
        await source.expenses.open(new_expense(), CLAIMANT, asked("TK00000001", 1), NOW)
        expense = await source.expenses.by_user(1)
        assert expense is not None
        photo = Receipt("F1", "U1", "a" * 64, ReceiptKind.PHOTO, 1234)
        await source.expenses.save(
            replace(expense, receipts=(ClaimedReceipt(photo, NOW, 4550),)), 7, NOW
        )
        payment = Payment(4550, NOW, 900, "VIR-1", None)
        told = TelegramMessage("k", 1, TelegramKind.EXPENSE_PAID, "fr", "expense.paid")
        entry = await source.audit.append_statement(900, "expense.pay", "TK00000001", NOW)
        await source.expenses.record_payment("TK00000001", 1, payment, told, entry, NOW)
        before = await source.expenses.all()
    finally:
        await source.close()
    counts = await copy_database(source_url, postgres_url, NOW)
    assert (counts["expenses"], counts["expense_receipts"], counts["expense_payments"]) == (1, 1, 1)
    target = await open_storage(postgres_url)
    try:
        assert await target.expenses.all() == before
    finally:
        await target.close()


async def test_audit_entries_appended_at_once_all_land_in_one_chain(store: Storage) -> None:
    """Payments record their audit entry in their own transaction: on PostgreSQL several
    appends read the same head at once, and each must still land, once, in order."""
    await asyncio.gather(*(store.audit.log(900, "expense.list", str(n), NOW) for n in range(20)))
    chain = await store.audit.chain()
    assert sorted(int(entry["details"]) for entry in chain) == list(range(20))
    assert verify_audit_chain(chain) == []


async def test_a_payment_on_an_expense_closed_since_it_was_read_is_not_recorded(
    store: Storage,
) -> None:
    """`/rembourser` and `/remplacer` at the same instant: the payment read the expense open,
    then the place ended and closed it. The check is made in the payment's own transaction:
    nothing is recorded, no audit entry, no notice to the former winner."""
    await winner(store, 1, Travel.TRAIN)
    await store.expenses.open(new_expense(), CLAIMANT, asked("TK00000001", 1), NOW)
    read = await store.expenses.by_ticket("TK00000001")
    assert read is not None and read.expense.step != ClaimStep.CLOSED
    entry = await audited(store, "TK00000001 20,00")
    # The replacement's transaction closes the expense (storage/draws.py).
    await store.database.run(
        [
            (
                "UPDATE expenses SET step = 'closed', version = version + 1, updated_at = ?"
                " WHERE ticket = ? AND step <> 'closed'",
                (NOW.isoformat(), "TK00000001"),
            )
        ]
    )
    told = TelegramMessage(
        "expense-paid:TK00000001:1", 1, TelegramKind.EXPENSE_PAID, "fr", "expense.paid", {}
    )
    with pytest.raises(ExpenseClosed):
        await store.expenses.record_payment(
            "TK00000001", 1, Payment(2000, NOW, 900, "VIR-1", None), told, entry, NOW, 77
        )
    found = await store.expenses.by_ticket("TK00000001")
    assert found is not None and found.expense.payments == ()
    assert await store.audit.chain() == []
    keys = [m.message.key for m in await store.telegram.due(NOW, 10, hold_campaign=False)]
    assert keys == ["expense-request:TK00000001"]
    processed = await store.database.fetch("SELECT 1 FROM processed_updates WHERE update_id = 77")
    assert processed == []


async def test_on_postgresql_a_payment_waits_for_a_closing_in_flight_and_then_refuses(
    postgres_url: str,
) -> None:
    """The same race with both transactions open at once: the replacement has closed the
    expense but not committed when the payment runs. The payment waits for the expense's row,
    reads it again once the replacement commits, and records nothing."""

    store = await open_storage(postgres_url)
    try:
        await migrate(store.database, NOW)
        await winner(store, 1, Travel.TRAIN)
        await store.expenses.open(new_expense(), CLAIMANT, asked("TK00000001", 1), NOW)
        replacing = await asyncpg.connect(postgres_url)
        try:
            await replacing.execute("BEGIN")
            await replacing.execute(
                "UPDATE expenses SET step = 'closed', version = version + 1"
                " WHERE ticket = 'TK00000001' AND step <> 'closed'"
            )
            told = TelegramMessage(
                "expense-paid:TK00000001:1", 1, TelegramKind.EXPENSE_PAID, "fr", "expense.paid", {}
            )
            entry = await audited(store, "TK00000001 20,00")
            paying = asyncio.create_task(
                store.expenses.record_payment(
                    "TK00000001", 1, Payment(2000, NOW, 900, None, None), told, entry, NOW
                )
            )
            await asyncio.sleep(0.3)
            assert not paying.done()  # waiting for the expense's row
            await replacing.execute("COMMIT")
            with pytest.raises(ExpenseClosed):
                await paying
        finally:
            await replacing.close()
        found = await store.expenses.by_ticket("TK00000001")
        assert found is not None and found.expense.payments == ()
        assert await store.audit.chain() == []
    finally:
        await store.close()


async def test_a_payment_is_cancelled_once_and_the_winner_told_only_if_they_were_told(
    store: Storage,
) -> None:
    """The first payment's notice still waits: it is withdrawn and nothing is said. The
    second's was sent: the winner is sent the correction. A cancelled payment stays, marked;
    the expense's latest payment (from which the accounts are kept) leaves it out."""
    await winner(store, 1, Travel.TRAIN)
    await store.expenses.open(new_expense(), CLAIMANT, asked("TK00000001", 1), NOW)
    first, second = Payment(1200, NOW, 900, "VIR-1"), Payment(3000, NOW + timedelta(1), 900)
    for seq, payment in ((1, first), (2, second)):
        notice = TelegramMessage(
            f"expense-paid:TK00000001:{seq}", 1, TelegramKind.EXPENSE_PAID, "fr", "expense.paid",
            {"amount": "x", "total": "y"},
        )  # fmt: skip
        entry = await audited(store, f"pay {seq}")
        assert await store.expenses.record_payment("TK00000001", seq, payment, notice, entry, NOW)
    await store.database.run(
        [("UPDATE telegram_outbox SET status = 'sent' WHERE idempotency_key = ?",
          ("expense-paid:TK00000001:2",))]
    )  # fmt: skip

    def correction(seq: int) -> TelegramMessage:
        return TelegramMessage(
            f"expense-paid-cancelled:TK00000001:{seq}", 1, TelegramKind.EXPENSE_PAID, "fr",
            "expense.payment_cancelled", {"amount": "x", "total": "y"},
        )  # fmt: skip

    later = NOW + timedelta(days=2)
    gone = replace(first, cancelled_at=later, cancelled_by=901, cancel_reason="12,50 et non 12")
    entry = await audited(store, "cancel 1")
    told = await store.expenses.cancel_payment(
        "TK00000001", 1, gone, "expense-paid:TK00000001:1", correction(1), entry, later, 41
    )
    assert told is None
    with pytest.raises(StaleWrite):  # the same payment again (a double tap): once
        await store.expenses.cancel_payment(
            "TK00000001", 1, gone, "expense-paid:TK00000001:1", correction(1),
            await audited(store, "cancel 1 again"), later,
        )  # fmt: skip
    assert await store.expenses.notice_status("expense-paid:TK00000001:1") == "cancelled"
    entry = await audited(store, "cancel 2")
    with pytest.raises(DuplicateUpdate):  # the command delivered again
        await store.expenses.cancel_payment(
            "TK00000001", 2, replace(gone, amount_cents=3000), "expense-paid:TK00000001:2",
            correction(2), entry, later, 41,
        )  # fmt: skip
    assert await store.expenses.cancel_payment(
        "TK00000001", 2, replace(second, cancelled_at=later, cancelled_by=901, cancel_reason="d"),
        "expense-paid:TK00000001:2", correction(2), await audited(store, "cancel 2"), later, 42,
    )  # fmt: skip
    found = await store.expenses.by_ticket("TK00000001")
    assert found is not None
    assert [p.cancel_reason for p in found.expense.payments] == ["12,50 et non 12", "d"]
    assert found.expense.payments[0].cancelled_at == later
    assert found.expense.paid_cents == 0
    rows = await store.database.fetch("SELECT last_paid_at FROM expenses")
    assert [row[0] for row in rows] == [None]
    keys = [m.message.key for m in await store.telegram.due(later, 10, hold_campaign=False)]
    assert sorted(keys) == ["expense-paid-cancelled:TK00000001:2", "expense-request:TK00000001"]
    chain = await store.audit.chain()
    assert [e["details"] for e in chain] == ["pay 1", "pay 2", "cancel 1", "cancel 2"]
    assert verify_audit_chain(chain) == []


def refused_notice(ticket: str, user_id: int) -> TelegramMessage:
    return TelegramMessage(
        f"expense-refused:{ticket}", user_id, TelegramKind.EXPENSE_REFUSED, "fr", "expense.refused"
    )


async def test_a_claim_is_refused_once_never_while_a_payment_stands_and_then_not_paid(
    store: Storage,
) -> None:
    """/refuser_frais on the store: refused while a payment stands (cancelled, it may be), then
    closed with when, by whom and why, the request for receipts withdrawn and the winner's
    notice queued, with its audit entry; once (a double tap finds it closed, the command
    delivered again is known); a payment after it is not recorded."""
    for user_id in (1, 2):
        await winner(store, user_id, Travel.TRAIN)
        expense = new_expense(user_id)
        await store.expenses.open(expense, CLAIMANT, asked(expense.ticket, user_id), NOW)
    paid = Payment(1200, NOW, 900, "VIR-1")
    notice = TelegramMessage(
        "expense-paid:TK00000001:1", 1, TelegramKind.EXPENSE_PAID, "fr", "expense.paid",
        {"amount": "x", "total": "y"},
    )  # fmt: skip
    entry = await audited(store, "pay 1")
    assert await store.expenses.record_payment("TK00000001", 1, paid, notice, entry, NOW)
    found = await store.expenses.by_ticket("TK00000001")
    assert found is not None
    later = NOW + timedelta(days=1)
    refused = replace(
        found.expense, step=ClaimStep.CLOSED, refused_at=later, refused_by=901,
        refusal_reason="billet d’une autre date",
    )  # fmt: skip
    told = refused_notice("TK00000001", 1)
    with pytest.raises(StaleWrite):  # the payment stands
        await store.expenses.refuse(refused, told, await audited(store, "refuse"), later, 51)
    gone = replace(paid, cancelled_at=later, cancelled_by=901, cancel_reason="erreur")
    assert await store.expenses.cancel_payment(
        "TK00000001", 1, gone, "expense-paid:TK00000001:1", notice,
        await audited(store, "cancel 1"), later,
    ) is None  # fmt: skip
    assert await store.expenses.refuse(refused, told, await audited(store, "refuse 1"), later, 51)
    with pytest.raises(StaleWrite):  # a double tap: refused already
        await store.expenses.refuse(refused, told, await audited(store, "refuse 1 again"), later)
    other = replace(refused, ticket="TK00000002", user_id=2)
    with pytest.raises(DuplicateUpdate):  # this command's update was acted on
        await store.expenses.refuse(
            other, refused_notice("TK00000002", 2), await audited(store, "refuse 2"), later, 51
        )
    with pytest.raises(ExpenseClosed):
        await store.expenses.record_payment(
            "TK00000001", 2, Payment(1200, later, 900, "VIR-2"), notice,
            await audited(store, "pay 2"), later,
        )  # fmt: skip

    found = await store.expenses.by_ticket("TK00000001")
    assert found is not None
    assert found.expense.step == ClaimStep.CLOSED
    assert (found.expense.refused_at, found.expense.refused_by) == (later, 901)
    assert found.expense.refusal_reason == "billet d’une autre date"
    untouched = await store.expenses.by_ticket("TK00000002")
    assert untouched is not None and untouched.expense.step == ClaimStep.RECEIPT
    assert untouched.expense.refused_at is None
    statuses = await store.database.fetch(
        "SELECT idempotency_key, status FROM telegram_outbox ORDER BY idempotency_key"
    )
    assert [tuple(row) for row in statuses] == [
        ("expense-paid:TK00000001:1", "cancelled"),
        ("expense-refused:TK00000001", "pending"),
        ("expense-request:TK00000001", "cancelled"),
        ("expense-request:TK00000002", "pending"),
    ]
    chain = await store.audit.chain()
    assert [e["details"] for e in chain] == ["pay 1", "cancel 1", "refuse 1"]
    assert verify_audit_chain(chain) == []
    # What the winner's /mesdonnees says of it: refused, and the payment cancelled, not paid.
    store.participants.use_key(b"the key of the tests")
    mine = (await store.participants.export(1))["travel_expense"]
    assert (mine["status"], mine["refused_at"] is not None) == ("closed", True)
    assert [(p["seq"], p["cancelled_at"] is not None) for p in mine["payments"]] == [(1, True)]


async def test_on_postgresql_a_refusal_waits_for_a_payment_in_flight_and_then_refuses(
    postgres_url: str,
) -> None:
    """A /rembourser and a /refuser_frais at the same instant: the payment has marked the
    expense paid but not committed when the refusal runs. The refusal waits for the expense's
    row, reads it again once the payment commits, and closes nothing (the bot then reads the
    payment and says so)."""
    store = await open_storage(postgres_url)
    try:
        await migrate(store.database, NOW)
        await winner(store, 1, Travel.TRAIN)
        await store.expenses.open(new_expense(), CLAIMANT, asked("TK00000001", 1), NOW)
        found = await store.expenses.by_ticket("TK00000001")
        assert found is not None
        paying = await asyncpg.connect(postgres_url)
        try:
            await paying.execute("BEGIN")
            await paying.execute(
                "UPDATE expenses SET last_paid_at = $1 WHERE ticket = 'TK00000001'"
                " AND step <> 'closed'",
                NOW.isoformat(),
            )
            refused = replace(
                found.expense, step=ClaimStep.CLOSED, refused_at=NOW, refused_by=900,
                refusal_reason="billet d’une autre date",
            )  # fmt: skip
            entry = await audited(store, "refuse")
            refusing = asyncio.create_task(
                store.expenses.refuse(refused, refused_notice("TK00000001", 1), entry, NOW)
            )
            await asyncio.sleep(0.3)
            assert not refusing.done()  # waiting for the expense's row
            await paying.execute("COMMIT")
            with pytest.raises(StaleWrite):
                await refusing
        finally:
            await paying.close()
        found = await store.expenses.by_ticket("TK00000001")
        assert found is not None and found.expense.step == ClaimStep.RECEIPT
        assert found.expense.refused_at is None
        assert await store.audit.chain() == []
    finally:
        await store.close()


async def refused_with_a_name(store: Storage) -> bool:
    """TK00000001's claim refused by admin 900 with a reason naming someone."""
    found = await store.expenses.by_ticket("TK00000001")
    assert found is not None
    reason = "billet au nom de Marc Dupont"
    refused = replace(
        found.expense, step=ClaimStep.CLOSED, refused_at=NOW, refused_by=900,
        refusal_reason=reason,
    )  # fmt: skip
    entry = await store.audit.append_statement(
        900, "expense.refuse", "TK00000001 0,00", NOW, f"reason={reason}", "TK00000001"
    )
    return await store.expenses.refuse(refused, refused_notice("TK00000001", 1), entry, NOW)


async def erased(store: Storage, user_id: int) -> None:
    person = await store.participants.load(user_id)
    assert person is not None
    await store.participants.save(person, person.version, [ErasePersonalData()], 42, NOW)


async def test_an_erased_winner_s_refused_claim_keeps_no_reason_typed_about_it(
    store: Storage,
) -> None:
    """The reason an admin typed refusing a claim (which may name someone) is erased from the
    audit log with the winner; the copy /frais TICKET shows from the expense's row went too,
    or it stayed, unlinked, until the purge. When and by whom stay; the chain still verifies."""
    await winner(store, 1, Travel.TRAIN)
    store.participants.use_key(b"the key of the tests")
    await store.expenses.open(new_expense(), CLAIMANT, asked("TK00000001", 1), NOW)
    assert await refused_with_a_name(store)
    await erased(store, 1)
    [kept] = await store.expenses.all()
    assert kept.expense.step == ClaimStep.CLOSED
    assert (kept.expense.refused_at, kept.expense.refused_by) == (NOW, 900)
    assert kept.expense.refusal_reason is None
    chain = await store.audit.chain()
    assert all("note" not in entry for entry in chain)
    assert verify_audit_chain(chain) == []


async def test_a_reason_typed_after_the_winner_s_erasure_is_not_kept_about_their_ticket(
    store: Storage,
) -> None:
    """The winner erased their data, then (or at the same instant) an admin refuses their
    claim with a reason naming someone: the erasure had emptied the notes about the ticket
    before this one was written, so it stayed, with the copy on the expense, until the purge.
    Written about a ticket nobody holds any more, neither is kept; the digest is, and the chain
    verifies."""
    await winner(store, 1, Travel.TRAIN)
    store.participants.use_key(b"the key of the tests")
    await store.expenses.open(new_expense(), CLAIMANT, asked("TK00000001", 1), NOW)
    await erased(store, 1)
    assert await refused_with_a_name(store)  # the expense, unlinked from the person
    # A note about a ticket someone still holds is kept, as before.
    await winner(store, 2, Travel.TRAIN)
    await store.audit.log(900, "exclude", "TK00000002 other", NOW, "homonyme", "TK00000002")
    [kept] = await store.expenses.all()
    assert kept.expense.step == ClaimStep.CLOSED and kept.expense.refusal_reason is None
    chain = await store.audit.chain()
    assert [entry.get("note") for entry in chain] == [None, "homonyme"]
    assert all("note_digest" in entry for entry in chain)
    assert verify_audit_chain(chain) == []


async def during_erasure_in_flight(
    postgres_url: str, act: Callable[[], Awaitable[Result]]
) -> Result:
    """Person 1's erasure, in their turn (their lock held), has emptied the notes about their
    ticket and not committed: `act` must wait for it. What `act` returns, once it commits."""
    erasing = await asyncpg.connect(postgres_url)
    try:
        await erasing.execute("BEGIN")
        await erasing.execute("SELECT pg_advisory_xact_lock(1)")  # the person's turn
        await erasing.execute(
            "UPDATE audit_log SET note = NULL, note_salt = NULL"
            " WHERE ticket IN (SELECT ticket FROM entries WHERE user_id = 1)"
        )
        acting = asyncio.create_task(act())
        await asyncio.sleep(0.3)
        assert not acting.done()  # waiting for the person's turn
        await erasing.execute("UPDATE expenses SET user_id = NULL WHERE user_id = 1")
        await erasing.execute("DELETE FROM participants WHERE user_id = 1")
        await erasing.execute("COMMIT")
        return await acting
    finally:
        await erasing.close()


async def test_on_postgresql_a_refusal_waits_for_the_winner_s_erasure_in_flight(
    postgres_url: str,
) -> None:
    """The winner's erasure, in their turn (their lock held), has emptied the notes about their
    ticket but not committed when an admin refuses their claim: the refusal's note, written
    meanwhile, was kept, about a person erased. The refusal waits for the person's turn, and
    then finds the ticket held by nobody: neither the note nor the reason on the expense stay."""
    store = await open_storage(postgres_url)
    try:
        await migrate(store.database, NOW)
        await winner(store, 1, Travel.TRAIN)
        await store.expenses.open(new_expense(), CLAIMANT, asked("TK00000001", 1), NOW)
        found = await store.expenses.by_ticket("TK00000001")
        assert found is not None
        reason = "billet au nom de Marc Dupont"
        refused = replace(
            found.expense, step=ClaimStep.CLOSED, refused_at=NOW, refused_by=900,
            refusal_reason=reason,
        )  # fmt: skip

        async def refusing() -> bool:
            entry = await store.audit.append_statement(
                900, "expense.refuse", "TK00000001 0,00", NOW, f"reason={reason}", "TK00000001"
            )
            return await store.expenses.refuse(refused, refused_notice("TK00000001", 1), entry, NOW)

        assert await during_erasure_in_flight(postgres_url, refusing)
        [kept] = await store.expenses.all()
        assert kept.expense.step == ClaimStep.CLOSED and kept.expense.refusal_reason is None
        chain = await store.audit.chain()
        assert [entry.get("note") for entry in chain] == [None]
        assert verify_audit_chain(chain) == []
    finally:
        await store.close()


@pytest.mark.parametrize("action", ["pay", "cancel"])
async def test_on_postgresql_a_payment_or_its_cancelling_waits_for_the_winner_s_erasure(
    postgres_url: str, action: str
) -> None:
    """As a refusal: a payment's reference or a cancelling's reason, typed while the winner's
    erasure is in flight, waits for the person's turn and is not kept about them."""
    store = await open_storage(postgres_url)
    try:
        await migrate(store.database, NOW)
        await winner(store, 1, Travel.TRAIN)
        await store.expenses.open(new_expense(), CLAIMANT, asked("TK00000001", 1), NOW)
        told = TelegramMessage(
            "expense-paid:TK00000001:1", 1, TelegramKind.EXPENSE_PAID, "fr", "expense.paid"
        )
        payment = Payment(1200, NOW, 900, "VIR-1", None)
        if action == "cancel":
            first = await audited(store, "TK00000001 12,00")
            assert await store.expenses.record_payment("TK00000001", 1, payment, told, first, NOW)
        note = "reason=virement au nom de Marc Dupont"

        async def acting() -> bool | None:
            entry = await store.audit.append_statement(
                900, f"expense.{action}", "TK00000001 12,00", NOW, note, "TK00000001"
            )
            if action == "pay":
                return await store.expenses.record_payment(
                    "TK00000001", 1, payment, told, entry, NOW
                )
            cancelled = replace(payment, cancelled_at=NOW, cancelled_by=900, cancel_reason="erreur")
            correction = replace(told, key="expense-paid-cancelled:TK00000001:1")
            return await store.expenses.cancel_payment(
                "TK00000001", 1, cancelled, told.key, correction, entry, NOW
            )

        # The cancelling finds the payment's notice gone with the person: it writes nothing
        # and says to read again (the admin's command then finds the ticket held by nobody).
        assert await during_erasure_in_flight(postgres_url, acting) is (action == "pay")
        chain = await store.audit.chain()
        assert all(entry.get("note") is None for entry in chain)
        assert verify_audit_chain(chain) == []
    finally:
        await store.close()
