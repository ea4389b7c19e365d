"""What the bot says at each step: the question, its buttons, the summary and the status."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import replace
from datetime import datetime

from conversations.dates import long_datetime
from conversations.model import (
    NEWS_CONSENTS,
    Action,
    Area,
    Availability,
    Button,
    ConsentKind,
    Outcome,
    Participant,
    Reply,
    Step,
    Travel,
)
from conversations.phases import Phase, entries_closed_at
from conversations.policy import Context
from conversations.validators import Refusal, check_name, display_phone, suggest_address

NUMBERED_STEPS = {
    Step.CONSENT: 1,
    Step.FIRST_NAME: 2,
    Step.LAST_NAME: 3,
    Step.PHONE: 4,
    Step.EMAIL: 5,
    Step.POSTCODE: 6,
    Step.FRIENDS: 7,
    Step.FRIEND_EMAIL: 7,
    Step.QUESTION: 8,
}
TOTAL_STEPS = max(NUMBERED_STEPS.values())

# The signup's consents, in the order they are shown: each is its own tick, so that accepting
# the rules does not stand for consenting to the processing of sensitive data.
CONSENT_TEXT = {
    ConsentKind.RULES: "consent.rules",
    ConsentKind.PROCESSING: "consent.processing",
    ConsentKind.ADULT: "consent.adult",
}


def say(state: Participant, ctx: Context, key: str, **params: str) -> str:
    return ctx.texts.render(state.language, key, **params)


def _numbered(state: Participant, ctx: Context, key: str, **params: str) -> str:
    number = str(NUMBERED_STEPS[state.step])
    head = say(state, ctx, "progress", number=number, total=str(TOTAL_STEPS))
    return f"{head}\n{say(state, ctx, key, **params)}"


def when(state: Participant, ctx: Context, moment: datetime) -> str:
    return long_datetime(ctx.texts, state.language, moment, ctx.zone)


def calendar_text(state: Participant, ctx: Context) -> str:
    """The operation's dates that are set, one a line."""
    calendar = ctx.calendar
    closes = entries_closed_at(calendar, ctx.operation)
    dated = (
        ("calendar.opens", calendar.opens_at),
        ("calendar.closes", closes),
        ("calendar.draw", calendar.draw_announced_at),
    )
    return "\n".join(
        say(state, ctx, key, date=when(state, ctx, moment)) for key, moment in dated if moment
    )


def phase_text(state: Participant, ctx: Context) -> str:
    """What the operation's phase means for the person, with its date when there is one."""
    phase = ctx.phase
    if phase == Phase.NOT_OPEN and ctx.calendar.opens_at:
        return say(state, ctx, "phase.not_open", date=when(state, ctx, ctx.calendar.opens_at))
    closes = entries_closed_at(ctx.calendar, ctx.operation)
    if phase in (Phase.CLOSED, Phase.DRAWN) and closes:
        return say(state, ctx, f"phase.{phase}", date=when(state, ctx, closes))
    return say(state, ctx, f"phase.undated.{phase}")


def _welcome(state: Participant, ctx: Context) -> Reply:
    text = say(state, ctx, "welcome")
    dates = calendar_text(state, ctx)
    if dates:
        text += f"\n\n{dates}"
    if ctx.phase != Phase.OPEN:
        return Reply(f"{text}\n\n{phase_text(state, ctx)}")
    return Reply(text, ((Button(say(state, ctx, "button.join"), "welcome.join"),),))


def _tick_boxes(
    state: Participant,
    ctx: Context,
    choices: Iterable[str],
    ticked: Collection[str],
    label: str,
    key: str,
) -> list[tuple[Button, ...]]:
    """One button a row, ☑ or ☐ before its label: `label` and `key` are formats of `{choice}`."""
    rows: list[tuple[Button, ...]] = []
    for choice in choices:
        box = "☑" if choice in ticked else "☐"
        text = say(state, ctx, label.format(choice=choice))
        rows.append((Button(f"{box} {text}", key.format(choice=choice)),))
    return rows


def _consent(state: Participant, ctx: Context) -> Reply:
    rows = _tick_boxes(
        state, ctx, CONSENT_TEXT, state.consent_ticks, "consent.{choice}.button", "consent.{choice}"
    )
    rows.append((Button(say(state, ctx, "button.continue"), "consent.continue"),))
    body = "\n\n".join(say(state, ctx, f"{key}.text") for key in CONSENT_TEXT.values())
    return Reply(f"{_numbered(state, ctx, 'consent.intro')}\n\n{body}", tuple(rows))


def profile_name(state: Participant, ctx: Context) -> str | None:
    """Return the platform's name for the person when it passes the same checks as typed ones."""
    raw = ctx.profile.first_name if state.step == Step.FIRST_NAME else ctx.profile.last_name
    if raw is None:
        return None
    checked = check_name(raw, ctx.limits.name_max_length)
    return None if isinstance(checked, Refusal) else checked


