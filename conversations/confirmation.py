"""Email confirmation (double opt-in): a link with a token, or a short code typed in the chat.

Only hashes of the token and the code are kept. A link is checked against the person's own
pending confirmation, so a link opened from another account tells nothing about whose it is.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import replace
from datetime import datetime, timedelta

from conversations.model import (
    Confirmation,
    InviteFriends,
    Outcome,
    Participant,
    QueueEmail,
    Reply,
    Step,
)
from conversations.policy import Context
from conversations.prompts import prompt, say, status_text

CODE = re.compile(r"([0-9]{3}) ?([0-9]{3})")
TOKEN = re.compile(r"[A-Za-z0-9_-]{16,62}")
_HOUR = timedelta(hours=1)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _matches(secret: str, expected: str) -> bool:
    return hmac.compare_digest(digest(secret), expected)


def _within_the_hour(times: tuple[datetime, ...], now: datetime) -> tuple[datetime, ...]:
    return tuple(moment for moment in times if moment > now - _HOUR)


def _reply(state: Participant, ctx: Context, key: str, **params: str) -> Outcome:
    return Outcome(state, (Reply(say(state, ctx, key, **params)),))


def issue(state: Participant, ctx: Context) -> Outcome:
    """Send a new link and code to the current address; earlier ones stop working."""
    assert state.email is not None
    pending = Confirmation(
        digest(ctx.secrets.token),
        digest(ctx.secrets.code),
        ctx.now + ctx.limits.confirmation_valid_for,
    )
    sends = (*_within_the_hour(state.confirmation_sends, ctx.now), ctx.now)
    new = replace(state, confirmation=pending, confirmation_sends=sends, code_failures=())
    email = QueueEmail(
        kind="confirmation",
        recipient=state.email,
        language=state.language,
        params=(
            ("first_name", state.first_name or ""),
            ("token", ctx.secrets.token),
            ("code", ctx.secrets.code),
        ),
        key=f"confirmation:{state.user_id}:{pending.token_hash[:24]}",
    )
    sent = say(new, ctx, "confirmation.sent", email=state.email)
    return Outcome(new, (Reply(sent),), (email,))


def complete(state: Participant, ctx: Context) -> Outcome:
    """Record the signup as complete; ask to confirm the address, or invite the friends."""
    new = replace(
        state,
        step=Step.COMPLETE,
        completed_at=state.completed_at or ctx.now,
        referral_code=state.referral_code or ctx.secrets.referral_code,
    )
    thanks = Reply(say(new, ctx, "complete.thanks"))
    if new.is_confirmed:
        new, invitations = _invite_friends(new)
        return Outcome(new, (thanks, Reply(status_text(new, ctx))), invitations)
    issued = issue(new, ctx)
    return Outcome(issued.state, (thanks, *issued.replies), issued.effects)


def _invite_friends(state: Participant) -> tuple[Participant, tuple[InviteFriends, ...]]:
    if not state.friends or state.referral_code is None:
        return state, ()
    invitation = InviteFriends(
        state.friends, state.first_name or "", state.referral_code, state.language
    )
    invited = state.friends_invited + len(state.friends)
    return replace(state, friends=(), friends_invited=invited), (invitation,)


def _confirm(state: Participant, ctx: Context) -> Outcome:
    new = replace(
        state,
        ticket=state.ticket or ctx.secrets.ticket,
        confirmed_email=state.email,
        confirmed_at=ctx.now,
        confirmation=None,
        code_failures=(),
        step=Step.ENGAGE_ACTIONS,
        paused=False,
    )
    new, invitations = _invite_friends(new)
    confirmed = say(new, ctx, "confirmation.done")
    return Outcome(new, (Reply(confirmed), prompt(new, ctx)), invitations)


def open_link(state: Participant, token: str, ctx: Context) -> Outcome:
    """Confirms the address when the link is this person's own, current one."""
    pending = state.confirmation
    if pending and TOKEN.fullmatch(token) and _matches(token, pending.token_hash):
        if ctx.now >= pending.expires_at:
            return _reply(state, ctx, "confirmation.expired")
        return _confirm(state, ctx)
    if state.is_confirmed:
        return _reply(state, ctx, "confirmation.already")
    return _reply(state, ctx, "confirmation.invalid")


def looks_like_code(text: str) -> bool:
    return CODE.fullmatch(text.strip()) is not None


def enter_code(state: Participant, text: str, ctx: Context) -> Outcome:
    """Confirms the address with the code from the email, a few wrong tries an hour at most."""
    pending = state.confirmation
    if pending is None:
        key = "confirmation.already" if state.is_confirmed else "confirmation.none_pending"
        return _reply(state, ctx, key)
    failures = _within_the_hour(state.code_failures, ctx.now)
    allowed = ctx.limits.code_attempts_per_hour
    if len(failures) >= allowed:
        return _reply(state, ctx, "confirmation.code_locked")
    if ctx.now >= pending.expires_at:
        return _reply(state, ctx, "confirmation.expired")
    match = CODE.fullmatch(text.strip())
    if match and _matches(match[1] + match[2], pending.code_hash):
        return _confirm(state, ctx)
    failures = (*failures, ctx.now)
    left = allowed - len(failures)
    key = "confirmation.code_wrong" if left > 0 else "confirmation.code_locked"
    return _reply(replace(state, code_failures=failures), ctx, key, left=str(left))


def resend(state: Participant, ctx: Context) -> Outcome:
    """Sends the confirmation again, a few times an hour at most."""
    if state.completed_at is None or state.email is None:
        return _reply(state, ctx, "confirmation.finish_first")
    if state.is_confirmed:
        return _reply(state, ctx, "confirmation.already")
    if (
        len(_within_the_hour(state.confirmation_sends, ctx.now))
        >= ctx.limits.confirmation_sends_per_hour
    ):
        return _reply(state, ctx, "confirmation.resend_limit")
    return issue(state, ctx)
