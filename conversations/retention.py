"""What the purge erases and what it keeps, decided from the settings and the time passed in.

The privacy notice promises it; `purge_plan` says it as data: a rule per category of rows, which
the shell carries out table by table (or prints, for `--dry-run`), and `fate` decides for one
person. `retention_text` writes the notice's lines from the same settings, so the two never
disagree.

- Signups never completed (no confirmed address, so no entry): erased after
  RETENTION_INCOMPLETE_DAYS without activity.
- RETENTION_AFTER_END_DAYS after OPERATION_ENDS_AT, everything, finished or not, except: a
  person who agreed to news keeps only the contact that news reaches them by, and those
  consents, until they withdraw; the draw and the audit log keep tickets, linked to nobody
  (the log loses the admins' free text);
  expenses keep the mandataire's lines for EXPENSES_RETENTION_YEARS; a winner's claim not yet
  fully paid (of a place that did not end) keeps the expense, its receipts and the contact to
  pay and tell them until it is paid or closed, or EXPENSES_RETENTION_YEARS after the claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum

from conversations.catalogue import Catalogue
from conversations.dates import long_datetime
from conversations.expenses import ExpenseRules
from conversations.model import NEWS_CONSENTS, Consent, ConsentKind, Participant, Travel


@dataclass(frozen=True)
class RetentionPolicy:
    # RETENTION_INCOMPLETE_DAYS: a signup left unfinished this long is erased.
    incomplete_days: int = 30
    # RETENTION_AFTER_END_DAYS: counted from OPERATION_ENDS_AT, then everything is erased.
    after_end_days: int = 90
    # EXPENSES_RETENTION_YEARS: accounting records are kept ten years (Code de commerce, art.
    # L123-22), and the campaign account must be justifiable to the CNCCFP and the election
    # judge until then; the mandataire's accountant may set another period.
    expenses_years: int = 10


class Category(StrEnum):
    """Rows the purge treats alike, whatever tables the shell keeps them in."""

    # People without an entry: profile, answers, confirmation, friends' addresses.
    INCOMPLETE_SIGNUPS = "incomplete_signups"
    # Everyone else without a news consent: profile, entry, answers, engagement.
    PARTICIPANTS = "participants"
    # People with a news consent.
    NEWS_CONTACTS = "news_contacts"
    # Emails and Telegram messages queued, sent or not: addresses and wording.
    OUTBOXES = "outboxes"
    # Places, certificate, addenda: tickets, and the people they belong to.
    DRAW = "draw"
    # Admins' actions: tickets and ids stay (a hash chain); the free text an admin typed (a
    # reason, a reference), which may name someone, goes, its salted digest staying in the chain.
    AUDIT_LOG = "audit_log"
    # Receipts (Telegram file ids, copies in EXPENSE_FILES_DIR) and the winner's chat.
    EXPENSE_CLAIMS = "expense_claims"
    # The mandataire's lines (`MandataireLine`): name, postcode, amounts, references, hashes.
    EXPENSE_LINES = "expense_lines"
    # A winner's claim not yet fully paid, of a place that did not end: the expense, its
    # receipts and payments, and the contact to pay and tell them (stripped as a news contact,
    # with the confirmed address and phone), until it is paid or closed, or until
    # EXPENSES_RETENTION_YEARS after the claim. Counted, never changed.
    OWED_CLAIMS = "owed_claims"
    # Keyed hashes of invited addresses that asked never to be invited again.
    SUPPRESSED_ADDRESSES = "suppressed_addresses"
    # Keyed hashes of the addresses invited, kept so that nobody is invited twice: once the
    # operation is over, nobody is invited again.
    INVITED_ADDRESSES = "invited_addresses"


class Treatment(StrEnum):
    DELETE = "delete"
    # Only the contact the news consents reach, and those consents.
    KEEP_NEWS_CONTACT = "keep_news_contact"
    # The tickets stay; whom they belonged to goes.
    KEEP_TICKETS_ONLY = "keep_tickets_only"
    # Honouring a refusal needs it.
    KEEP = "keep"
    # A debt: kept, and counted, until it is paid or closed (or its years pass).
    KEEP_UNTIL_PAID = "keep_until_paid"


# Why a category the purge counts is kept, printed under its counts.
KEPT_WHY = {
    Category.OWED_CLAIMS: (
        "kept, not erased: winners' travel claims not yet fully paid (place not ended), with"
        " their receipts and the contact to pay and tell them, until paid or closed, at most"
        " EXPENSES_RETENTION_YEARS after the claim"
    ),
}


@dataclass(frozen=True)
class PurgeRule:
    category: Category
    treatment: Treatment
    # The rule reaches rows last active (or last paid, for expense lines; claimed since, for
    # owed claims) before this moment; None: every row of the category.
    before: datetime | None = None


@dataclass(frozen=True)
class PurgePlan:
    now: datetime
    rules: tuple[PurgeRule, ...]
    # When everything goes; None while OPERATION_ENDS_AT is unset.
    erase_all_at: datetime | None
    # Claims made since this moment and not yet fully paid are kept (None before the end).
    owed_since: datetime | None = None
    # TRAVEL_MAX_EUR and TRAVEL_ARRANGED_MAX_EUR in cents: a claim is paid once what is due
    # (the claim, within the cap) is paid.
    train_cap_cents: int = 20_000
    arranged_cap_cents: int = 70_000

    @property
    def operation_erased(self) -> bool:
        return self.erase_all_at is not None and self.now >= self.erase_all_at

    def rule(self, category: Category) -> PurgeRule | None:
        return next((rule for rule in self.rules if rule.category == category), None)


def erase_all_at(policy: RetentionPolicy, ends_at: datetime | None) -> datetime | None:
    return ends_at + timedelta(days=policy.after_end_days) if ends_at else None


def years_before(moment: datetime, years: int) -> datetime:
    """The same day `years` earlier; 29 February becomes the 28th."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)