def _name(state: Participant, ctx: Context) -> Reply:
    offered = profile_name(state, ctx)
    buttons = ((Button(offered, "name.profile"),),) if offered else ()
    return Reply(_numbered(state, ctx, f"{state.step}.prompt"), buttons)


def _phone(state: Participant, ctx: Context) -> Reply:
    return Reply(
        _numbered(state, ctx, "phone.prompt"),
        contact_button=say(state, ctx, "button.share_phone"),
    )


def _email(state: Participant, ctx: Context) -> Reply:
    if state.pending_email is None:
        return Reply(_numbered(state, ctx, "email.prompt"))
    typed = state.pending_email
    suggestion = suggest_address(typed) or typed
    return Reply(
        say(state, ctx, "email.suggest", typed=typed, suggestion=suggestion),
        (
            (Button(say(state, ctx, "button.email_fix", suggestion=suggestion), "email.fix"),),
            (Button(say(state, ctx, "button.email_keep", typed=typed), "email.keep"),),
        ),
    )


def _postcode(state: Participant, ctx: Context) -> Reply:
    return Reply(_numbered(state, ctx, "postcode.prompt"))


def friends_room(state: Participant, ctx: Context) -> int:
    """How many friends the person may still list: MAX_FRIENDS in all, invitations included."""
    return max(ctx.limits.max_friends - state.friends_invited, 0)


def _friends(state: Participant, ctx: Context) -> Reply:
    maximum = str(ctx.limits.max_friends)
    text = _numbered(state, ctx, "friends.prompt", max=maximum)
    if state.friends_invited:
        room = str(friends_room(state, ctx))
        invited = str(state.friends_invited)
        text += "\n" + say(state, ctx, "friends.already_invited", count=invited, left=room)
    if state.friends:
        listed = "\n".join(f"• {friend}" for friend in state.friends)
        text += f"\n\n{say(state, ctx, 'friends.listed')}\n{listed}"
    rows = []
    if len(state.friends) < friends_room(state, ctx):
        rows.append((Button(say(state, ctx, "button.friend_add"), "friends.add"),))
    if state.friends:
        rows.append((Button(say(state, ctx, "button.friends_clear"), "friends.clear"),))
    done = "button.friends_done" if state.friends else "button.skip"
    rows.append((Button(say(state, ctx, done), "friends.done"),))
    return Reply(text, tuple(rows))


def _friend_email(state: Participant, ctx: Context) -> Reply:
    return Reply(
        _numbered(state, ctx, "friend_email.prompt"),
        ((Button(say(state, ctx, "button.back"), "friend_email.back"),),),
    )


def _question(state: Participant, ctx: Context) -> Reply:
    maximum = str(ctx.limits.question_max_length)
    return Reply(
        _numbered(state, ctx, "question.prompt", max=maximum),
        ((Button(say(state, ctx, "button.no_question"), "question.skip"),),),
    )


SUMMARY_FIELDS = (
    ("first_name", Step.FIRST_NAME),
    ("last_name", Step.LAST_NAME),
    ("phone", Step.PHONE),
    ("email", Step.EMAIL),
    ("postcode", Step.POSTCODE),
    ("friends", Step.FRIENDS),
    ("question", Step.QUESTION),
)


def travel_text(state: Participant, ctx: Context, area: Area | None) -> str:
    if area is None:
        return ""
    return say(state, ctx, f"travel.{ctx.travel.get(area, Travel.NONE)}")


def summary_text(state: Participant, ctx: Context) -> str:
    none = say(state, ctx, "summary.none")
    return say(
        state,
        ctx,
        "summary.body",
        first_name=state.first_name or none,
        last_name=state.last_name or none,
        phone=display_phone(state.phone) if state.phone else none,
        email=state.email or none,
        postcode=state.postcode or none,
        departement=state.departement or none,
        area=say(state, ctx, f"area.{state.area}") if state.area else none,
        travel=travel_text(state, ctx, state.area),
        friends=", ".join(state.friends) or none,
        question=state.question or none,
    )


def _summary(state: Participant, ctx: Context) -> Reply:
    edits = [
        Button(say(state, ctx, f"button.edit.{name}"), f"edit.{name}") for name, _ in SUMMARY_FIELDS
    ]
    rows = [tuple(edits[i : i + 2]) for i in range(0, len(edits), 2)]
    rows.append((Button(say(state, ctx, "button.confirm"), "summary.confirm"),))
    text = f"{say(state, ctx, 'summary.title')}\n\n{summary_text(state, ctx)}"
    if state.entry is None and ctx.phase != Phase.OPEN:
        text += f"\n\n{say(state, ctx, 'summary.no_ticket')}\n{phase_text(state, ctx)}"
    elif state.entry is not None:
        text += "\n\n" + say(state, ctx, "summary.entry_kept")
    return Reply(text, tuple(rows))


