"""Entries that editing cannot change: each seam a user or an attacker tried, as a regression."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from conversations.draw import why_ineligible
from conversations.model import (
    Area,
    Command,
    InviteFriends,
    Participant,
    Press,
    QueueEmail,
    Step,
    Text,
)
from conversations.phases import OperationState
from conversations.policy import Context, Secrets
from conversations.signup import step
from tests.conftest import SECRETS
from tests.test_confirmation import completed, later
from tests.test_signup import run

A_TOKEN, A_CODE = SECRETS.token, SECRETS.code
B_SECRETS = Secrets(token="B-token-for-the-tests-1", code="654321", referral_code="x", ticket="y")


def with_b_secrets(ctx: Context) -> Context:
    return replace(ctx, secrets=B_SECRETS)


def change_email(state: Participant, ctx: Context, address: str) -> Participant:
    return run(state, ctx, Command("modifier"), Press("edit.email"), Text(address))


def emails(outcome_effects: tuple[object, ...]) -> list[QueueEmail]:
    return [effect for effect in outcome_effects if isinstance(effect, QueueEmail)]


def test_a_link_confirms_the_address_it_was_sent_to_not_the_one_typed_since(
    ctx: Context,
) -> None:
    # Sign up with A (the email goes to A), then change to B on the summary and open A's link.
    sent_to_a = completed(ctx)
    assert sent_to_a.confirmation is not None and sent_to_a.confirmation.address == "zoe@orange.fr"
    on_summary = change_email(sent_to_a, ctx, "lea@free.fr")
    assert on_summary.step == Step.SUMMARY and on_summary.email == "lea@free.fr"
    outcome = step(on_summary, Command("start", f"c_{A_TOKEN}"), ctx)
    entry = outcome.state.entry
    assert entry is not None and entry.email == "zoe@orange.fr"
    assert outcome.state.email_change_pending
    # The edit goes on: the person is still on the summary, with B waiting for its own email.
    assert outcome.state.step == Step.SUMMARY
    confirmed = step(outcome.state, Press("summary.confirm"), with_b_secrets(ctx))
    [to_b] = emails(confirmed.effects)
    assert to_b.recipient == "lea@free.fr"
    assert confirmed.state.entry == entry  # B proves nothing yet
    status = step(confirmed.state, Command("statut"), ctx).replies[0].text
    assert "lea@free.fr" in status and "attente de confirmation" in status
    # B's own link moves the entry to B.
    moved = step(confirmed.state, Command("start", f"c_{B_SECRETS.token}"), ctx).state
    assert moved.entry is not None and moved.entry.email == "lea@free.fr"
    assert moved.entry.ticket == entry.ticket and not moved.email_change_pending


def test_a_code_typed_on_the_summary_is_an_answer_and_an_old_code_dies_with_its_email(
    ctx: Context,
) -> None:
    on_summary = change_email(completed(ctx), ctx, "lea@free.fr")
    typed = step(on_summary, Text(A_CODE), ctx)
    assert typed.state == on_summary and typed.effects == ()
    assert typed.state.entry is None
    # Confirming the summary sends B a new code: A's code stops working.
    to_b = step(on_summary, Press("summary.confirm"), with_b_secrets(ctx)).state
    wrong = step(to_b, Text(A_CODE), ctx)
    assert wrong.state.entry is None and "ne correspond pas" in wrong.replies[0].text
    right = step(to_b, Text(B_SECRETS.code), ctx).state
    assert right.entry is not None and right.entry.email == "lea@free.fr"


def test_looking_at_the_summary_never_takes_a_confirmed_person_out_of_the_draw(
    ctx: Context,
) -> None:
    confirmed = run(completed(ctx), ctx, Command("start", f"c_{A_TOKEN}"), Command("annuler"))
    looked = run(confirmed, ctx, Command("modifier"), Command("annuler"))
    assert looked.step == Step.SUMMARY and why_ineligible(looked) is None
    ticket = step(looked, Command("monticket"), ctx).replies[0].text
    assert "Vous participez au tirage" in ticket
    status = step(looked, Command("statut"), ctx).replies[0].text
    assert status.startswith("✅ Vous participez au tirage")


def test_confirming_the_summary_again_sends_no_new_email_to_the_same_address(
    ctx: Context,
) -> None:
    state = completed(ctx)
    sent = 1
    for _ in range(7):
        outcome = step(state, Command("modifier"), ctx)
        outcome = step(outcome.state, Press("summary.confirm"), ctx)
        sent += len(emails(outcome.effects))
        state = outcome.state
    assert sent == 1
    assert "déjà parti" in outcome.replies[-1].text


def test_new_addresses_are_limited_per_hour_and_the_code_count_is_never_reset(
    ctx: Context,
) -> None:
    state = completed(ctx)
    state = run(state, ctx, Text("000000"), Text("000001"))
    failures = state.code_failures
    sent = 1
    for n in range(7):
        state = change_email(state, ctx, f"new{n}@free.fr")
        outcome = step(state, Press("summary.confirm"), ctx)
        sent += len(emails(outcome.effects))
        state = outcome.state
        assert state.code_failures == failures
    assert sent == ctx.limits.confirmation_sends_per_hour
    assert "Plusieurs e-mails" in outcome.replies[-1].text
    # An hour later, sending works again.
    resent = step(state, Command("renvoyer"), later(ctx, hours=1, minutes=1))
    assert len(emails(resent.effects)) == 1


def test_no_more_than_max_friends_people_are_ever_invited(ctx: Context) -> None:
    state = step(completed(ctx), Command("start", f"c_{A_TOKEN}"), ctx).state
    invited = 1  # the friend given during the signup
    assert state.friends_invited == 1
    for round_ in range(3):
        state = run(state, ctx, Command("modifier"), Press("edit.friends"))
        for n in range(3):
            state = run(state, ctx, Press("friends.add"), Text(f"f{round_}{n}@free.fr"))
        state = run(state, ctx, Press("friends.done"))
        outcome = step(state, Press("summary.confirm"), ctx)
        for effect in outcome.effects:
            if isinstance(effect, InviteFriends):
                invited += len(effect.addresses)
        state = outcome.state
    assert invited == ctx.limits.max_friends == state.friends_invited
    prompt = run(state, ctx, Command("modifier"), Press("edit.friends"))
    refused = step(prompt, Press("friends.add"), ctx)
    assert refused.state == prompt and "c’est le maximum" in refused.replies[0].text
    typed = step(prompt, Text("encore@free.fr"), ctx)
    assert typed.state == prompt and "c’est le maximum" in typed.replies[0].text


def test_after_closing_a_postcode_change_keeps_the_entrys_area(ctx: Context) -> None:
    paris = run(completed(ctx), ctx, Command("start", f"c_{A_TOKEN}"), Command("annuler"))
    paris = replace(
        paris,
        entry=replace(paris.entry, postcode="75011", departement="75", area=Area.PARIS),  # type: ignore[type-var]
    )
    drawn = replace(ctx, operation=OperationState(closed_at=ctx.now, drawn=True))
    moved = run(paris, drawn, Command("modifier"), Press("edit.postcode"))
    outcome = step(moved, Text("13001"), drawn)
    assert outcome.state.postcode == "13001" and outcome.state.area == Area.PROVINCE
    assert "garde la zone Paris" in outcome.replies[0].text
    assert "Aller-retour en train" not in outcome.replies[0].text
    saved = step(outcome.state, Press("summary.confirm"), drawn).state
    assert saved.entry is not None and saved.entry.area == Area.PARIS
    assert "Pas de prise en charge" in step(saved, Command("statut"), drawn).replies[0].text
    # While entries are open, the entry follows the move.
    opened = step(step(moved, Text("13001"), ctx).state, Press("summary.confirm"), ctx).state
    assert opened.entry is not None and opened.entry.area == Area.PROVINCE


def test_after_closing_a_newcomer_is_told_before_starting_and_cannot_join(ctx: Context) -> None:
    closes_at = ctx.now - timedelta(hours=1)
    closed = replace(ctx, calendar=replace(ctx.calendar, closes_at=closes_at))
    newcomer = Participant(7, "fr", created_at=ctx.now)
    welcome = step(newcomer, Command("start"), closed)
    [reply] = welcome.replies
    assert "closes depuis le jeudi 26 novembre 2026 à 10 h, heure de Paris" in reply.text
    assert reply.buttons == ()
    pressed = step(welcome.state, Press("welcome.join"), closed)
    assert pressed.state == welcome.state and "closes" in pressed.replies[0].text
    # The rights commands still work.
    assert "Règlement" in step(newcomer, Command("reglement"), closed).replies[0].text


def test_a_signup_in_progress_at_closing_is_warned_and_gets_no_ticket(ctx: Context) -> None:
    on_summary = run(completed(ctx), ctx)  # completed while open, confirmation on its way
    closed = replace(ctx, operation=OperationState(closed_at=ctx.now - timedelta(minutes=1)))
    resumed = step(replace(on_summary, step=Step.QUESTION), Command("start"), closed)
    assert "sans ticket" in resumed.replies[0].text
    confirmed = step(on_summary, Command("start", f"c_{A_TOKEN}"), closed).state
    assert confirmed.entry is not None and confirmed.entry.ticket is None
    assert why_ineligible(confirmed) == "ticket.after_closing"
    assert "après la clôture" in step(confirmed, Command("monticket"), closed).replies[0].text


def test_before_opening_the_welcome_gives_the_date_and_join_changes_nothing(
    ctx: Context,
) -> None:
    opens_at = ctx.now + timedelta(days=3, hours=1, minutes=30)
    early = replace(ctx, calendar=replace(ctx.calendar, opens_at=opens_at))
    newcomer = Participant(7, "fr", created_at=ctx.now)
    [reply] = step(newcomer, Command("start"), early).replies
    assert "ouvrent le dimanche 29 novembre 2026 à 12 h 30, heure de Paris" in reply.text
    pressed = step(newcomer, Press("welcome.join"), early)
    assert pressed.state == newcomer and "pas encore ouvertes" in pressed.replies[0].text


def test_once_the_operation_is_over_answers_can_no_longer_be_changed(ctx: Context) -> None:
    confirmed = step(completed(ctx), Command("start", f"c_{A_TOKEN}"), ctx).state
    over = replace(ctx, calendar=replace(ctx.calendar, ends_at=ctx.now))
    refused = step(confirmed, Command("modifier"), over)
    assert refused.state == confirmed and "terminée" in refused.replies[0].text


def test_the_draw_result_is_read_from_the_operation_not_the_person(ctx: Context) -> None:
    confirmed = step(completed(ctx), Command("start", f"c_{A_TOKEN}"), ctx).state
    drawn = replace(ctx, operation=OperationState(closed_at=ctx.now, drawn=True))
    text = step(confirmed, Command("monticket"), drawn).replies[0].text
    assert "n’a pas été tiré" in text
