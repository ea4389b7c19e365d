"""The signup conversation as a transition table: `step(state, input, context) -> Outcome`.

`signup.mmd` beside this file draws the same table; keep them in step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from conversations.commands import choose_language, erase, on_command
from conversations.confirmation import complete, enter_code, looks_like_code
from conversations.engagement import answer_actions, answer_availability, answer_news
from conversations.model import (
    SIGNUP_CONSENTS,
    Answer,
    Command,
    Consent,
    Edited,
    Input,
    Outcome,
    Participant,
    Press,
    RecordConsent,
    Reply,
    SharedContact,
    Step,
    Text,
    Unsupported,
)
from conversations.phases import Phase
from conversations.policy import Context
from conversations.prompts import (
    CONSENT_TEXT,
    SUMMARY_FIELDS,
    friends_room,
    phase_text,
    profile_name,
    prompt,
    redraw,
    refuse,
    remind,
    say,
    travel_text,
    when,
)
from conversations.validators import (
    Refusal,
    check_email,
    check_name,
    check_phone,
    check_postcode,
    check_question,
    check_shared_phone,
    display_phone,
    is_role_or_campaign_address,
    same_address,
    suggest_address,
)

# What comes after each step when the person is not editing from the summary.
NEXT = {
    Step.WELCOME: Step.CONSENT,
    Step.CONSENT: Step.FIRST_NAME,
    Step.FIRST_NAME: Step.LAST_NAME,
    Step.LAST_NAME: Step.PHONE,
    Step.PHONE: Step.EMAIL,
    Step.EMAIL: Step.POSTCODE,
    Step.POSTCODE: Step.FRIENDS,
    Step.FRIENDS: Step.QUESTION,
    Step.QUESTION: Step.SUMMARY,
}


def step(state: Participant, event: Input, ctx: Context) -> Outcome:
    """Return the state after `event`, what to reply, and what else must happen."""
    if isinstance(event, Command):
        return on_command(state, event, ctx)
    if isinstance(event, Press) and event.key.startswith("lang."):
        return choose_language(state, event.key.removeprefix("lang."), ctx)
    if isinstance(event, Press) and event.key.startswith("erase."):
        return erase(state, event.key, ctx)
    if state.paused:
        return Outcome(state, (Reply(say(state, ctx, "paused.reminder")),))
    if isinstance(event, Unsupported):
        return remind(state, ctx, "remind.unsupported")
    if isinstance(event, Edited):
        return remind(state, ctx, "remind.edited")
    if isinstance(event, Text) and len(event.text) > ctx.limits.message_max_length:
        maximum = str(ctx.limits.message_max_length)
        return refuse(state, ctx, Refusal("refusal.too_long", {"max": maximum}))
    return TABLE[state.step](state, event, ctx)


def advance(state: Participant, ctx: Context, *acks: str, **changes: Any) -> Outcome:
    """Store an answer and ask the next question, or show the summary again when editing."""
    following = Step.SUMMARY if state.editing else NEXT[state.step]
    new = replace(state, step=following, editing=False, **changes)
    return Outcome(new, (*(Reply(ack) for ack in acks), prompt(new, ctx)))


def go_to(state: Participant, ctx: Context, step: Step, **changes: Any) -> Outcome:
    new = replace(state, step=step, **changes)
    return Outcome(new, (prompt(new, ctx),))


def _stale(state: Participant, ctx: Context) -> Outcome:
    return remind(state, ctx, "remind.stale_button")


def _welcome(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Starts the signup when the person taps 'take part' while entries are open."""
    if event == Press("welcome.join"):
        if ctx.phase != Phase.OPEN:
            return Outcome(state, (Reply(phase_text(state, ctx)),))
        erasures = ctx.usage.erasures
        if erasures.count >= ctx.limits.erasures_per_week and erasures.until is not None:
            # Erasure stays a right; signing up again at once, over and over, does not.
            until = when(state, ctx, erasures.until)
            return Outcome(state, (Reply(say(state, ctx, "signup.cooldown", date=until)),))
        return go_to(state, ctx, Step.CONSENT)
    return (
        _stale(state, ctx) if isinstance(event, Press) else remind(state, ctx, "remind.use_buttons")
    )