AFTER_COMPLETION = (Step.COMPLETE, Step.ENGAGE_ACTIONS, Step.ENGAGE_AVAILABILITY, Step.ENGAGE_NEWS)


def status_text(state: Participant, ctx: Context) -> str:
    entry = state.entry
    if entry is not None:
        frozen = state.draw_place.travel if state.draw_place else None
        travel = (
            say(state, ctx, f"travel.{frozen}") if frozen else travel_text(state, ctx, entry.area)
        )
        key = "status.entered" if entry.ticket else "status.entered_after_closing"
        text = say(state, ctx, key, travel=travel, email=entry.email)
        if state.email_change_pending:
            text += "\n" + say(state, ctx, "status.email_change", email=state.email or "")
        if state.step not in AFTER_COMPLETION:
            text += "\n" + say(state, ctx, "status.editing")
        if state.referrals_confirmed:
            count = str(state.referrals_confirmed)
            text += "\n" + say(state, ctx, "status.referrals", count=count)
    elif state.step in AFTER_COMPLETION:
        travel = travel_text(state, ctx, state.area)
        text = say(state, ctx, "status.complete", travel=travel, email=state.email or "")
    elif state.step == Step.SUMMARY:
        text = say(state, ctx, "status.summary")
    elif state.step == Step.WELCOME:
        text = say(state, ctx, "status.not_started")
    else:
        number = str(NUMBERED_STEPS[state.step])
        text = say(state, ctx, "status.in_progress", number=number, total=str(TOTAL_STEPS))
    if state.paused:
        text += "\n" + say(state, ctx, "status.paused")
    dates = calendar_text(state, ctx)
    if ctx.phase != Phase.OPEN:
        dates = "\n".join(part for part in (phase_text(state, ctx), dates) if part)
    return f"{text}\n\n{dates}" if dates else text


def _complete(state: Participant, ctx: Context) -> Reply:
    return Reply(status_text(state, ctx))


def actions_prompt(state: Participant, ctx: Context) -> Reply:
    rows = _tick_boxes(
        state, ctx, Action, state.actions, "engage.action.{choice}", "action.{choice}"
    )
    rows.append((Button(say(state, ctx, "button.validate"), "engage.actions_done"),))
    rows.append((Button(say(state, ctx, "button.not_now"), "engage.actions_skip"),))
    return Reply(say(state, ctx, "engage.actions"), tuple(rows))


def availability_prompt(state: Participant, ctx: Context) -> Reply:
    rows = _tick_boxes(
        state, ctx, Availability, state.availability, "engage.when.{choice}", "when.{choice}"
    )
    rows.append((Button(say(state, ctx, "button.validate"), "engage.availability_done"),))
    rows.append((Button(say(state, ctx, "button.skip"), "engage.availability_skip"),))
    return Reply(say(state, ctx, "engage.availability"), tuple(rows))


def news_prompt(state: Participant, ctx: Context) -> Reply:
    rows = _tick_boxes(
        state, ctx, NEWS_CONSENTS, state.consent_ticks, "consent.{choice}.button", "news.{choice}"
    )
    rows.append((Button(say(state, ctx, "button.validate"), "engage.news_done"),))
    body = "\n\n".join(say(state, ctx, f"consent.{kind}.text") for kind in NEWS_CONSENTS)
    return Reply(f"{say(state, ctx, 'engage.news')}\n\n{body}", tuple(rows))


PROMPTS: dict[Step, Callable[[Participant, Context], Reply]] = {
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
    Step.ENGAGE_ACTIONS: actions_prompt,
    Step.ENGAGE_AVAILABILITY: availability_prompt,
    Step.ENGAGE_NEWS: news_prompt,
}


def prompt(state: Participant, ctx: Context) -> Reply:
    return PROMPTS[state.step](state, ctx)


def redraw(state: Participant, ctx: Context) -> Outcome:
    """Show the step's question again in place of the message whose button was pressed."""
    return Outcome(state, (replace(prompt(state, ctx), replaces_pressed=True),))


def refuse(state: Participant, ctx: Context, refusal: Refusal) -> Outcome:
    """Explain what is wrong with an answer, keep the step's buttons, and change nothing."""
    question = prompt(state, ctx)
    text = say(state, ctx, refusal.reason, **refusal.params)
    return Outcome(state, (Reply(text, question.buttons, question.contact_button),))


def remind(state: Participant, ctx: Context, key: str) -> Outcome:
    """Say what was expected instead, ask the step's question again, and change nothing."""
    question = prompt(state, ctx)
    text = f"{say(state, ctx, key)}\n\n{question.text}"
    return Outcome(state, (Reply(text, question.buttons, question.contact_button),))
