"""The engagement questionnaire offered once the email is confirmed: actions, availability, and
three separate consents to receive political news, by email, by SMS and on Telegram."""

from __future__ import annotations

from dataclasses import replace

from conversations.model import (
    NEWS_CONSENTS,
    Action,
    Answer,
    Availability,
    Consent,
    Effect,
    Outcome,
    Participant,
    Press,
    RecordConsent,
    Reply,
    Step,
    WithdrawConsent,
)
from conversations.policy import Context
from conversations.prompts import (
    actions_prompt,
    availability_prompt,
    news_prompt,
    redraw,
    remind,
    say,
    status_text,
)


def start_questionnaire(state: Participant, ctx: Context) -> Outcome:
    """Reopens the questionnaire with the person's current choices."""
    if not state.is_confirmed:
        return Outcome(state, (Reply(say(state, ctx, "engage.confirm_first")),))
    new = replace(state, step=Step.ENGAGE_ACTIONS, paused=False)
    return Outcome(new, (actions_prompt(new, ctx),))


def _to_news(state: Participant, ctx: Context) -> Outcome:
    given = frozenset(kind for kind in NEWS_CONSENTS if state.has_consented(kind))
    new = replace(state, step=Step.ENGAGE_NEWS, consent_ticks=given)
    return Outcome(new, (news_prompt(new, ctx),))


def answer_actions(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Toggles an action, or goes on to availability (or straight to the news consents)."""
    if not isinstance(event, Press):
        return remind(state, ctx, "remind.use_buttons")
    actions = {f"action.{a}": a for a in Action}
    if event.key in actions:
        new = replace(state, actions=state.actions ^ {actions[event.key]})
        return redraw(new, ctx)
    if event.key == "engage.actions_done":
        new = replace(state, step=Step.ENGAGE_AVAILABILITY)
        return Outcome(new, (availability_prompt(new, ctx),))
    if event.key == "engage.actions_skip":
        return _to_news(replace(state, actions=frozenset(), availability=frozenset()), ctx)
    return remind(state, ctx, "remind.stale_button")


def answer_availability(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Toggles a time of availability, or goes on to the news consents."""
    if not isinstance(event, Press):
        return remind(state, ctx, "remind.use_buttons")
    times = {f"when.{a}": a for a in Availability}
    if event.key in times:
        new = replace(state, availability=state.availability ^ {times[event.key]})
        return redraw(new, ctx)
    if event.key == "engage.availability_done":
        return _to_news(state, ctx)
    if event.key == "engage.availability_skip":
        return _to_news(replace(state, availability=frozenset()), ctx)
    return remind(state, ctx, "remind.stale_button")


def answer_news(state: Participant, event: Answer, ctx: Context) -> Outcome:
    """Toggles a news consent; on 'validate', records the ticked ones and withdraws the others."""
    if not isinstance(event, Press):
        return remind(state, ctx, "remind.use_buttons")
    kinds = {f"news.{kind}": kind for kind in NEWS_CONSENTS}
    if event.key in kinds:
        new = replace(state, consent_ticks=state.consent_ticks ^ {kinds[event.key]})
        return redraw(new, ctx)
    if event.key != "engage.news_done":
        return remind(state, ctx, "remind.stale_button")
    effects: list[Effect] = []
    consents = [
        c for c in state.consents if c.kind not in NEWS_CONSENTS or c.kind in state.consent_ticks
    ]
    for kind in NEWS_CONSENTS:
        if kind in state.consent_ticks and not state.has_consented(kind):
            consent = Consent(
                kind, ctx.texts.version(state.language, f"consent.{kind}.text"), ctx.now
            )
            consents.append(consent)
            effects.append(RecordConsent(consent))
        elif kind not in state.consent_ticks and state.has_consented(kind):
            effects.append(WithdrawConsent(kind, ctx.now))
    new = replace(state, step=Step.COMPLETE, consent_ticks=frozenset(), consents=tuple(consents))
    thanks = f"{say(new, ctx, 'engage.thanks')}\n\n{status_text(new, ctx)}"
    return Outcome(new, (Reply(thanks),), tuple(effects))


def unsubscribe(state: Participant, ctx: Context) -> Outcome:
    """Withdraws every consent to receive news."""
    given = [kind for kind in NEWS_CONSENTS if state.has_consented(kind)]
    if not given:
        return Outcome(state, (Reply(say(state, ctx, "unsubscribe.nothing")),))
    new = replace(state, consents=tuple(c for c in state.consents if c.kind not in NEWS_CONSENTS))
    effects = tuple(WithdrawConsent(kind, ctx.now) for kind in given)
    return Outcome(new, (Reply(say(state, ctx, "unsubscribe.done")),), effects)