def _consent(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Ticks or unticks a consent, and goes on once all are given."""
    if not isinstance(event, Press):
        return remind(state, ctx, "remind.use_buttons")
    kinds = {f"consent.{kind}": kind for kind in SIGNUP_CONSENTS}
    if event.key in kinds:
        new = replace(state, consent_ticks=state.consent_ticks ^ {kinds[event.key]})
        return redraw(new, ctx)
    if event.key != "consent.continue":
        return _stale(state, ctx)
    # A tick saved before the consents were separated ("draw") is left aside, not required.
    if not set(SIGNUP_CONSENTS) <= state.consent_ticks:
        return refuse(state, ctx, Refusal("refusal.consent.required"))
    consents = tuple(
        Consent(kind, ctx.texts.version(state.language, f"{CONSENT_TEXT[kind]}.text"), ctx.now)
        for kind in SIGNUP_CONSENTS
    )
    outcome = advance(state, ctx, consents=consents, consent_ticks=frozenset())
    return replace(outcome, effects=tuple(RecordConsent(consent) for consent in consents))


def _name(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Stores the first or last name, typed or from the profile, and asks the next question."""
    if isinstance(event, Press):
        checked: str | Refusal | None = (
            profile_name(state, ctx) if event.key == "name.profile" else None
        )
        if checked is None:
            return _stale(state, ctx)
    elif isinstance(event, Text):
        checked = check_name(event.text, ctx.limits.name_max_length)
    else:
        return remind(state, ctx, "remind.use_text")
    if isinstance(checked, Refusal):
        return refuse(state, ctx, checked)
    return advance(state, ctx, **{str(state.step): checked})


def _phone(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Stores the phone number, shared or typed, in E.164 form and asks for the email."""
    if isinstance(event, SharedContact):
        if not event.is_own:
            return refuse(state, ctx, Refusal("refusal.phone.not_own"))
        checked = check_shared_phone(event.phone)
    elif isinstance(event, Text):
        checked = check_phone(event.text)
    else:
        return _stale(state, ctx)
    if isinstance(checked, Refusal):
        return refuse(state, ctx, checked)
    saved = say(state, ctx, "phone.saved", phone=display_phone(checked))
    # Only the platform vouches that a number is the sender's: a typed one proves nothing, so
    # it blocks nobody else and is never refused for being someone else's.
    verified = isinstance(event, SharedContact)
    return advance(state, ctx, saved, phone=checked, phone_verified=verified)


def _email(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Stores the email address, after offering a fix for a likely typo in its domain."""
    pending = state.pending_email
    if isinstance(event, Press):
        if pending is None or event.key not in ("email.fix", "email.keep"):
            return _stale(state, ctx)
        if event.key == "email.keep":
            return _accept_email(state, ctx, pending)
        return _accept_email(state, ctx, suggest_address(pending) or pending)
    if not isinstance(event, Text):
        return remind(state, ctx, "remind.use_text")
    checked = check_email(event.text, ctx.limits.check_deliverability)
    if isinstance(checked, Refusal):
        return refuse(state, ctx, checked)
    if checked.suggestion:
        return go_to(state, ctx, Step.EMAIL, pending_email=checked.address)
    return _accept_email(state, ctx, checked.address)


def _accept_email(state: Participant, ctx: Context, address: str) -> Outcome:
    providers = ctx.limits.address_tag_providers
    if any(same_address(address, friend, providers) for friend in state.friends):
        return refuse(replace(state, pending_email=None), ctx, Refusal("refusal.email.is_friend"))
    return advance(state, ctx, email=address, pending_email=None)


def _postcode(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Stores the postcode with its département and area class, and says what travel is paid."""
    if not isinstance(event, Text):
        return remind(state, ctx, "remind.use_text")
    checked = check_postcode(event.text)
    if isinstance(checked, Refusal):
        return refuse(state, ctx, checked)
    area = say(state, ctx, f"area.{checked.area}")
    saved = say(state, ctx, "postcode.saved", postcode=checked.code, area=area)
    travel = travel_text(state, ctx, checked.area)
    entry = state.entry
    if entry is not None and ctx.phase != Phase.OPEN and entry.area != checked.area:
        # The draw's entitlement was fixed when entries closed.
        kept = say(state, ctx, f"area.{entry.area}")
        travel = say(state, ctx, "postcode.entry_kept", area=kept)
        travel += "\n" + travel_text(state, ctx, entry.area)
    return advance(
        state,
        ctx,
        f"{saved}\n{travel}",
        postcode=checked.code,
        departement=checked.departement,
        area=checked.area,
    )


def _friends(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Adds a friend, clears the list, or goes on to the question."""
    if isinstance(event, Text) and "@" in event.text:
        return _add_friend(state, event, ctx)
    if not isinstance(event, Press):
        return remind(state, ctx, "remind.use_buttons")
    if event.key == "friends.add":
        if len(state.friends) >= friends_room(state, ctx):
            return refuse(state, ctx, _friends_full(state, ctx))
        return go_to(state, ctx, Step.FRIEND_EMAIL)
    if event.key == "friends.clear":
        new = replace(state, friends=())
        return redraw(new, ctx)
    if event.key == "friends.done":
        return advance(state, ctx)
    return _stale(state, ctx)


def _friend_email(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Stores one friend's email address and shows the list of friends again."""
    if event == Press("friend_email.back"):
        return go_to(state, ctx, Step.FRIENDS)
    if isinstance(event, Press):
        return _stale(state, ctx)
    if not isinstance(event, Text):
        return remind(state, ctx, "remind.use_text")
    return _add_friend(state, event, ctx)


def _add_friend(state: Participant, event: Text, ctx: Context) -> Outcome:
    checked = check_email(event.text, ctx.limits.check_deliverability)
    if isinstance(checked, Refusal):
        return refuse(state, ctx, checked)
    address = checked.address
    providers = ctx.limits.address_tag_providers
    if state.email and same_address(address, state.email, providers):
        return refuse(state, ctx, Refusal("refusal.friend.own"))
    if any(same_address(address, friend, providers) for friend in state.friends):
        return refuse(state, ctx, Refusal("refusal.friend.duplicate"))
    if is_role_or_campaign_address(address, ctx.limits.campaign_addresses, providers):
        return refuse(state, ctx, Refusal("refusal.friend.role"))
    if len(state.friends) >= friends_room(state, ctx):
        return refuse(state, ctx, _friends_full(state, ctx))
    return go_to(state, ctx, Step.FRIENDS, friends=(*state.friends, address))


def _friends_full(state: Participant, ctx: Context) -> Refusal:
    key = "refusal.friend.all_invited" if state.friends_invited else "refusal.friend.full"
    return Refusal(key, {"max": str(ctx.limits.max_friends)})


def _question(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Stores the question for the candidate, or none, and shows the summary."""
    if event == Press("question.skip"):
        return advance(state, ctx, question=None)
    if isinstance(event, Press):
        return _stale(state, ctx)
    if not isinstance(event, Text):
        return remind(state, ctx, "remind.use_text")
    checked = check_question(event.text, ctx.limits.question_max_length)
    if isinstance(checked, Refusal):
        return refuse(state, ctx, checked)
    return advance(state, ctx, question=checked)


_EDITS = {f"edit.{name}": step for name, step in SUMMARY_FIELDS}


def _summary(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Reopens one answer for a change, or records the signup as complete."""
    if not isinstance(event, Press):
        return remind(state, ctx, "remind.use_buttons")
    if event.key in _EDITS:
        return go_to(state, ctx, _EDITS[event.key], editing=True)
    if event.key != "summary.confirm":
        return _stale(state, ctx)
    return complete(state, ctx)


def _complete(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Takes a confirmation code, and answers anything else with the signup's status."""
    if isinstance(event, Press):
        return _stale(state, ctx)
    if isinstance(event, Text) and looks_like_code(event.text):
        return enter_code(state, event.text, ctx)
    return Outcome(state, (prompt(state, ctx),))


TABLE: dict[Step, Callable[[Participant, Answer, Context], Outcome]] = {
    Step.WELCOME: _welcome,
    Step.CONSENT: _consent,
    Step.FIRST_NAME: _name,
    Step.LAST_NAME: _name,
    Step.PHONE: _phone,
    Step.EMAIL: _email,
    Step.POSTCODE: _postcode,
    Step.FRIENDS: _friends,
    Step.FRIEND_EMAIL: _friend_email,
    Step.QUESTION: _question,
    Step.SUMMARY: _summary,
    Step.COMPLETE: _complete,
    Step.ENGAGE_ACTIONS: answer_actions,
    Step.ENGAGE_AVAILABILITY: answer_availability,
    Step.ENGAGE_NEWS: answer_news,
}
