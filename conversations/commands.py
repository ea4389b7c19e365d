"""Commands that work at any step: /start, /annuler, /aide, /langue, the person's rights…"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from conversations.catalogue import Catalogue
from conversations.confirmation import open_link, resend
from conversations.draw import why_ineligible
from conversations.engagement import start_questionnaire, unsubscribe
from conversations.model import (
    Area,
    Button,
    Command,
    CountUse,
    ErasePersonalData,
    Outcome,
    Participant,
    Profile,
    Quota,
    Reply,
    SendPersonalData,
    Step,
    SuppressAddress,
)
from conversations.phases import Phase
from conversations.policy import Context
from conversations.prompts import (
    AFTER_COMPLETION,
    calendar_text,
    phase_text,
    prompt,
    remind,
    say,
    status_text,
    travel_text,
)
from conversations.quotas import account_subject

# Telegram deep-link payloads are at most 64 characters of this alphabet.
_REFERRAL = re.compile(r"r_([A-Za-z0-9_-]{1,62})")
_SUPPRESS = re.compile(r"u_([0-9a-f]{32})")


def new_participant(user_id: int, profile: Profile, now: datetime, texts: Catalogue) -> Participant:
    return Participant(user_id, texts.language_for(profile.language_code), created_at=now)


def _reply(state: Participant, text: str) -> Outcome:
    return Outcome(state, (Reply(text),))


def start(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Shows the operation to a newcomer, resumes a signup in progress, or shows the status."""
    new = replace(state, paused=False)
    referral = _REFERRAL.fullmatch(argument)
    if referral and state.referrer is None and state.step != Step.COMPLETE:
        new = replace(new, referrer=referral[1])
    if argument.startswith("c_"):
        return open_link(new, argument.removeprefix("c_"), ctx)
    if argument == "unsubscribe":
        return unsubscribe(new, ctx)
    suppressed = _SUPPRESS.fullmatch(argument)
    if suppressed:
        reply = Reply(say(state, ctx, "unsubscribe.address"))
        return Outcome(new, (reply,), (SuppressAddress(suppressed[1]),))
    notes: tuple[Reply, ...] = ()
    if state.step in (Step.WELCOME, Step.COMPLETE):
        return Outcome(new, (*notes, prompt(new, ctx)))
    if state.entry is None and ctx.phase != Phase.OPEN:
        # Told before going on: finishing now gives no ticket.
        notes = (Reply(f"{say(state, ctx, 'summary.no_ticket')}\n{phase_text(state, ctx)}"),)
    resumed = remind(new, ctx, "start.resume")
    return replace(resumed, replies=(*notes, *resumed.replies))


