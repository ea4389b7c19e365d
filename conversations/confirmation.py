"""Email confirmation (double opt-in): a link with a token, or a short code typed in the chat.

Only keyed hashes (HMAC-SHA256) of the token and the code are kept. A link is checked against
the person's own pending confirmation, so a link opened from another account tells nothing about
whose it is.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import replace
from datetime import datetime, timedelta

from conversations.model import (
    ENTRY_CONSENTS,
    Confirmation,
    CountUse,
    Entry,
    InviteFriends,
    Outcome,
    Participant,
    QueueEmail,
    Quota,
    Reply,
    Step,
)
from conversations.phases import Phase
from conversations.policy import Context
from conversations.prompts import AFTER_COMPLETION, prompt, say, status_text
from conversations.quotas import mailbox_subject
from conversations.validators import same_address

CODE = re.compile(r"([0-9]{3}) ?([0-9]{3})")
TOKEN = re.compile(r"[A-Za-z0-9_-]{16,62}")
_HOUR = timedelta(hours=1)


def digest(key: bytes, secret: str) -> str:
    """A keyed hash of a code or a token: without the key, no list of the million codes
    reverses it."""
    return hmac.new(key, f"confirmation:{secret}".encode(), hashlib.sha256).hexdigest()


def _matches(key: bytes, secret: str, expected: str) -> bool:
    return hmac.compare_digest(digest(key, secret), expected)


def _within_the_hour(times: tuple[datetime, ...], now: datetime) -> tuple[datetime, ...]:
    return tuple(moment for moment in times if moment > now - _HOUR)


def _reply(state: Participant, ctx: Context, key: str, **params: str) -> Outcome:
    return Outcome(state, (Reply(say(state, ctx, key, **params)),))


def issue(state: Participant, ctx: Context) -> Outcome:
    """Send a new link and code to the profile's address; earlier ones stop working.

    The wrong-code count is kept: a new email is no way around the hourly limit. A mailbox gets
    a few confirmation emails a day at most, whichever accounts ask: the count outlives
    erasure, so erasing and signing up again floods nobody.

    Past that limit nothing leaves, yet the step looks exactly like a send (same reply, a new
    pending confirmation): saying "this mailbox had enough today" would tell whoever asks that
    some other account wrote to it. Likewise, whether the address is already another entry's
    is decided as the email is queued (storage): that mailbox is told so instead of getting a
    code, and the chat says the same as for any address, so that nobody learns who entered.
    """
    assert state.email is not None
    mailbox_full = (
        ctx.usage.confirmation_emails.count >= ctx.limits.confirmation_emails_per_address_per_day
    )
    pending = Confirmation(
        state.email,
        digest(ctx.hash_key, ctx.secrets.token),
        digest(ctx.hash_key, ctx.secrets.code),
        ctx.now + ctx.limits.confirmation_valid_for,
    )
    sends = (*_within_the_hour(state.confirmation_sends, ctx.now), ctx.now)
    new = replace(state, confirmation=pending, confirmation_sends=sends)
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
    if mailbox_full:
        return Outcome(new, (Reply(sent),))
    counted = CountUse(
        Quota.CONFIRMATION_EMAILS,
        mailbox_subject(state.email, ctx.limits.address_tag_providers),
        ctx.limits.confirmation_emails_per_address_per_day,
    )
    return Outcome(new, (Reply(sent),), (email, counted))


def _sends_left(state: Participant, ctx: Context) -> bool:
    sent = _within_the_hour(state.confirmation_sends, ctx.now)
    return len(sent) < ctx.limits.confirmation_sends_per_hour


def _waiting(state: Participant, ctx: Context) -> bool:
    """A confirmation that still works already went to the profile's address."""
    pending = state.confirmation
    return (
        pending is not None
        and state.email is not None
        and same_address(pending.address, state.email, ctx.limits.address_tag_providers)
        and ctx.now < pending.expires_at
    )


def _ask_to_confirm(state: Participant, ctx: Context) -> Outcome:
    """Send a confirmation to the profile's address, unless one is on its way or too many
    went out this hour."""
    if _waiting(state, ctx):
        assert state.email is not None
        return _reply(state, ctx, "confirmation.waiting", email=state.email)
    if not _sends_left(state, ctx):
        return _reply(state, ctx, "confirmation.resend_limit")
    return issue(state, ctx)


def _follow_profile(state: Participant, ctx: Context) -> Participant:
    """Carry the profile's edits to the entry: the phone always, the postcode and area class
    only while entries are open. The address changes only by its own confirmation."""
    entry = state.entry
    assert entry is not None
    if state.phone:
        entry = replace(entry, phone=state.phone)
    if ctx.phase == Phase.OPEN and state.postcode and state.departement and state.area:
        entry = replace(
            entry, postcode=state.postcode, departement=state.departement, area=state.area
        )
    return replace(state, entry=entry)


