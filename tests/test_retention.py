"""The purge's decisions: what each category of rows becomes, for each person, and the privacy
notice's lines written from the same settings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from conversations.catalogue import Catalogue
from conversations.model import Consent, ConsentKind, Participant
from conversations.retention import (
    Category,
    Fate,
    NewsContact,
    PurgeRule,
    RetentionPolicy,
    Treatment,
    describe,
    fate,
    news_contact,
    purge_plan,
    retention_text,
    years_before,
)
from tests.conftest import NOW
from tests.factories import entered

POLICY = RetentionPolicy()
ENDS = NOW + timedelta(days=60)
ERASED = ENDS + timedelta(days=90)
PARIS = ZoneInfo("Europe/Paris")


def test_before_the_end_only_old_unfinished_signups_go() -> None:
    plan = purge_plan(POLICY, ENDS, NOW)
    assert plan.rules == (
        PurgeRule(Category.INCOMPLETE_SIGNUPS, Treatment.DELETE, NOW - timedelta(days=30)),
    )
    assert plan.erase_all_at == ERASED and not plan.operation_erased


def test_without_an_end_date_nothing_is_erased_for_the_end() -> None:
    plan = purge_plan(POLICY, None, NOW + timedelta(days=5000))
    assert [rule.category for rule in plan.rules] == [Category.INCOMPLETE_SIGNUPS]
    assert "OPERATION_ENDS_AT is unset" in describe(plan, {})[-1]


def test_after_the_end_and_its_days_everything_goes_but_what_the_law_or_consent_keeps() -> None:
    plan = purge_plan(POLICY, ENDS, ERASED)
    treatments = {rule.category: rule.treatment for rule in plan.rules}
    assert treatments == {
        Category.PARTICIPANTS: Treatment.DELETE,
        Category.NEWS_CONTACTS: Treatment.KEEP_NEWS_CONTACT,
        Category.OUTBOXES: Treatment.DELETE,
        Category.DRAW: Treatment.KEEP_TICKETS_ONLY,
        Category.AUDIT_LOG: Treatment.KEEP_TICKETS_ONLY,
        Category.EXPENSE_CLAIMS: Treatment.DELETE,
        Category.EXPENSE_LINES: Treatment.DELETE,
        Category.OWED_CLAIMS: Treatment.KEEP_UNTIL_PAID,
        Category.SUPPRESSED_ADDRESSES: Treatment.KEEP,
        Category.INVITED_ADDRESSES: Treatment.DELETE,
    }
    lines = plan.rule(Category.EXPENSE_LINES)
    assert lines is not None and lines.before == years_before(ERASED, 10)
    # A claim still owed is kept until paid or closed, at most the same years after the claim.
    owed = plan.rule(Category.OWED_CLAIMS)
    assert owed is not None and owed.before == plan.owed_since == years_before(ERASED, 10)
    assert (plan.train_cap_cents, plan.arranged_cap_cents) == (20_000, 70_000)
    assert plan.operation_erased
    # A minute earlier, still only the unfinished signups.
    assert len(purge_plan(POLICY, ENDS, ERASED - timedelta(minutes=1)).rules) == 1


@pytest.mark.parametrize(
    ("moment", "years", "expected"),
    [
        (datetime(2037, 5, 2, 9, tzinfo=UTC), 10, datetime(2027, 5, 2, 9, tzinfo=UTC)),
        (datetime(2036, 2, 29, tzinfo=UTC), 1, datetime(2035, 2, 28, tzinfo=UTC)),
    ],
)
def test_the_legal_period_counts_calendar_years(
    moment: datetime, years: int, expected: datetime
) -> None:
    assert years_before(moment, years) == expected


NEWS_EMAIL = Consent(ConsentKind.NEWS_EMAIL, "fr-n", NOW)
NEWS_SMS = Consent(ConsentKind.NEWS_SMS, "fr-n", NOW)
NEWS_TELEGRAM = Consent(ConsentKind.NEWS_TELEGRAM, "fr-n", NOW)
OLD = NOW - timedelta(days=31)


@pytest.mark.parametrize(
    ("person", "now", "expected"),
    [
        # Unfinished: erased once older than RETENTION_INCOMPLETE_DAYS.
        (entered(1, entry=None, created_at=OLD), NOW, Fate.DELETE),
        (entered(2, entry=None, created_at=NOW - timedelta(days=29)), NOW, Fate.KEEP),
        (entered(3, entry=None, created_at=OLD, completed_at=None), NOW, Fate.DELETE),
        # Entered: kept until the end and its days.
        (entered(4, created_at=OLD), NOW, Fate.KEEP),
        (entered(5, created_at=OLD), ERASED, Fate.DELETE),
        (entered(6, entry=None), ERASED, Fate.DELETE),
    ],
)
def test_each_person_is_kept_or_erased(person: Participant, now: datetime, expected: Fate) -> None:
    assert fate(person, purge_plan(POLICY, ENDS, now)) == expected


def test_an_unfinished_signup_still_in_progress_is_kept() -> None:
    started_long_ago = entered(8, entry=None, created_at=OLD)
    plan = purge_plan(POLICY, ENDS, NOW)
    assert fate(started_long_ago, plan, last_active=NOW - timedelta(days=1)) == Fate.KEEP
    assert fate(started_long_ago, plan, last_active=OLD) == Fate.DELETE


def test_news_consents_keep_only_the_contact_they_reach_until_withdrawn() -> None:
    base = entered(7)
    subscriber = replace(base, consents=(*base.consents, NEWS_EMAIL, NEWS_TELEGRAM))
    plan = purge_plan(POLICY, ENDS, ERASED)
    assert fate(subscriber, plan) == Fate.KEEP_NEWS_CONTACT
    assert news_contact(subscriber) == NewsContact(
        7, "fr", "p7@free.fr", None, (NEWS_EMAIL, NEWS_TELEGRAM)
    )
    by_sms = replace(base, consents=(*base.consents, NEWS_SMS))
    assert news_contact(by_sms) == NewsContact(7, "fr", None, "+33612340007", (NEWS_SMS,))
    # Withdrawn after the purge: nothing is left to keep.
    assert fate(replace(subscriber, consents=base.consents), plan) == Fate.DELETE


def test_the_dry_run_names_each_rule_with_its_rows() -> None:
    plan = purge_plan(POLICY, ENDS, ERASED)
    lines = describe(plan, {Category.PARTICIPANTS: 120, Category.NEWS_CONTACTS: 30})
    assert "participants: delete: 120" in lines
    assert "news_contacts: keep_news_contact: 30" in lines
    assert "draw: keep_tickets_only: 0" in lines
    assert any(line.startswith("expense_lines: delete (before 2017-") for line in lines)
    early = describe(purge_plan(POLICY, ENDS, NOW), {Category.INCOMPLETE_SIGNUPS: 4})
    assert early[0].startswith("incomplete_signups: delete (before ") and early[0].endswith(": 4")
    assert early[1] == f"everything else is erased from {ERASED.isoformat()}"


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_privacy_notice_says_the_settings(texts: Catalogue, language: str) -> None:
    policy = RetentionPolicy(incomplete_days=21, after_end_days=45, expenses_years=6)
    text = retention_text(policy, ENDS, texts, language, PARIS)
    for value in ("21", "45", "6", str((ENDS + timedelta(days=45)).astimezone(PARIS).year)):
        assert value in text
    undated = retention_text(policy, None, texts, language, PARIS)
    assert "{" not in undated and "45" in undated
    # A claim still owed outlives the end: the notice says so, with its longest term.
    owed = {"fr": "encore dû", "en": "still owed"}[language]
    [line] = [line for line in text.split("\n") if owed in line]
    assert "6" in line
