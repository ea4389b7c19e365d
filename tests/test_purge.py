"""The purge on every backend: what goes and what stays, table by table, before the end of the
operation and once its days have passed; a dry run that changes nothing and counts what the run
then does; a second run that finds nothing; every table accounted for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.admin.purge import Purge
from bot.bootstrap import open_migrated_storage
from bot.settings import Settings, SettingsError
from conversations.expenses import ClaimStep
from conversations.ledger import verify_audit_chain
from conversations.model import (
    Consent,
    ConsentKind,
    Effect,
    Participant,
    QueueEmail,
    RecordConsent,
)
from conversations.retention import (
    KEPT_WHY,
    Category,
    RetentionPolicy,
    purge_plan,
    years_before,
)
from storage import Storage, open_storage
from storage.migrator import migrate
from storage.ports import TelegramKind, TelegramMessage
from storage.purge import KEPT, PURGE_STEPS, PurgeCount, Purger
from tests.conftest import NOW
from tests.factories import entered
from tests.telegram_fakes import FakeBotApi, Updates, running_bot
from tests.test_console import coffeebot
from tests.test_mail import Clock
from tests.test_storage import BACKENDS, backend_url

POLICY = RetentionPolicy()
ENDS = NOW + timedelta(days=10)
BEFORE_THE_END = NOW + timedelta(days=1)
ERASED = ENDS + timedelta(days=90)
OLD = NOW - timedelta(days=40)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    url = backend_url(request, tmp_path)
    opened = await open_storage(url)
    await migrate(opened.database, NOW)
    yield opened
    await opened.close()


def news(*kinds: ConsentKind) -> tuple[Consent, ...]:
    return tuple(Consent(kind, "fr-news", NOW) for kind in kinds)


async def save(
    store: Storage,
    person: Participant,
    at: Any = NOW,
    extra: tuple[Effect, ...] = (),
    update_id: int | None = None,
) -> None:
    effects = [RecordConsent(consent) for consent in person.consents]
    await store.participants.save(person, 0, [*effects, *extra], update_id, at)


def email_to(user_id: int, address: str) -> QueueEmail:
    return QueueEmail("confirmation", address, "fr", (("code", "123456"),), f"c:{user_id}")


async def campaign(store: Storage) -> None:
    """People at every stage, and every table the purge looks at, filled."""
    unfinished = entered(1, entry=None, completed_at=None, friends=("ami@free.fr",))
    await save(store, unfinished, OLD, (email_to(1, "p1@free.fr"),), update_id=11)
    await save(store, entered(2, entry=None, completed_at=None), NOW - timedelta(days=5))
    await save(store, entered(3, question="Et l’école ?", friends=("x@free.fr",)), OLD)
    base = entered(4, question="Ma question", referrer="abc")
    subscriber = replace(base, consents=(*base.consents, *news(ConsentKind.NEWS_EMAIL,
                         ConsentKind.NEWS_TELEGRAM)), friends=("y@free.fr",))  # fmt: skip
    await save(store, subscriber, OLD, (email_to(4, "p4@free.fr"),), update_id=12)
    by_sms = entered(5)
    # Typed since the confirmation, never confirmed: the entry keeps the confirmed one.
    by_sms = replace(by_sms, email="new5@free.fr", consents=(*by_sms.consents,
                     *news(ConsentKind.NEWS_SMS)))  # fmt: skip
    await save(store, by_sms)
    withdrawn = entered(6)
    await save(store, replace(withdrawn, consents=(*withdrawn.consents,
               *news(ConsentKind.NEWS_EMAIL))))  # fmt: skip
    await store.database.run(
        [("UPDATE consents SET withdrawn_at = ? WHERE user_id = 6", (NOW.isoformat(),))]
    )
    moved = entered(7)
    moved = replace(moved, email="typed7@free.fr", consents=(*moved.consents,
                    *news(ConsentKind.NEWS_EMAIL)))  # fmt: skip
    await save(store, moved)
    message = TelegramMessage(
        key="draw-result:TICKET0004", user_id=4, kind=TelegramKind.DRAW_RESULT, language="fr",
        text_key="draw.result.reserve", params={"ticket": "TICKET0004"},
    )  # fmt: skip
    await store.telegram.queue([message], NOW)
    at = NOW.isoformat()
    await store.database.run(
        [
            ("INSERT INTO draws (name, status, certificate, tickets, created_at, updated_at)"
             " VALUES ('draw', 'done', '{\"seed\": \"ab\"}', 'TICKET0003', ?, ?)", (at, at)),
            ("INSERT INTO draw_places (ticket, rank, role, status, user_id, updated_at, area,"
             " travel) VALUES ('TICKET0004', 1, 'winner', 'accepted', 4, ?, 'province', 'train')",
             (at,)),
            ("INSERT INTO draw_places (ticket, rank, role, status, user_id, updated_at)"
             " VALUES ('TICKET0003', 2, 'reserve', 'waiting', 3, ?)", (at,)),
            ("INSERT INTO address_hashes VALUES ('h-invited', 'invited', ?)", (at,)),
            ("INSERT INTO address_hashes VALUES ('h-refused', 'unsubscribed', ?)", (at,)),
            ("INSERT INTO anonymous_counts VALUES ('erased.complete', 2)", ()),
        ]
    )  # fmt: skip
    await store.meetings.set_meeting(ENDS, "Café de la Gare, Lyon", NOW)
    await store.audit.log(900, "exclude", "TICKET0002 duplicate", NOW)


async def table(store: Storage, name: str, columns: str, order: str = "1") -> list[tuple[Any, ...]]:
    rows = await store.database.fetch(f"SELECT {columns} FROM {name} ORDER BY {order}")
    return [tuple(row) for row in rows]


async def snapshot(store: Storage) -> dict[str, list[str]]:
    tables = await store.database.tables()
    return {name: sorted(map(repr, await table(store, name, "*"))) for name in tables}


def by_table(counts: list[PurgeCount]) -> dict[str, int]:
    """Rows per category and table, where any."""
    return {f"{c.category}.{c.table}": c.rows for c in counts if c.rows}


async def dry_then_run(store: Storage, now: Any) -> dict[str, int]:
    """The dry run changes nothing and counts exactly what the run then changes."""
    plan = purge_plan(POLICY, ENDS, now)
    purger = Purger(store.database)
    before = await snapshot(store)
    counted = await purger.count(plan)
    assert await snapshot(store) == before
    done = await purger.run(plan)
    assert done == counted
    return by_table(done)


async def test_before_the_end_only_unfinished_signups_left_a_month_go(store: Storage) -> None:
    await campaign(store)
    assert await dry_then_run(store, BEFORE_THE_END) == {
        "incomplete_signups.friends": 1,
        "incomplete_signups.consents": 3,
        "incomplete_signups.outbox": 1,
        "incomplete_signups.participants": 1,
    }
    assert await table(store, "participants", "user_id") == [(n,) for n in range(2, 8)]
    assert await table(store, "friends", "user_id") == [(3,), (4,)]
    assert {user for (user,) in await table(store, "consents", "user_id")} == {2, 3, 4, 5, 6, 7}
    assert await table(store, "outbox", "user_id") == [(4,)]
    # The rest is untouched until the end.
    assert len(await table(store, "entries", "user_id")) == 5
    assert await table(store, "processed_updates", "update_id") == [(11,), (12,)]
    assert len(await table(store, "address_hashes", "hash")) == 2


async def test_after_the_end_only_news_contacts_tickets_and_what_the_law_keeps_remain(
    store: Storage,
) -> None:
    await campaign(store)
    chain = await store.audit.chain()
    assert await dry_then_run(store, ERASED) == {
        "outboxes.outbox": 2,
        "outboxes.telegram_outbox": 1,
        "outboxes.processed_updates": 2,
        "draw.draw_places": 2,
        "draw.meetings": 1,
        "invited_addresses.address_hashes": 1,
        "participants.friends": 2,
        "participants.consents": 3 * 3 + 4,
        "participants.entries": 2,
        "participants.participants": 4,
        "news_contacts.friends": 1,
        "news_contacts.consents": 3 * 3,
        "news_contacts.participants": 3,
        "news_contacts.entries": 3,
    }
    # News contacts: the Telegram id, the language, the confirmed address their email consent
    # reaches (not one typed since), the phone their SMS consent reaches; nothing else.
    assert await table(
        store, "participants",
        "user_id, language, step, email, phone, first_name, last_name, postcode, departement,"
        " area, question, referrer, completed_at, referral_code, actions, confirmation_address",
        "user_id",
    ) == [
        (4, "fr", "welcome", "p4@free.fr", None, *[None] * 9, "", None),
        (5, "fr", "welcome", None, "+33612340005", *[None] * 9, "", None),
        (7, "fr", "welcome", "p7@free.fr", None, *[None] * 9, "", None),
    ]  # fmt: skip
    assert await table(store, "consents", "user_id, kind", "user_id, kind") == [
        (4, "news_email"), (4, "news_telegram"), (5, "news_sms"), (7, "news_email"),
    ]  # fmt: skip
    for emptied in ("entries", "friends", "outbox", "telegram_outbox", "processed_updates",
                    "meetings"):  # fmt: skip
        assert await table(store, emptied, "*") == [], emptied
    # The draw keeps its tickets, linked to nobody; the audit log stays whole.
    assert await table(store, "draw_places", "ticket, role, status, user_id", "rank") == [
        ("TICKET0004", "winner", "accepted", None),
        ("TICKET0003", "reserve", "waiting", None),
    ]
    assert await table(store, "draws", "certificate, tickets") == [('{"seed": "ab"}', "TICKET0003")]
    assert await store.audit.chain() == chain and verify_audit_chain(chain) == []
    assert await table(store, "address_hashes", "hash") == [("h-refused",)]
    assert await table(store, "anonymous_counts", "name, value") == [("erased.complete", 2)]
    # Whoever loads a news contact finds a person at the start, with their news consents.
    kept = await store.participants.load(4)
    assert kept is not None and kept.entry is None and kept.first_name is None
    assert {c.kind for c in kept.consents} == {ConsentKind.NEWS_EMAIL, ConsentKind.NEWS_TELEGRAM}


async def test_a_second_run_finds_nothing_and_a_later_withdrawal_is_purged(
    store: Storage,
) -> None:
    await campaign(store)
    await dry_then_run(store, ERASED)
    after = await snapshot(store)
    assert await dry_then_run(store, ERASED + timedelta(days=1)) == {}
    assert await snapshot(store) == after
    await store.database.run(
        [("UPDATE consents SET withdrawn_at = ? WHERE user_id = 4", (ERASED.isoformat(),))]
    )
    assert await dry_then_run(store, ERASED + timedelta(days=2)) == {
        "participants.consents": 2,
        "participants.participants": 1,
    }
    assert await table(store, "participants", "user_id") == [(5,), (7,)]


async def test_without_an_end_date_nothing_but_unfinished_signups_is_ever_due(
    store: Storage,
) -> None:
    await campaign(store)
    plan = purge_plan(POLICY, None, ERASED + timedelta(days=3650))
    counts = await Purger(store.database).count(plan)
    assert {c.category for c in counts} == {Category.INCOMPLETE_SIGNUPS}


async def expenses(store: Storage) -> None:
    """Two winners' travel expenses, one paid (an accounting record), one never paid whose
    place ended (nothing more is owed on it)."""
    at = NOW.isoformat()
    opened = (
        "INSERT INTO expenses (ticket, user_id, language, first_name, last_name, postcode, area,"
        " travel, step, claimed_cents, claimed_at, version, opened_at, updated_at, last_paid_at)"
        " VALUES (?, ?, 'fr', ?, 'Martin', '69001', 'province', 'train', ?, 8550, ?, 1,"
        " ?, ?, ?)"
    )
    receipt = (
        "INSERT INTO expense_receipts (ticket, position, file_id, file_unique_id, sha256, kind,"
        " size, amount_cents, received_at) VALUES (?, 0, 'file-id', 'unique-id', ?, 'photo',"
        " 1000, 8550, ?)"
    )
    await store.database.run(
        [
            (opened, ("TICKET0004", 4, "Zoé", "submitted", at, at, at, at)),
            (opened, ("TICKET0003", 3, "Léo", "closed", at, at, at, None)),
            (receipt, ("TICKET0004", "ab" * 32, at)),
            (receipt, ("TICKET0003", "cd" * 32, at)),
            ("INSERT INTO expense_payments (ticket, seq, amount_cents, reference,"
             " override_reason, admin_id, paid_at) VALUES ('TICKET0004', 1, 8550, 'VIR-1', NULL,"
             " 900, ?)", (at,)),
        ]
    )  # fmt: skip


async def test_expense_lines_outlive_the_end_linked_to_nobody_until_their_years_pass(
    store: Storage,
) -> None:
    await expenses(store)
    assert await dry_then_run(store, BEFORE_THE_END) == {}
    plan = purge_plan(POLICY, ENDS, ERASED)
    counted = await Purger(store.database).count(plan)
    done = await Purger(store.database).run(plan)
    assert done == counted
    # Each table twice: the paid expense stripped, the unpaid one deleted.
    assert [(c.table, c.rows) for c in done if c.rows] == [
        ("expense_receipts", 1), ("expenses", 1), ("expense_receipts", 1), ("expenses", 1),
    ]  # fmt: skip
    # The paid line stays for the mandataire: name, postcode, amounts, the receipt's hash; not
    # the person's Telegram id nor Telegram's ids of the file.
    assert await table(store, "expenses", "ticket, user_id, first_name, last_paid_at") == [
        ("TICKET0004", None, "Zoé", NOW.isoformat())
    ]
    assert await table(store, "expense_receipts", "ticket, file_id, file_unique_id, sha256") == [
        ("TICKET0004", None, None, "ab" * 32)
    ]
    assert await table(store, "expense_payments", "ticket, amount_cents") == [("TICKET0004", 8550)]
    later = NOW + timedelta(days=366 * POLICY.expenses_years)
    assert await dry_then_run(store, later) == {
        "expense_lines.expense_receipts": 1,
        "expense_lines.expense_payments": 1,
        "expense_lines.expenses": 1,
    }
    for emptied in ("expenses", "expense_receipts", "expense_payments"):
        assert await table(store, emptied, "*") == [], emptied


async def owed_claims(store: Storage) -> None:
    """Three winners' claims at the end: 8 paid in part (still owed), 9 paid its cap (claimed
    above it: settled), 10 whose only payment was cancelled (still owed)."""
    at = NOW.isoformat()
    for user_id in (8, 9, 10):
        await save(store, entered(user_id, friends=(f"ami{user_id}@free.fr",)))
    opened = (
        "INSERT INTO expenses (ticket, user_id, language, first_name, last_name, postcode, area,"
        " travel, step, claimed_cents, claimed_at, version, opened_at, updated_at, last_paid_at)"
        " VALUES (?, ?, 'fr', 'Zoé', 'Martin', '69001', 'province', 'train', 'submitted', ?, ?,"
        " 1, ?, ?, ?)"
    )
    receipt = (
        "INSERT INTO expense_receipts (ticket, position, file_id, file_unique_id, sha256, kind,"
        " size, amount_cents, received_at) VALUES (?, 1, 'file-id', 'unique-id', ?, 'photo',"
        " 1000, 8550, ?)"
    )
    payment = (
        "INSERT INTO expense_payments (ticket, seq, amount_cents, reference, override_reason,"
        " admin_id, paid_at, cancelled_at) VALUES (?, 1, ?, NULL, NULL, 900, ?, ?)"
    )
    await store.database.run(
        [
            (opened, ("TK00000008", 8, 8550, at, at, at, at)),
            (opened, ("TK00000009", 9, 25000, at, at, at, at)),
            (opened, ("TK00000010", 10, 8550, at, at, at, None)),
            *[(receipt, (f"TK{n:08d}", f"{n:02d}" * 32, at)) for n in (8, 9, 10)],
            (payment, ("TK00000008", 2000, at, None)),
            (payment, ("TK00000009", 20000, at, None)),
            (payment, ("TK00000010", 8550, at, at)),
        ]
    )
    notice = TelegramMessage(
        key="expense-paid:TK00000008:1", user_id=8, kind=TelegramKind.EXPENSE_PAID,
        language="fr", text_key="expense.paid", params={"amount": "20,00 €", "total": "20,00 €"},
    )  # fmt: skip
    await store.telegram.queue([notice], NOW)


async def test_a_claim_still_owed_keeps_its_expense_and_contact_until_paid_or_its_years_pass(
    store: Storage,
) -> None:
    """At the end plus RETENTION_AFTER_END_DAYS, an unpaid claim was erased with the rest: the
    mandataire lost track of a debt. It stays now, with its receipts and the winner's contact
    (counted as kept), until paid (then the normal rules) or EXPENSES_RETENTION_YEARS after it."""
    await owed_claims(store)
    done = await dry_then_run(store, ERASED)
    assert {k: v for k, v in done.items() if k.startswith("owed_claims.")} == {
        "owed_claims.expenses": 2,
        "owed_claims.expense_receipts": 2,
        "owed_claims.expense_payments": 2,
    }
    # The settled claim (its cap paid) follows the normal rules at once.
    assert done["expense_claims.expenses"] == 1 and done["participants.participants"] == 1
    assert await table(
        store, "expenses", "ticket, user_id, last_paid_at", "ticket"
    ) == [
        ("TK00000008", 8, NOW.isoformat()),
        ("TK00000009", None, NOW.isoformat()),
        ("TK00000010", 10, None),
    ]  # fmt: skip
    assert await table(store, "expense_receipts", "ticket, file_id", "ticket") == [
        ("TK00000008", "file-id"), ("TK00000009", None), ("TK00000010", "file-id"),
    ]  # fmt: skip
    # The owed winners keep the contact to pay and tell them; nothing else of their signup.
    assert await table(
        store, "participants", "user_id, language, email, phone, first_name, postcode",
        "user_id",
    ) == [
        (8, "fr", "p8@free.fr", "+33612340008", None, None),
        (10, "fr", "p10@free.fr", "+33612340010", None, None),
    ]  # fmt: skip
    for emptied in ("entries", "friends", "consents"):
        assert await table(store, emptied, "*") == [], emptied
    # The notice of the payment, not sent yet, still goes.
    assert await table(store, "telegram_outbox", "idempotency_key") == [
        ("expense-paid:TK00000008:1",)
    ]
    # A second run changes nothing, and still counts them as kept.
    again = await dry_then_run(store, ERASED + timedelta(days=1))
    assert again == {k: v for k, v in done.items() if k.startswith("owed_claims.")}

    # 8 is paid the rest: the normal rules, at the next run.
    await store.database.run(
        [
            ("INSERT INTO expense_payments (ticket, seq, amount_cents, admin_id, paid_at)"
             " VALUES ('TK00000008', 2, 6550, 900, ?)", (ERASED.isoformat(),)),
            ("UPDATE expenses SET last_paid_at = ? WHERE ticket = 'TK00000008'",
             (ERASED.isoformat(),)),
        ]
    )  # fmt: skip
    paid = await dry_then_run(store, ERASED + timedelta(days=2))
    assert paid["expense_claims.expenses"] == 1 and paid["participants.participants"] == 1
    assert await table(store, "participants", "user_id") == [(10,)]
    assert await table(store, "expenses", "ticket, user_id", "ticket") == [
        ("TK00000008", None), ("TK00000009", None), ("TK00000010", 10),
    ]  # fmt: skip
    # 10 is never paid: kept EXPENSES_RETENTION_YEARS after the claim, then erased as unpaid.
    later = NOW + timedelta(days=366 * POLICY.expenses_years)
    late = await dry_then_run(store, later)
    assert not any(key.startswith("owed_claims.") for key in late)
    assert late["expense_claims.expenses"] == 1 and late["expense_claims.expense_payments"] == 1
    assert await table(store, "participants", "user_id") == []
    # (9's line, paid at the start, has had its years too; 8's, paid later, has not.)
    assert await table(store, "expenses", "ticket", "ticket") == [("TK00000008",)]


async def test_a_claim_refused_after_checking_is_no_longer_kept_as_owed(store: Storage) -> None:
    """A claim the mandataire decided not to pay stayed owed (so kept, with the winner's
    contact) until EXPENSES_RETENTION_YEARS after it. Refused (/refuser_frais), it is closed:
    at the end plus RETENTION_AFTER_END_DAYS it goes, as an unpaid claim, with its receipt, the
    payment cancelled on it and the winner; checked table by table."""
    await owed_claims(store)
    found = await store.expenses.by_ticket("TK00000010")
    assert found is not None
    refused = replace(
        found.expense, step=ClaimStep.CLOSED, refused_at=NOW, refused_by=900,
        refusal_reason="billet d’une autre date",
    )  # fmt: skip
    told = TelegramMessage(
        "expense-refused:TK00000010", 10, TelegramKind.EXPENSE_REFUSED, "fr", "expense.refused"
    )
    entry = await store.audit.append_statement(900, "expense.refuse", "TK00000010", NOW)
    assert await store.expenses.refuse(refused, told, entry, NOW)
    done = await dry_then_run(store, ERASED)
    expenses = {k: v for k, v in done.items() if "expense" in k}
    assert expenses == {
        "owed_claims.expenses": 1,
        "owed_claims.expense_receipts": 1,
        "owed_claims.expense_payments": 1,
        # 10's claim goes whole (the table's last step's count: 9's line, paid, is stripped
        # of its link to the person and to Telegram by the ones before).
        "expense_claims.expenses": 1,
        "expense_claims.expense_receipts": 1,
        "expense_claims.expense_payments": 1,
    }
    assert done["participants.participants"] == 2
    assert await table(store, "expenses", "ticket, user_id, step", "ticket") == [
        ("TK00000008", 8, "submitted"), ("TK00000009", None, "submitted"),
    ]  # fmt: skip
    assert await table(store, "expense_receipts", "ticket, file_id", "ticket") == [
        ("TK00000008", "file-id"), ("TK00000009", None),
    ]  # fmt: skip
    assert await table(store, "expense_payments", "ticket", "ticket") == [
        ("TK00000008",), ("TK00000009",),
    ]  # fmt: skip
    assert await table(store, "participants", "user_id") == [(8,)]


async def test_the_report_counts_owed_claims_as_kept_says_why_and_logs_only_what_changed(
    settings: Settings,
) -> None:
    """The bot's daily job and `coffeebot purge` print the claims kept, with why; the audit
    log's `purge` entry and the count of rows changed leave them out."""
    settings = settings.replace(operation_ends_at=ENDS.isoformat())
    store = await open_migrated_storage(settings, Clock(NOW))
    try:
        await owed_claims(store)
        dry = await Purge(store, settings, Clock(ERASED)).run(dry_run=True)
        lines = dry.lines()
        at = lines.index(
            f"owed_claims: keep_until_paid (claimed since"
            f" {years_before(ERASED, 10).isoformat(timespec='minutes')}): 6"
        )
        assert lines[at + 1 : at + 5] == [
            "  expenses: 2",
            "  expense_receipts: 2",
            "  expense_payments: 2",
            "  " + KEPT_WHY[Category.OWED_CLAIMS],
        ]
        report = await Purge(store, settings, Clock(ERASED)).run()
        kept = sum(c.rows for c in report.counts if c.kept)
        assert kept == 6 and report.changed == sum(c.rows for c in report.counts) - kept
        [logged] = [d for _, _, a, d in await store.audit.journal(10) if a == "purge"]
        assert "owed_claims" not in logged and "expense_claims.expenses 1" in logged
        # Only claims kept: nothing is due, nothing more is logged.
        quiet = await Purge(store, settings, Clock(ERASED + timedelta(days=1))).run()
        assert quiet.changed == 0 and sum(c.rows for c in quiet.counts if c.kept) == 6
        assert len([a for _, _, a, _ in await store.audit.journal(10) if a == "purge"]) == 1
    finally:
        await store.close()