def complete(state: Participant, ctx: Context) -> Outcome:
    """Record the summary as confirmed; ask to confirm a new address, or invite the friends."""
    new = replace(
        state,
        step=Step.COMPLETE,
        completed_at=state.completed_at or ctx.now,
        referral_code=state.referral_code or ctx.secrets.referral_code,
    )
    thanks = Reply(say(new, ctx, "complete.thanks"))
    if state.friends and ctx.phase != Phase.OPEN:
        # Invitations ask people to take part: there is nothing to join any more.
        thanks = Reply(f"{thanks.text}\n{say(new, ctx, 'friends.closed')}")
    if new.entry is None:
        asked = _ask_to_confirm(new, ctx)
        return Outcome(asked.state, (thanks, *asked.replies), asked.effects)
    new, invitations = _invite_friends(_follow_profile(new, ctx), ctx)
    if not new.email_change_pending:
        # Back to the entry's own address: a link sent to another one must not move it there.
        new = replace(new, confirmation=None)
        return Outcome(new, (thanks, Reply(status_text(new, ctx))), invitations)
    asked = _ask_to_confirm(new, ctx)
    return Outcome(asked.state, (thanks, *asked.replies), (*invitations, *asked.effects))


def _invite_friends(
    state: Participant, ctx: Context
) -> tuple[Participant, tuple[InviteFriends, ...]]:
    """Invite the listed friends, never more than MAX_FRIENDS people in all, and only while
    entries are open: an invitation asks people to take part."""
    if ctx.phase != Phase.OPEN:
        return replace(state, friends=()), ()
    room = max(ctx.limits.max_friends - state.friends_invited, 0)
    invited = state.friends[:room]
    if not invited or state.referral_code is None:
        return replace(state, friends=()), ()
    invitation = InviteFriends(invited, state.first_name or "", state.referral_code, state.language)
    count = state.friends_invited + len(invited)
    return replace(state, friends=(), friends_invited=count), (invitation,)


def _confirm(state: Participant, ctx: Context) -> Outcome:
    """Confirm the address the pending confirmation was sent to, whatever the profile says now.

    The first confirmation makes the entry (with a ticket while entries are open); a later one
    moves the entry to the newly confirmed address.
    """
    pending = state.confirmation
    assert pending is not None
    if state.entry is not None:
        entry = replace(state.entry, email=pending.address)
        new = replace(state, entry=entry, confirmation=None)
        done = Reply(say(new, ctx, "confirmation.done_change", email=pending.address))
        return Outcome(new, (done, prompt(new, ctx)))
    assert state.phone and state.postcode and state.departement and state.area
    entry = Entry(
        ticket=ctx.secrets.ticket if ctx.phase == Phase.OPEN else None,
        email=pending.address,
        phone=state.phone,
        postcode=state.postcode,
        departement=state.departement,
        area=state.area,
        consents=tuple(c for c in state.consents if c.kind in ENTRY_CONSENTS),
        entered_at=ctx.now,
    )
    new = replace(state, entry=entry, confirmation=None, paused=False)
    said = "confirmation.done" if entry.ticket else "confirmation.done_closed"
    if state.step not in AFTER_COMPLETION:
        # Opened in the middle of an edit: the edit goes on where it was.
        return Outcome(new, (Reply(say(new, ctx, said)), prompt(new, ctx)))
    new, invitations = _invite_friends(replace(new, step=Step.ENGAGE_ACTIONS), ctx)
    return Outcome(new, (Reply(say(new, ctx, said)), prompt(new, ctx)), invitations)


def open_link(state: Participant, token: str, ctx: Context) -> Outcome:
    """Confirms the address when the link is this person's own, current one."""
    pending = state.confirmation
    if pending and TOKEN.fullmatch(token) and _matches(ctx.hash_key, token, pending.token_hash):
        if ctx.now >= pending.expires_at:
            return _reply(state, ctx, "confirmation.expired")
        return _confirm(state, ctx)
    if state.is_confirmed and not state.email_change_pending:
        return _reply(state, ctx, "confirmation.already")
    return _reply(state, ctx, "confirmation.invalid")


def looks_like_code(text: str) -> bool:
    return CODE.fullmatch(text.strip()) is not None


def enter_code(state: Participant, text: str, ctx: Context) -> Outcome:
    """Confirms the address with the code from the email, a few wrong tries an hour at most."""
    pending = state.confirmation
    if pending is None:
        confirmed = state.is_confirmed and not state.email_change_pending
        return _reply(
            state, ctx, "confirmation.already" if confirmed else "confirmation.none_pending"
        )
    failures = _within_the_hour(state.code_failures, ctx.now)
    allowed = ctx.limits.code_attempts_per_hour
    if len(failures) >= allowed:
        return _reply(state, ctx, "confirmation.code_locked")
    if ctx.now >= pending.expires_at:
        return _reply(state, ctx, "confirmation.expired")
    match = CODE.fullmatch(text.strip())
    if match and _matches(ctx.hash_key, match[1] + match[2], pending.code_hash):
        return _confirm(state, ctx)
    failures = (*failures, ctx.now)
    left = allowed - len(failures)
    key = "confirmation.code_wrong" if left > 0 else "confirmation.code_locked"
    return _reply(replace(state, code_failures=failures), ctx, key, left=str(left))


def resend(state: Participant, ctx: Context) -> Outcome:
    """Sends the confirmation again, a few times an hour at most."""
    if state.completed_at is None or state.email is None or state.step not in AFTER_COMPLETION:
        return _reply(state, ctx, "confirmation.finish_first")
    if state.is_confirmed and not state.email_change_pending:
        return _reply(state, ctx, "confirmation.already")
    if not _sends_left(state, ctx):
        return _reply(state, ctx, "confirmation.resend_limit")
    return issue(state, ctx)
