"""The purge, table by table: the steps that carry out a retention plan
(conversations/retention.py) on the database.

`PURGE_STEPS` is the registry: each table holding personal data has its step(s) here, under the
category of rows whose rule decides them; `KEPT` names each other table and why it stays. A new
table adds one entry to either (tests/test_purge.py fails for a table in neither).

Each step reaches its rows by a WHERE clause that earlier steps do not change (a category's
children before its parent; the whole-table steps first), so that counting every step before
anything changes (a dry run) gives the counts the run itself then makes. The run is one
transaction: a crash leaves everything as it was, and the next run does it all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from conversations.model import NEWS_CONSENTS, ConsentKind
from conversations.retention import Category, PurgePlan, PurgeRule, Treatment
from storage.database import Database, Dialect, Statement

# What a step's SQL is bound to, written in it as `{name}`: the rule's cut-off, the moment
# since which an unpaid claim is kept, and the caps of travel in cents.
_MARKER = re.compile(r"\{(before|owed_since|train_cap|arranged_cap)\}")


def _bind(sql: str, rule: PurgeRule, plan: PurgePlan) -> Statement:
    def time(moment: datetime | None) -> str | None:
        return moment.astimezone(UTC).isoformat() if moment else None

    values: dict[str, object] = {
        "before": time(rule.before),
        "owed_since": time(plan.owed_since),
        "train_cap": plan.train_cap_cents,
        "arranged_cap": plan.arranged_cap_cents,
    }
    bound = [values[match[1]] for match in _MARKER.finditer(sql)]
    written = _MARKER.sub(lambda m: "CAST(? AS BIGINT)" if m[1].endswith("_cap") else "?", sql)
    return written, tuple(bound)


def _kinds(kinds: Sequence[ConsentKind]) -> str:
    # Enum values, never input: written into the SQL as literals.
    return ", ".join(f"'{kind}'" for kind in kinds)


def _consented(kinds: Sequence[ConsentKind], user: str = "participants.user_id") -> str:
    return (
        f"EXISTS (SELECT 1 FROM consents AS c WHERE c.user_id = {user}"
        f" AND c.kind IN ({_kinds(kinds)}) AND c.withdrawn_at IS NULL)"
    )


# Owed claims: a winner's claim not yet fully paid (what is due is the claim within the cap,
# as conversations/expense_admin.py's status says), of a place that did not end, made since
# `owed_since`. Kept until paid or closed; the purge itself never changes what decides it.
_CAP = "CASE x.travel WHEN 'train' THEN {train_cap} WHEN 'arranged' THEN {arranged_cap} ELSE 0 END"
_OWED = (
    "SELECT x.ticket FROM expenses AS x WHERE x.step <> 'closed' AND x.claimed_at >= {owed_since}"
    " AND COALESCE((SELECT SUM(y.amount_cents) FROM expense_payments AS y"
    " WHERE y.ticket = x.ticket AND y.cancelled_at IS NULL), 0)"
    f" < CASE WHEN x.claimed_cents < {_CAP} THEN x.claimed_cents ELSE {_CAP} END"
)
_NOT_OWED = f"ticket NOT IN ({_OWED})"


def _owed(user: str) -> str:
    """The person is owed a payment: their contact stays."""
    return (
        f"{user} IN (SELECT z.user_id FROM expenses AS z"
        f" WHERE z.user_id IS NOT NULL AND z.ticket IN ({_OWED}))"
    )


def _keeps_contact(user: str) -> str:
    return f"({_consented(NEWS_CONSENTS, user)} OR {_owed(user)})"


# People: the rows of `participants` each person category reaches.
_INCOMPLETE = (
    "SELECT p.user_id FROM participants AS p WHERE p.updated_at < {before}"
    " AND NOT EXISTS (SELECT 1 FROM entries AS e WHERE e.user_id = p.user_id)"
)
# News contacts, and winners owed a payment: the contact stays.
_NEWS = f"SELECT p.user_id FROM participants AS p WHERE {_keeps_contact('p.user_id')}"
_NOT_NEWS = f"SELECT p.user_id FROM participants AS p WHERE NOT {_keeps_contact('p.user_id')}"
_OWED_PEOPLE = f"SELECT p.user_id FROM participants AS p WHERE {_owed('p.user_id')}"
_ENTRY_EMAIL = "(SELECT e.email FROM entries AS e WHERE e.user_id = participants.user_id)"
# A news contact keeps its Telegram id, language, news consents, the confirmed address their
# email consent reaches and the phone their SMS consent reaches; everything else is emptied,
# and the step goes back to the start, as for someone who never signed up (the operation is
# over: nobody can enter).
_STRIPPED = {
    "first_name": "NULL", "last_name": "NULL", "pending_email": "NULL", "postcode": "NULL",
    "departement": "NULL", "area": "NULL", "question": "NULL", "referrer": "NULL",
    "completed_at": "NULL", "confirmation_token_hash": "NULL", "confirmation_code_hash": "NULL",
    "confirmation_expires_at": "NULL", "confirmation_address": "NULL", "code_failures": "''",
    "confirmation_sends": "''", "referral_code": "NULL", "friends_invited": "0",
    "actions": "''", "availability": "''", "consent_ticks": "''", "step": "'welcome'",
    "paused": "0", "editing": "0",
}  # fmt: skip
# A winner owed a payment keeps the confirmed address and the phone: the mandataire may need
# them to pay (bank details are not asked here), and the bot tells them on Telegram.
_NEWS_EMAIL = f"({_consented((ConsentKind.NEWS_EMAIL,))} OR {_owed('participants.user_id')})"
_NEWS_SMS = f"({_consented((ConsentKind.NEWS_SMS,))} OR {_owed('participants.user_id')})"
_STRIP = ", ".join(
    [
        *(f"{column} = {value}" for column, value in _STRIPPED.items()),
        f"email = CASE WHEN {_NEWS_EMAIL} THEN COALESCE({_ENTRY_EMAIL}, email) END",
        # The profile's phone, unique among profiles (an entry's phone is not unique).
        f"phone = CASE WHEN {_NEWS_SMS} THEN phone END",
        # An update in flight from before the purge is refused (StaleWrite), not written over.
        "version = version + 1",
    ]
)
_NOT_YET_STRIPPED = " OR ".join(
    [
        *(f"{column} <> {value}" for column, value in _STRIPPED.items() if value != "NULL"),
        *(f"{column} IS NOT NULL" for column, value in _STRIPPED.items() if value == "NULL"),
        "EXISTS (SELECT 1 FROM entries AS e WHERE e.user_id = participants.user_id)",
        f"(email IS NOT NULL AND NOT {_NEWS_EMAIL})",
        f"(phone IS NOT NULL AND NOT {_NEWS_SMS})",
    ]
)
# Before an address moves from the entry into the profile, a different address typed since
# (and never confirmed) leaves the profile: it might be another person's confirmed one.
_SET_ASIDE = (
    "email = NULL",
    "EXISTS (SELECT 1 FROM entries AS e WHERE e.user_id = participants.user_id"
    " AND lower(e.email) <> lower(participants.email))",
)
_PAID = f"SELECT ticket FROM expenses WHERE last_paid_at IS NOT NULL AND {_NOT_OWED}"
_UNPAID = f"SELECT ticket FROM expenses WHERE last_paid_at IS NULL AND {_NOT_OWED}"
_PAID_BEFORE = f"SELECT ticket FROM expenses WHERE last_paid_at < {{before}} AND {_NOT_OWED}"


@dataclass(frozen=True)
class PurgeStep:
    """One table's share of a category: the rows its rule reaches, and what becomes of them."""

    category: Category
    table: str
    # The rows reached; each `?` is bound to the rule's cut-off.
    where: str
    # None: the rows are deleted; else the SET clause that keeps each row, stripped.
    strip: str | None = None
    # (SET, extra condition) run first on the same rows, its count not reported.
    prepare: tuple[str, str] | None = None
    # The rows are kept and counted (what the purge leaves on purpose), never changed.
    kept: bool = False

    def count(self, rule: PurgeRule, plan: PurgePlan) -> Statement:
        return _bind(f"SELECT COUNT(*) FROM {self.table} WHERE {self.where}", rule, plan)

    def statements(self, rule: PurgeRule, plan: PurgePlan) -> list[Statement]:
        """The statements of the step; the last one's row count is the step's."""
        done: list[Statement] = []
        if self.prepare is not None:
            change, condition = self.prepare
            sql = f"UPDATE {self.table} SET {change} WHERE ({self.where}) AND {condition}"
            done.append(_bind(sql, rule, plan))
        if self.strip is None:
            done.append(_bind(f"DELETE FROM {self.table} WHERE {self.where}", rule, plan))
        else:
            sql = f"UPDATE {self.table} SET {self.strip} WHERE {self.where}"
            done.append(_bind(sql, rule, plan))
        return done