async def test_every_table_is_purged_or_kept_for_a_stated_reason(store: Storage) -> None:
    tables = set(await store.database.tables())
    purged = {step.table for step in PURGE_STEPS}
    forgotten = tables - purged - set(KEPT)
    assert not forgotten, f"no purge step and no reason to keep: {forgotten}"
    assert not purged & set(KEPT)


# The bot and the command line, on the database the tests run on (SQLite, or PostgreSQL under
# COFFEEBOT_TEST_DATABASE=postgresql).


async def people(settings: Settings) -> list[int]:
    # Read only: opening as the bot does (migrations under an exclusive lock, messages left
    # leaving given up) while the bot runs on this event loop could hold its writes past
    # SQLITE_BUSY_TIMEOUT_MS ("database is locked").
    store = await open_storage(settings.database_url)
    try:
        return [row[0] for row in await table(store, "participants", "user_id", "user_id")]
    finally:
        await store.close()


async def purges(settings: Settings) -> list[str]:
    store = await open_storage(settings.database_url)
    try:
        return [details for _, _, action, details in await store.audit.journal(50)
                if action == "purge"]  # fmt: skip
    finally:
        await store.close()


async def test_the_bot_purges_by_itself_once_and_the_notice_says_when(
    settings: Settings,
) -> None:
    ended = NOW - timedelta(days=91)
    settings = settings.replace(
        operation_ends_at=ended.isoformat(), retention_after_end_days=90, purge_every_hours=0.0001
    )
    store = await open_migrated_storage(settings, Clock(NOW))
    try:
        await save(store, entered(1), OLD)
        subscriber = entered(2)
        await save(store, replace(subscriber, consents=(*subscriber.consents,
                   *news(ConsentKind.NEWS_TELEGRAM))), OLD)  # fmt: skip
    finally:
        await store.close()
    api, updates = FakeBotApi(), Updates()
    async with running_bot(settings, api, Clock(NOW)) as bot:
        for _ in range(300):
            if await people(settings) == [2]:
                break
            await asyncio.sleep(0.02)
        assert await people(settings) == [2]
        # Runs every 0.36 s: a few more runs find nothing, and log nothing.
        await asyncio.sleep(1.2)
        [logged] = await purges(settings)
        assert "participants.participants 1" in logged
        assert "news_contacts.participants 1" in logged
        kept = Updates.user(2)
        await bot.feed(updates.text(kept, "/confidentialite"), updates.text(kept, "/start"))
        notice, welcome = api.texts_to(2)[-2:]
        # What is left of a news contact is a person at the start of an operation that is over,
        # who can still withdraw: the next purge then erases them.
        assert "{" not in welcome and "terminée" in welcome
        await bot.feed(updates.text(kept, "/desabonner"))
        assert "ne recevrez plus" in api.texts_to(2)[-1]
        for _ in range(300):
            if await people(settings) == []:
                break
            await asyncio.sleep(0.02)
        assert await people(settings) == []
    assert len(await purges(settings)) == 2
    assert "effacée après 30 jours sans activité" in notice
    assert "Tout le reste est effacé 90 jours après la fin de l’opération, soit le " in notice
    assert "{" not in notice and "gardée 10 ans" in notice


