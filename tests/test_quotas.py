"""The core's side of the limits that outlive erasure, of proven ownership and of the
addresses refused as friends: plain functions over the transition table."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from bot.settings import Settings
from conversations.model import (
    Command,
    CountUse,
    ErasePersonalData,
    Press,
    QueueEmail,
    Quota,
    SharedContact,
    Step,
    Text,
)
from conversations.policy import Context
from conversations.quotas import Usage, Use, account_subject, subjects_to_read
from conversations.signup import step
from conversations.validators import is_role_or_campaign_address
from tests.conftest import NOW
from tests.test_confirmation import completed
from tests.test_signup import at, fresh, run


def with_usage(ctx: Context, **uses: Use) -> Context:
    return replace(ctx, usage=Usage(**uses))


def test_a_shared_own_phone_is_vouched_for_and_a_typed_one_is_not(ctx: Context) -> None:
    shared = step(at(Step.PHONE, ctx), SharedContact("+33612345678", is_own=True), ctx).state
    typed = step(at(Step.PHONE, ctx), Text("06 12 34 56 78"), ctx).state
    assert (shared.phone, shared.phone_verified) == ("+33612345678", True)
    assert (typed.phone, typed.phone_verified) == ("+33612345678", False)
    # Typed again from the summary, the number is no longer vouched for.
    edited = run(
        replace(shared, step=Step.SUMMARY), ctx, Press("edit.phone"), Text("06 12 34 56 78")
    )
    assert edited.phone_verified is False


def test_a_mailbox_past_its_daily_limit_gets_no_confirmation(ctx: Context) -> None:
    summary = run(at(Step.FRIENDS, ctx), ctx, Press("friends.done"), Press("question.skip"))
    limit = ctx.limits.confirmation_emails_per_address_per_day
    until = NOW + timedelta(hours=5)
    below = with_usage(ctx, confirmation_emails=Use(limit - 1, until))
    outcome = step(summary, Press("summary.confirm"), below)
    assert any(isinstance(effect, QueueEmail) for effect in outcome.effects)
    reached = with_usage(ctx, confirmation_emails=Use(limit, until))
    full = step(summary, Press("summary.confirm"), reached)
    assert full.effects == ()
    # Nothing says the mailbox had its day's emails: that would tell of other accounts.
    assert full.replies == outcome.replies and full.state == outcome.state


def test_resend_counts_against_the_mailbox_too(ctx: Context) -> None:
    state = completed(ctx)
    later = replace(ctx, now=NOW + timedelta(minutes=1))
    outcome = step(state, Press("x"), later)  # a stale press changes nothing
    assert outcome.effects == ()
    limit = ctx.limits.confirmation_emails_per_address_per_day
    full = with_usage(later, confirmation_emails=Use(limit, NOW + timedelta(hours=1)))
    refused = step(state, Command("renvoyer"), full)
    allowed = step(state, Command("renvoyer"), later)
    assert refused.effects == () and refused.replies == allowed.replies
    assert CountUse(Quota.CONFIRMATION_EMAILS, "zoe@orange.fr", limit) in allowed.effects


def test_erasing_a_completed_signup_is_counted_and_an_unfinished_one_is_not(
    ctx: Context,
) -> None:
    done = completed(ctx)
    asked = step(done, Command("supprimer"), ctx).state
    erased = step(asked, Press("erase.confirm"), ctx)
    assert erased.effects == (ErasePersonalData(), CountUse(Quota.ERASURES, "42"))
    unfinished = step(at(Step.EMAIL, ctx), Press("erase.confirm"), ctx)
    assert unfinished.effects == (ErasePersonalData(),)


def test_erasure_is_never_refused_whatever_the_count(ctx: Context) -> None:
    crowded = with_usage(ctx, erasures=Use(99, NOW + timedelta(days=6)))
    erased = step(completed(ctx), Press("erase.confirm"), crowded)
    assert ErasePersonalData() in erased.effects
    assert erased.state.step == Step.WELCOME and erased.state.email is None


def test_a_new_signup_waits_after_too_many_erasures(ctx: Context) -> None:
    limit = ctx.limits.erasures_per_week
    until = NOW + timedelta(days=6, hours=1)
    welcome = fresh(ctx)
    refused = step(welcome, Press("welcome.join"), with_usage(ctx, erasures=Use(limit, until)))
    assert refused.state == welcome and refused.effects == ()
    assert "plusieurs fois cette semaine" in refused.replies[0].text
    assert "2 décembre 2026" in refused.replies[0].text
    allowed = step(welcome, Press("welcome.join"), with_usage(ctx, erasures=Use(limit - 1, until)))
    assert allowed.state.step == Step.CONSENT


def test_the_shell_reads_only_the_counts_a_step_may_need(ctx: Context) -> None:
    assert subjects_to_read(None, 5) == (None, account_subject(5))
    assert subjects_to_read(fresh(ctx), 42) == (None, "42")
    assert subjects_to_read(at(Step.POSTCODE, ctx), 42) == (None, None)
    summary = replace(at(Step.SUMMARY, ctx), email="Zoe.Martin+x@GMAIL.com")
    assert subjects_to_read(summary, 42) == ("zoemartin@gmail.com", None)


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("postmaster@free.fr", True),
        ("Abuse@orange.fr", True),
        ("noreply@example.org", True),
        ("no-reply@example.org", True),
        ("hostmaster@example.org", True),
        ("webmaster@example.org", True),
        ("admin@example.org", True),
        ("root@example.org", True),
        ("MAILER-DAEMON@example.org", True),
        ("postmaster+x@gmail.com", True),
        ("cafe@campagne.example", True),
        ("anyone@campagne.example", True),
        ("anyone@mail.campagne.example", True),
        ("chef@parti.example", True),
        ("ami@free.fr", False),
        ("administration.ami@free.fr", False),
        ("campagne.example@gmail.com", False),
    ],
)
def test_role_and_campaign_addresses(address: str, refused: bool) -> None:
    campaign = Settings(
        campaign_email_domains=("parti.example",), dpo_contact="dpo.camille@cabinet.example"
    ).campaign_addresses
    assert is_role_or_campaign_address(address, campaign) is refused


def test_the_dpo_s_address_is_refused_but_not_its_firm_s_domain() -> None:
    campaign = Settings(dpo_contact="dpo.camille@cabinet.example").campaign_addresses
    assert is_role_or_campaign_address("DPO.Camille@cabinet.example", campaign)
    assert not is_role_or_campaign_address("ami@cabinet.example", campaign)


def test_a_role_or_campaign_address_is_refused_as_a_friend_and_nothing_changes(
    ctx: Context,
) -> None:
    friends = at(Step.FRIENDS, ctx)
    for address in ("postmaster@free.fr", "donnees@campagne.example", "x@campagne.example"):
        outcome = step(friends, Text(address), ctx)
        assert outcome.state == friends and outcome.effects == ()
        assert "pas celle d’un ami" in outcome.replies[0].text
    kept = step(friends, Text("ami@free.fr"), ctx).state
    assert kept.friends == ("ami@free.fr",)


def test_the_providers_setting_decides_which_tags_are_one_mailbox(ctx: Context) -> None:
    settings = Settings(address_tag_providers=("free.fr",))
    narrowed = replace(ctx, limits=settings.limits)
    friends = replace(at(Step.FRIENDS, ctx), friends=("ami@free.fr",))
    assert "déjà dans la liste" in step(friends, Text("ami+2@free.fr"), narrowed).replies[0].text
    added = step(friends, Text("ami+2@free.fr"), ctx).state
    assert added.friends == ("ami@free.fr", "ami+2@free.fr")
