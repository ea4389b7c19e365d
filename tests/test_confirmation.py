"""Email confirmation, the engagement questionnaire and referrals, as plain functions."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from conversations.confirmation import digest
from conversations.model import (
    Action,
    Availability,
    Command,
    ConsentKind,
    CountUse,
    InviteFriends,
    Participant,
    Press,
    QueueEmail,
    Quota,
    RecordConsent,
    Step,
    SuppressAddress,
    Text,
    WithdrawConsent,
)
from conversations.policy import Context, Limits, Secrets
from conversations.signup import step
from tests.conftest import NOW, SECRETS
from tests.test_signup import at, run

TOKEN, CODE = SECRETS.token, SECRETS.code
# The daily limit of confirmation emails to one mailbox, as the default settings have it.
LIMIT = Limits().confirmation_emails_per_address_per_day


def completed(ctx: Context) -> Participant:
    state = run(
        at(Step.FRIENDS, ctx), ctx, Press("friends.add"), Text("ami@free.fr"), Press("friends.done")
    )
    return run(state, ctx, Press("question.skip"), Press("summary.confirm"))


def later(ctx: Context, **delta: float) -> Context:
    return replace(ctx, now=ctx.now + timedelta(**delta))


def test_completing_queues_a_confirmation_and_keeps_only_hashes(ctx: Context) -> None:
    state = run(at(Step.FRIENDS, ctx), ctx, Press("friends.done"), Press("question.skip"))
    outcome = step(state, Press("summary.confirm"), ctx)
    [email, counted] = outcome.effects
    assert counted == CountUse(Quota.CONFIRMATION_EMAILS, "zoe@orange.fr", LIMIT)
    assert isinstance(email, QueueEmail) and email.kind == "confirmation"
    assert email.recipient == "zoe@orange.fr" and dict(email.params)["token"] == TOKEN
    new = outcome.state
    assert new.step == Step.COMPLETE and not new.is_confirmed
    assert new.confirmation is not None
    key = ctx.hash_key
    assert new.confirmation.token_hash == digest(key, TOKEN)
    assert new.confirmation.code_hash == digest(key, CODE)
    assert TOKEN not in repr(replace(new, confirmation=None))
    assert "zoe@orange.fr" in outcome.replies[-1].text


def test_the_link_confirms_invites_the_friends_and_opens_the_questionnaire(ctx: Context) -> None:
    state = completed(ctx)
    outcome = step(state, Command("start", f"c_{TOKEN}"), later(ctx, minutes=5))
    new = outcome.state
    assert new.is_confirmed and new.confirmation is None and new.step == Step.ENGAGE_ACTIONS
    assert outcome.effects == (InviteFriends(("ami@free.fr",), "Zoé", "REFcode1", "fr"),)
    assert new.friends == () and new.friends_invited == 1
    assert "vous participez au tirage" in outcome.replies[0].text


def test_a_used_expired_foreign_or_garbled_link_changes_nothing(ctx: Context) -> None:
    state = completed(ctx)
    expired = step(state, Command("start", f"c_{TOKEN}"), later(ctx, days=8))
    assert expired.state == state and "expiré" in expired.replies[0].text
    for token in ("someone-elses-token-22", "x", "", "é" * 30, TOKEN + "x"):
        refused = step(state, Command("start", f"c_{token}"), ctx)
        assert refused.state == state and "pas valable pour ce compte" in refused.replies[0].text
    confirmed = step(state, Command("start", f"c_{TOKEN}"), ctx).state
    used = step(confirmed, Command("start", f"c_{TOKEN}"), ctx)
    assert used.state == confirmed and "déjà confirmée" in used.replies[0].text


def test_the_code_confirms_and_guessing_stops_at_the_limit(ctx: Context) -> None:
    state = completed(ctx)
    assert step(state, Text("123 456"), ctx).state.is_confirmed
    for attempt in range(5):
        outcome = step(state, Text(f"00000{attempt}"), ctx)
        state = outcome.state
    assert "Trop de codes erronés" in outcome.replies[0].text
    locked = step(state, Text(CODE), ctx)
    assert locked.state == state and not locked.state.is_confirmed
    assert step(state, Text(CODE), later(ctx, minutes=61)).state.is_confirmed


def test_resend_is_limited_and_replaces_the_previous_link(ctx: Context) -> None:
    state = completed(ctx)
    fresh = Secrets(
        token="Another-token-for-test", code="654321", referral_code="other", ticket="TKT0000002"
    )
    resent = step(state, Command("renvoyer"), replace(ctx, secrets=fresh))
    assert isinstance(resent.effects[0], QueueEmail)
    old_link = step(resent.state, Command("start", f"c_{TOKEN}"), ctx)
    assert not old_link.state.is_confirmed
    state = run(resent.state, replace(ctx, secrets=fresh), Command("resend"))
    limited = step(state, Command("renvoyer"), ctx)
    assert limited.effects == () and "plus tard" in limited.replies[0].text
    assert step(state, Command("renvoyer"), later(ctx, hours=1, minutes=1)).effects


def test_a_new_address_needs_a_new_confirmation(ctx: Context) -> None:
    confirmed = run(completed(ctx), ctx, Command("start", f"c_{TOKEN}"), Command("annuler"))
    changed = run(confirmed, ctx, Command("modifier"), Press("edit.email"), Text("lea@free.fr"))
    assert changed.email_change_pending and changed.is_confirmed
    outcome = step(changed, Press("summary.confirm"), ctx)
    [email, counted] = outcome.effects
    assert isinstance(email, QueueEmail) and email.recipient == "lea@free.fr"
    assert counted == CountUse(Quota.CONFIRMATION_EMAILS, "lea@free.fr", LIMIT)


def test_friends_added_after_confirmation_are_invited_on_confirm(ctx: Context) -> None:
    confirmed = run(completed(ctx), ctx, Command("start", f"c_{TOKEN}"), Command("annuler"))
    edited = run(
        confirmed,
        ctx,
        Command("modifier"),
        Press("edit.friends"),
        Press("friends.add"),
        Text("b@free.fr"),
        Press("friends.done"),
    )
    outcome = step(edited, Press("summary.confirm"), ctx)
    assert outcome.effects == (InviteFriends(("b@free.fr",), "Zoé", "REFcode1", "fr"),)
    assert outcome.state.friends_invited == 2


def test_the_questionnaire_records_choices_and_news_consents(ctx: Context) -> None:
    state = step(completed(ctx), Command("start", f"c_{TOKEN}"), ctx).state
    state = run(
        state,
        ctx,
        Press("action.leaflets"),
        Press("action.events"),
        Press("action.events"),
        Press("engage.actions_done"),
    )
    assert state.actions == {Action.LEAFLETS} and state.step == Step.ENGAGE_AVAILABILITY
    state = run(
        state,
        ctx,
        Press("when.weekends"),
        Press("engage.availability_done"),
        Press("news.news_email"),
    )
    outcome = step(state, Press("engage.news_done"), ctx)
    assert outcome.state.step == Step.COMPLETE and outcome.state.availability == {
        Availability.WEEKENDS
    }
    [recorded] = outcome.effects
    assert isinstance(recorded, RecordConsent) and recorded.consent.kind == ConsentKind.NEWS_EMAIL
    assert outcome.state.has_consented(ConsentKind.NEWS_EMAIL)
    assert not outcome.state.has_consented(ConsentKind.NEWS_SMS)

    reopened = run(outcome.state, ctx, Command("engagement"), Press("engage.actions_skip"))
    assert reopened.step == Step.ENGAGE_NEWS and reopened.consent_ticks == {ConsentKind.NEWS_EMAIL}
    unticked = step(run(reopened, ctx, Press("news.news_email")), Press("engage.news_done"), ctx)
    assert unticked.effects == (WithdrawConsent(ConsentKind.NEWS_EMAIL, NOW),)
    assert unticked.state.actions == frozenset()


def test_desabonner_withdraws_the_news_consents(ctx: Context) -> None:
    state = step(completed(ctx), Command("start", f"c_{TOKEN}"), ctx).state
    state = run(
        state,
        ctx,
        Press("engage.actions_skip"),
        Press("news.news_email"),
        Press("news.news_sms"),
        Press("engage.news_done"),
    )
    outcome = step(state, Command("desabonner"), ctx)
    assert set(outcome.effects) == {
        WithdrawConsent(ConsentKind.NEWS_EMAIL, NOW),
        WithdrawConsent(ConsentKind.NEWS_SMS, NOW),
    }
    assert step(outcome.state, Command("start", "unsubscribe"), ctx).effects == ()


def test_questionnaire_and_referral_link_wait_for_confirmation(ctx: Context) -> None:
    state = completed(ctx)
    for command in ("engagement", "parrainer"):
        outcome = step(state, Command(command), ctx)
        assert outcome.state == state and "confirmée" in outcome.replies[0].text
    confirmed = run(state, ctx, Command("start", f"c_{TOKEN}"), Command("annuler"))
    link = step(confirmed, Command("invite"), ctx).replies[0].text
    assert "https://t.me/coffee_test_bot?start=r_REFcode1" in link


def test_an_address_can_refuse_all_further_invitations(ctx: Context) -> None:
    hashed = "0123456789abcdef0123456789abcdef"
    outcome = step(at(Step.WELCOME, ctx), Command("start", f"u_{hashed}"), ctx)
    assert outcome.effects == (SuppressAddress(hashed),)
    assert step(at(Step.WELCOME, ctx), Command("start", "u_not-a-hash"), ctx).effects == ()


def test_cancel_closes_the_questionnaire_and_keeps_choices(ctx: Context) -> None:
    state = step(completed(ctx), Command("start", f"c_{TOKEN}"), ctx).state
    state = run(state, ctx, Press("action.phone_calls"), Command("annuler"))
    assert state.step == Step.COMPLETE and state.actions == {Action.PHONE_CALLS}