def test_the_command_line_counts_then_purges(settings: Settings, tmp_path: Path) -> None:
    async def setup() -> None:
        store = await open_migrated_storage(settings, Clock(NOW))
        try:
            await save(store, entered(1, entry=None, completed_at=None), OLD)
            recent = entered(2, entry=None, completed_at=None)
            await save(store, recent, datetime.now(UTC))
        finally:
            await store.close()

    asyncio.run(setup())
    env = {"DATABASE_URL": settings.database_url}
    dry = coffeebot(tmp_path, "purge", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == "dry run: nothing changed, these rows are due"
    assert lines[1].startswith("incomplete_signups: delete (before ") and lines[1].endswith(": 4")
    assert "  participants: 1" in lines and "  consents: 3" in lines
    assert lines[-1] == "OPERATION_ENDS_AT is unset: nothing is erased for the end of the operation"
    assert asyncio.run(people(settings)) == [1, 2]
    done = coffeebot(tmp_path, "purge", env=env)
    assert done.returncode == 0 and done.stdout.splitlines()[0] == "purged", done.stderr
    assert done.stdout.splitlines()[1:] == lines[1:]
    assert asyncio.run(people(settings)) == [2]
    again = coffeebot(tmp_path, "purge", env=env)
    assert again.stdout.splitlines()[1].endswith(": 0")
    assert len(asyncio.run(purges(settings))) == 1


def test_the_command_line_keeps_owed_claims_and_says_why(
    settings: Settings, tmp_path: Path
) -> None:
    ended = datetime.now(UTC) - timedelta(days=POLICY.after_end_days + 1)
    settings = settings.replace(operation_ends_at=ended.isoformat())

    async def setup() -> None:
        store = await open_migrated_storage(settings, Clock(NOW))
        try:
            await owed_claims(store)
        finally:
            await store.close()

    asyncio.run(setup())
    env = {"DATABASE_URL": settings.database_url, "OPERATION_ENDS_AT": ended.isoformat()}
    for dry in (["--dry-run"], []):
        result = coffeebot(tmp_path, "purge", *dry, env=env)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        [at] = [n for n, line in enumerate(lines) if line.startswith("owed_claims: ")]
        assert lines[at].startswith("owed_claims: keep_until_paid (claimed since ")
        assert lines[at].endswith(": 6")
        assert lines[at + 4] == "  " + KEPT_WHY[Category.OWED_CLAIMS]
    assert asyncio.run(people(settings)) == [8, 10]


@pytest.mark.parametrize(
    "name", ["RETENTION_INCOMPLETE_DAYS", "EXPENSES_RETENTION_YEARS", "PURGE_EVERY_HOURS"]
)
def test_a_zero_that_would_erase_too_soon_or_purge_without_pause_is_refused(name: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name} must be more than 0$"):
        Settings.from_env({name: "0"})
    assert Settings.from_env({"RETENTION_AFTER_END_DAYS": "0"}).retention.after_end_days == 0


async def test_on_postgresql_a_step_in_flight_finishes_before_the_purge_without_deadlock(
    postgres_url: str,
) -> None:
    import asyncpg

    store = await open_storage(postgres_url)
    await migrate(store.database, NOW)
    step = await asyncpg.connect(postgres_url)
    try:
        await campaign(store)
        # A person's step half done, as `save` writes it: their row, then their friends.
        transaction = step.transaction()
        await transaction.start()
        await step.execute("UPDATE participants SET version = version + 1 WHERE user_id = 3")
        purging = asyncio.create_task(Purger(store.database).run(purge_plan(POLICY, ENDS, ERASED)))
        await asyncio.sleep(0.3)
        assert not purging.done()  # waiting for the step
        await step.execute("DELETE FROM friends WHERE user_id = 3")
        await step.execute("INSERT INTO friends VALUES (3, 0, 'z@free.fr')")
        await transaction.commit()
        done = by_table(await asyncio.wait_for(purging, 10))
        assert done["participants.friends"] == 2 and done["participants.participants"] == 4
        assert await table(store, "participants", "user_id") == [(4,), (5,), (7,)]
    finally:
        await step.close()
        await store.close()


async def test_two_processes_purging_at_once_erase_and_log_it_once(settings: Settings) -> None:
    settings = settings.replace(operation_ends_at=(NOW - timedelta(days=91)).isoformat())
    first = await open_migrated_storage(settings, Clock(NOW))
    second = await open_migrated_storage(settings, Clock(NOW))
    try:
        await campaign(first)
        reports = await asyncio.gather(
            Purge(first, settings, Clock(NOW)).run(), Purge(second, settings, Clock(NOW)).run()
        )
        assert sorted(report.changed for report in reports)[0] == 0
        assert await table(first, "participants", "user_id") == [(4,), (5,), (7,)]
    finally:
        await first.close()
        await second.close()
    assert len(await purges(settings)) == 1


async def test_the_purge_deletes_the_eml_files_of_the_emails_it_erased(settings: Settings) -> None:
    """A rehearsal's .eml files name the person: the purge deletes those whose outbox row it
    erased, at once (`coffeebot purge` runs when no bot may ever start again to sweep them)."""
    from email.message import EmailMessage

    from bot.mail.eml import EmlFolder

    store = await open_migrated_storage(settings, Clock(NOW))
    try:
        await save(store, entered(1, entry=None, completed_at=None), OLD,
                   (email_to(1, "p1@free.fr"),))  # fmt: skip
        await save(store, entered(2, entry=None, completed_at=None), NOW,
                   (email_to(2, "p2@free.fr"),))  # fmt: skip
        folder = EmlFolder(settings.mail_outbox_dir)
        folder.open()
        for user_id in (1, 2):
            message = EmailMessage()
            message["To"] = f"p{user_id}@free.fr"
            message.set_content("Bonjour Ada, votre code : 123456")
            folder.write(f"c:{user_id}", message)
        report = await Purge(store, settings, Clock(NOW)).run()
        assert report.changed
        assert not folder.file_for("c:1").exists()
        assert folder.file_for("c:2").exists()
    finally:
        await store.close()


async def test_the_purge_deletes_the_copies_of_receipts_it_erased(
    settings: Settings, tmp_path: Path
) -> None:
    """EXPENSE_FILES_DIR keeps a copy of each receipt (a ticket shows the traveller's name):
    the copy of an unpaid claim's receipt, erased at the end, went on existing for ever; the
    paid line's copy stays with the hash the mandataire keeps."""
    copies = tmp_path / "receipts"
    copies.mkdir()
    settings = settings.replace(operation_ends_at=ENDS.isoformat(), expense_files_dir=str(copies))
    store = await open_migrated_storage(settings, Clock(NOW))
    try:
        await expenses(store)
        for sha256 in ("ab" * 32, "cd" * 32):
            (copies / f"{sha256}.jpg").write_bytes(b"billet Lyon-Paris, M. Martin")
        report = await Purge(store, settings, Clock(ERASED)).run()
        assert report.changed
        assert sorted(path.name for path in copies.iterdir()) == [f"{'ab' * 32}.jpg"]
    finally:
        await store.close()