def _people(category: Category, people: str, *tables: str) -> tuple[PurgeStep, ...]:
    """Each of these tables' rows about the people a category reaches."""
    return tuple(PurgeStep(category, table, f"user_id IN ({people})") for table in tables)


_EVERY_ROW = "1 = 1"

PURGE_STEPS: tuple[PurgeStep, ...] = (
    # Whole tables first: their counts do not depend on who is erased after them.
    PurgeStep(Category.OUTBOXES, "outbox", _EVERY_ROW),
    # A message still waiting for a winner owed a payment (their notice of it) is still sent.
    PurgeStep(
        Category.OUTBOXES,
        "telegram_outbox",
        f"NOT (status = 'pending' AND user_id IS NOT NULL AND user_id IN ({_OWED_PEOPLE}))",
    ),
    # Each processed update keeps the replies it sent, the person's own words among them.
    PurgeStep(Category.OUTBOXES, "processed_updates", _EVERY_ROW),
    PurgeStep(Category.DRAW, "draw_places", "user_id IS NOT NULL", strip="user_id = NULL"),
    PurgeStep(Category.DRAW, "meetings", _EVERY_ROW),
    PurgeStep(Category.INVITED_ADDRESSES, "address_hashes", "reason = 'invited'"),
    # Unfinished signups (before the end; after it, PARTICIPANTS reaches them).
    *_people(
        Category.INCOMPLETE_SIGNUPS,
        _INCOMPLETE,
        "friends",
        "consents",
        "outbox",
        "telegram_outbox",
        "telegram_blocked",
    ),
    PurgeStep(Category.INCOMPLETE_SIGNUPS, "participants", f"user_id IN ({_INCOMPLETE})"),
    # Everyone without a news consent.
    *_people(
        Category.PARTICIPANTS, _NOT_NEWS, "friends", "consents", "entries", "telegram_blocked"
    ),
    PurgeStep(Category.PARTICIPANTS, "participants", f"user_id IN ({_NOT_NEWS})"),
    # News contacts: the contact and the news consents stay.
    *_people(Category.NEWS_CONTACTS, _NEWS, "friends"),
    PurgeStep(
        Category.NEWS_CONTACTS,
        "consents",
        f"user_id IN ({_NEWS}) AND NOT (kind IN ({_kinds(NEWS_CONSENTS)})"
        " AND withdrawn_at IS NULL)",
    ),
    # Stripped while the entry, whose confirmed address it keeps, is still there.
    PurgeStep(
        Category.NEWS_CONTACTS,
        "participants",
        f"user_id IN ({_NEWS}) AND ({_NOT_YET_STRIPPED})",
        strip=_STRIP,
        prepare=_SET_ASIDE,
    ),
    *_people(Category.NEWS_CONTACTS, _NEWS, "entries"),
    # Travel expenses, once the operation is over. A claim still owed is kept whole, with the
    # person's contact, until paid or closed (or its years pass): counted, never changed. A
    # paid expense is an accounting record: it loses its link to the person and Telegram's ids
    # of the receipts (the hashes stay), and is kept EXPENSES_RETENTION_YEARS from its latest
    # payment; an expense never paid goes (with any payment cancelled on it).
    PurgeStep(Category.OWED_CLAIMS, "expenses", f"ticket IN ({_OWED})", kept=True),
    PurgeStep(Category.OWED_CLAIMS, "expense_receipts", f"ticket IN ({_OWED})", kept=True),
    PurgeStep(Category.OWED_CLAIMS, "expense_payments", f"ticket IN ({_OWED})", kept=True),
    PurgeStep(
        Category.EXPENSE_CLAIMS,
        "expense_receipts",
        f"(file_id IS NOT NULL OR file_unique_id IS NOT NULL) AND ticket IN ({_PAID})",
        strip="file_id = NULL, file_unique_id = NULL",
    ),
    PurgeStep(
        Category.EXPENSE_CLAIMS,
        "expenses",
        f"user_id IS NOT NULL AND last_paid_at IS NOT NULL AND {_NOT_OWED}",
        strip="user_id = NULL",
    ),
    PurgeStep(Category.EXPENSE_CLAIMS, "expense_receipts", f"ticket IN ({_UNPAID})"),
    PurgeStep(Category.EXPENSE_CLAIMS, "expense_payments", f"ticket IN ({_UNPAID})"),
    PurgeStep(Category.EXPENSE_CLAIMS, "expenses", f"last_paid_at IS NULL AND {_NOT_OWED}"),
    PurgeStep(Category.EXPENSE_LINES, "expense_receipts", f"ticket IN ({_PAID_BEFORE})"),
    PurgeStep(Category.EXPENSE_LINES, "expense_payments", f"ticket IN ({_PAID_BEFORE})"),
    PurgeStep(Category.EXPENSE_LINES, "expenses", f"last_paid_at < {{before}} AND {_NOT_OWED}"),
    # Announcements: the admins' texts and counts; the chats that blocked the bot.
    PurgeStep(Category.OUTBOXES, "announcements", _EVERY_ROW),
    # The admins' free text (reasons, references), which may name someone; the chain keeps
    # each one's salted digest, and still verifies.
    PurgeStep(
        Category.AUDIT_LOG,
        "audit_log",
        "note IS NOT NULL OR note_salt IS NOT NULL",
        strip="note = NULL, note_salt = NULL",
    ),
)