def purge_plan(
    policy: RetentionPolicy,
    ends_at: datetime | None,
    now: datetime,
    expense_rules: ExpenseRules | None = None,
) -> PurgePlan:
    incomplete = PurgeRule(
        Category.INCOMPLETE_SIGNUPS,
        Treatment.DELETE,
        now - timedelta(days=policy.incomplete_days),
    )
    erase_at = erase_all_at(policy, ends_at)
    if erase_at is None or now < erase_at:
        return PurgePlan(now, (incomplete,), erase_at)
    # Everyone without a news consent goes, signup finished or not: the incomplete signups'
    # rule would only reach some of the same people.
    cut_off = years_before(now, policy.expenses_years)
    rules = (
        PurgeRule(Category.PARTICIPANTS, Treatment.DELETE),
        PurgeRule(Category.NEWS_CONTACTS, Treatment.KEEP_NEWS_CONTACT),
        PurgeRule(Category.OUTBOXES, Treatment.DELETE),
        PurgeRule(Category.DRAW, Treatment.KEEP_TICKETS_ONLY),
        PurgeRule(Category.AUDIT_LOG, Treatment.KEEP_TICKETS_ONLY),
        PurgeRule(Category.EXPENSE_CLAIMS, Treatment.DELETE),
        PurgeRule(Category.EXPENSE_LINES, Treatment.DELETE, cut_off),
        PurgeRule(Category.OWED_CLAIMS, Treatment.KEEP_UNTIL_PAID, cut_off),
        PurgeRule(Category.SUPPRESSED_ADDRESSES, Treatment.KEEP),
        PurgeRule(Category.INVITED_ADDRESSES, Treatment.DELETE),
    )
    caps = expense_rules or ExpenseRules()
    return PurgePlan(
        now,
        rules,
        erase_at,
        owed_since=cut_off,
        train_cap_cents=caps.cap_cents(Travel.TRAIN),
        arranged_cap_cents=caps.cap_cents(Travel.ARRANGED),
    )


class Fate(StrEnum):
    KEEP = "keep"
    DELETE = "delete"
    KEEP_NEWS_CONTACT = "keep_news_contact"


def news_consents(person: Participant) -> tuple[Consent, ...]:
    return tuple(consent for consent in person.consents if consent.kind in NEWS_CONSENTS)


def fate(person: Participant, plan: PurgePlan, last_active: datetime | None = None) -> Fate:
    """What the plan does to this person's data; once everything is erased, a person who has
    since withdrawn every news consent goes too. `last_active` is when the person last did
    anything (the store's last save of them); their signup's start when not given."""
    if plan.operation_erased:
        return Fate.KEEP_NEWS_CONTACT if news_consents(person) else Fate.DELETE
    rule = plan.rule(Category.INCOMPLETE_SIGNUPS)
    before = rule.before if rule else None
    stale = before is not None and (last_active or person.created_at) < before
    return Fate.DELETE if person.entry is None and stale else Fate.KEEP


@dataclass(frozen=True)
class NewsContact:
    """All that stays of a person who agreed to news: the way to reach them, and the consents.

    The Telegram id stays whatever the consent: it is how they withdraw (/desabonner).
    """

    user_id: int
    language: str
    email: str | None
    phone: str | None
    consents: tuple[Consent, ...]


def news_contact(person: Participant) -> NewsContact:
    consents = news_consents(person)
    kinds = {consent.kind for consent in consents}
    entry = person.entry
    email = (entry.email if entry else person.email) if ConsentKind.NEWS_EMAIL in kinds else None
    phone = (entry.phone if entry else person.phone) if ConsentKind.NEWS_SMS in kinds else None
    return NewsContact(person.user_id, person.language, email, phone, consents)


def describe(plan: PurgePlan, counts: Mapping[Category, int]) -> list[str]:
    """`coffeebot purge [--dry-run]`'s report: one line per rule, with the rows it reaches."""
    lines = []
    for rule in plan.rules:
        since = "claimed since" if rule.treatment == Treatment.KEEP_UNTIL_PAID else "before"
        before = f" ({since} {rule.before.isoformat(timespec='minutes')})" if rule.before else ""
        lines.append(f"{rule.category}: {rule.treatment}{before}: {counts.get(rule.category, 0)}")
    if plan.erase_all_at is None:
        lines.append("OPERATION_ENDS_AT is unset: nothing is erased for the end of the operation")
    elif not plan.operation_erased:
        lines.append(f"everything else is erased from {plan.erase_all_at.isoformat()}")
    return lines


def retention_values(
    policy: RetentionPolicy,
    ends_at: datetime | None,
    texts: Catalogue,
    language: str,
    zone: tzinfo,
) -> dict[str, str]:
    """The values the privacy notice's retention lines are written with."""
    erase_at = erase_all_at(policy, ends_at)
    return {
        "incomplete_days": str(policy.incomplete_days),
        "after_end_days": str(policy.after_end_days),
        "expenses_years": str(policy.expenses_years),
        "erased_on": (
            texts.render(
                language,
                "privacy.retention_date",
                date=long_datetime(texts, language, erase_at, zone),
            )
            if erase_at
            else ""
        ),
    }


def retention_text(
    policy: RetentionPolicy,
    ends_at: datetime | None,
    texts: Catalogue,
    language: str,
    zone: tzinfo,
) -> str:
    return texts.render(
        language,
        "privacy.retention",
        **retention_values(policy, ends_at, texts, language, zone),
    )