def cancel(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Pauses a signup in progress, or closes the questionnaire, and says how to come back."""
    if state.step in (Step.ENGAGE_ACTIONS, Step.ENGAGE_AVAILABILITY, Step.ENGAGE_NEWS):
        new = replace(state, step=Step.COMPLETE, consent_ticks=frozenset())
        return _reply(new, say(state, ctx, "engage.cancelled"))
    if state.step in (Step.WELCOME, Step.COMPLETE):
        return _reply(state, say(state, ctx, "cancel.nothing"))
    return _reply(replace(state, paused=True), say(state, ctx, "cancel.done"))


def help_(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Lists the commands."""
    return _reply(state, say(state, ctx, "help"))


def language(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Offers the languages the catalogue has."""
    buttons = tuple(
        Button(ctx.texts.render(code, "language.name"), f"lang.{code}")
        for code in ctx.texts.languages
    )
    return Outcome(state, (Reply(say(state, ctx, "language.choose"), (buttons,)),))


def choose_language(state: Participant, code: str, ctx: Context) -> Outcome:
    """Switches the conversation's language and asks the current question again in it."""
    if code not in ctx.texts.languages:
        return remind(state, ctx, "remind.stale_button")
    new = replace(state, language=code)
    replies = [Reply(say(new, ctx, "language.set"), replaces_pressed=True)]
    if not new.paused:
        replies.append(prompt(new, ctx))
    return Outcome(new, tuple(replies))


def rules(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Shows the operation's rules, with what each area class gets for travel."""
    travel = {f"travel_{area}": travel_text(state, ctx, area) for area in Area}
    dates = calendar_text(state, ctx) or say(state, ctx, "calendar.none")
    return _reply(state, say(state, ctx, "rules", dates=dates, **travel))


def privacy(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Shows the privacy notice."""
    return _reply(state, say(state, ctx, "privacy"))


def my_data(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Sends everything stored about the person."""
    return Outcome(state, (Reply(say(state, ctx, "mydata.sending")),), (SendPersonalData(),))


def delete(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Asks the person to confirm that all their data is to be erased."""
    buttons = (
        (Button(say(state, ctx, "button.delete_confirm"), "erase.confirm"),),
        (Button(say(state, ctx, "button.delete_keep"), "erase.keep"),),
    )
    return Outcome(state, (Reply(say(state, ctx, "delete.confirm"), buttons),))


def erase(state: Participant, key: str, ctx: Context) -> Outcome:
    """Erases the person's data once confirmed; keeps it otherwise."""
    if key == "erase.keep":
        return Outcome(state, (Reply(say(state, ctx, "delete.kept"), replaces_pressed=True),))
    if key != "erase.confirm":
        return remind(state, ctx, "remind.stale_button")
    fresh = Participant(state.user_id, state.language, created_at=ctx.now)
    done = Reply(say(state, ctx, "delete.done"), replaces_pressed=True)
    if state.completed_at is None:
        return Outcome(fresh, (done,), (ErasePersonalData(),))
    # A completed signup sent emails: erasing it and signing up again is counted, by a keyed
    # hash of the account only, so that the loop cannot go on (conversations/quotas.py).
    counted = CountUse(Quota.ERASURES, account_subject(state.user_id))
    return Outcome(fresh, (done,), (ErasePersonalData(), counted))


def edit(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Reopens the summary so that any answer can be changed."""
    if ctx.phase == Phase.FINISHED:
        return _reply(state, phase_text(state, ctx))
    if state.step != Step.SUMMARY and state.step not in AFTER_COMPLETION:
        return _reply(state, say(state, ctx, "edit.unavailable"))
    new = replace(state, step=Step.SUMMARY, paused=False, consent_ticks=frozenset())
    return Outcome(new, (prompt(new, ctx),))


def resend_confirmation(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Sends the confirmation email again."""
    return resend(state, ctx)


def engagement(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Reopens the engagement questionnaire."""
    return start_questionnaire(state, ctx)


def stop_news(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Withdraws the consents to receive news."""
    return unsubscribe(state, ctx)


def referral_link(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Gives the person's own link to invite friends."""
    if not state.is_confirmed or state.referral_code is None:
        return _reply(state, say(state, ctx, "referral.confirm_first"))
    link = f"https://t.me/{ctx.bot_username}?start=r_{state.referral_code}"
    return _reply(state, say(state, ctx, "referral.link", link=link))


def my_ticket(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Shows the person's ticket, whether it is in the draw and why not, and how it fared."""
    place, ticket = state.draw_place, state.ticket or ""
    excluded = state.entry is not None and state.entry.excluded_reason is not None
    if ctx.operation.drawn and ticket and not excluded:
        if place is None:
            return _reply(state, say(state, ctx, "ticket.not_drawn", ticket=ticket))
        status = say(state, ctx, f"place.{place.status}")
        if place.role == "winner":
            return _reply(state, say(state, ctx, "ticket.winner", ticket=ticket, status=status))
        rank = str(place.rank)
        return _reply(
            state, say(state, ctx, "ticket.reserve", ticket=ticket, rank=rank, status=status)
        )
    reason = why_ineligible(state)
    if reason:
        text = say(state, ctx, "ticket.ineligible", reason=say(state, ctx, reason))
    else:
        text = say(state, ctx, "ticket.eligible", ticket=ticket)
    dates = calendar_text(state, ctx)
    return _reply(state, f"{text}\n\n{dates}" if dates else text)


def status(state: Participant, argument: str, ctx: Context) -> Outcome:
    """Shows where the person's signup stands."""
    return _reply(state, status_text(state, ctx))


COMMANDS: dict[str, Callable[[Participant, str, Context], Outcome]] = {
    "start": start,
    "annuler": cancel,
    "cancel": cancel,
    "aide": help_,
    "help": help_,
    "langue": language,
    "language": language,
    "reglement": rules,
    "rules": rules,
    "confidentialite": privacy,
    "privacy": privacy,
    "mesdonnees": my_data,
    "mydata": my_data,
    "supprimer": delete,
    "delete": delete,
    "modifier": edit,
    "edit": edit,
    "statut": status,
    "status": status,
    "renvoyer": resend_confirmation,
    "resend": resend_confirmation,
    "engagement": engagement,
    "desabonner": stop_news,
    "unsubscribe": stop_news,
    "parrainer": referral_link,
    "invite": referral_link,
    "monticket": my_ticket,
    "myticket": my_ticket,
}


def on_command(state: Participant, command: Command, ctx: Context) -> Outcome:
    handler = COMMANDS.get(command.name.lower())
    if handler is None:
        return _reply(state, say(state, ctx, "command.unknown"))
    return handler(state, command.argument, ctx)