# Tables no step touches, and why.
KEPT: dict[str, str] = {
    "anonymous_counts": "counts linked to nobody",
    "secret_key_check": "an HMAC of a fixed text under the key, never the key, nor anyone's data",
    "draws": "the certificate: tickets, hashes and the admins who confirmed, linked to nobody",
    "draw_addenda": "the replacements, by ticket and public reason",
    "operation": "when entries closed",
    "schema_migrations": "the schema's version",
    "quota_counts": "keyed hashes with counts, forgotten when their window ends (a week at most)",
}


@dataclass(frozen=True)
class PurgeCount:
    category: Category
    treatment: Treatment
    table: str
    rows: int

    @property
    def kept(self) -> bool:
        """Rows the purge leaves on purpose, counted for the report; never changed."""
        return self.treatment == Treatment.KEEP_UNTIL_PAID

    def __str__(self) -> str:
        return f"{self.category} {self.table}: {self.treatment}: {self.rows}"


class Purger:
    def __init__(self, database: Database, steps: Sequence[PurgeStep] = PURGE_STEPS) -> None:
        self._database = database
        self._steps = steps

    def _planned(self, plan: PurgePlan) -> list[tuple[PurgeStep, PurgeRule]]:
        return [
            (step, rule)
            for step in self._steps
            if (rule := plan.rule(step.category)) is not None and rule.treatment != Treatment.KEEP
        ]

    async def count(self, plan: PurgePlan) -> list[PurgeCount]:
        """The rows each step would change (or keeps), changing nothing (a read, off the loop
        on SQLite)."""
        return [await self._count(step, rule, plan) for step, rule in self._planned(plan)]

    async def _count(self, step: PurgeStep, rule: PurgeRule, plan: PurgePlan) -> PurgeCount:
        sql, parameters = step.count(rule, plan)
        rows = await self._database.fetch(sql, parameters)
        return PurgeCount(step.category, rule.treatment, step.table, int(rows[0][0]))

    async def run(self, plan: PurgePlan) -> list[PurgeCount]:
        """Every step, in one transaction; the rows each changed, and those kept on purpose
        (counted first: nothing the purge changes decides them)."""
        kept = {
            id(step): await self._count(step, rule, plan)
            for step, rule in self._planned(plan)
            if step.kept
        }
        planned = [(step, rule) for step, rule in self._planned(plan) if not step.kept]
        statements: list[Statement] = []
        if self._database.dialect is Dialect.POSTGRESQL:
            # People's steps in flight finish first, and new ones wait for the purge: a step
            # writes its person's row before their friends and consents, so it meets the purge
            # there (and reloads) rather than deadlocking with it over a friend or a consent.
            # SQLite's writers take turns anyway.
            statements.append(("LOCK TABLE participants IN SHARE ROW EXCLUSIVE MODE", ()))
        ends: list[int] = []
        for step, rule in planned:
            statements += step.statements(rule, plan)
            ends.append(len(statements) - 1)
        changed = await self._database.run(statements) if statements else []
        done = {
            id(step): PurgeCount(step.category, rule.treatment, step.table, changed[end])
            for (step, rule), end in zip(planned, ends, strict=True)
        }
        return [kept.get(id(step)) or done[id(step)] for step, _ in self._planned(plan)]
