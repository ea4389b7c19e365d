"""Limits that outlive the person they count: a confirmation email to one mailbox, an erasure
followed by a new signup, the emails sent in an hour. Each is counted by a keyed hash of its
subject in a window that starts at its first use, so erasing one's data resets none of them
and the counters name nobody (storage/quotas.py).

The core reads the counts it needs from the context (`Usage`) and asks, with `CountUse`, for a
use to be counted in the step's own transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from conversations.model import Participant, Quota, Step
from conversations.validators import TAG_IGNORING_PROVIDERS, address_key

WINDOWS: dict[Quota, timedelta] = {
    Quota.CONFIRMATION_EMAILS: timedelta(days=1),
    Quota.ERASURES: timedelta(days=7),
    Quota.OUTGOING_EMAILS: timedelta(hours=1),
    Quota.EMAIL_CAP_WARNING: timedelta(hours=1),
}

# The one subject of the quotas that count everything.
EVERYONE = "*"


def mailbox_subject(address: str, providers: Iterable[str] = TAG_IGNORING_PROVIDERS) -> str:
    """The subject a mailbox is counted under: every spelling of it counts as one."""
    return address_key(address, providers)


def account_subject(user_id: int) -> str:
    return str(user_id)


@dataclass(frozen=True)
class Use:
    """How often a quota was used in its current window, and when that window ends."""

    count: int = 0
    until: datetime | None = None


@dataclass(frozen=True)
class Usage:
    """The counts a step may need, read before it: for the profile's address and the account."""

    confirmation_emails: Use = Use()
    erasures: Use = Use()


# The steps from which a confirmation email can leave: the summary's confirmation, and
# /renvoyer or an edit once the signup is complete.
_CONFIRMING_STEPS = frozenset(
    {Step.SUMMARY, Step.COMPLETE, Step.ENGAGE_ACTIONS, Step.ENGAGE_AVAILABILITY, Step.ENGAGE_NEWS}
)


def subjects_to_read(
    state: Participant | None, user_id: int, providers: Iterable[str] = TAG_IGNORING_PROVIDERS
) -> tuple[str | None, str | None]:
    """Which counts the next step on `state` may need, so that the shell reads only those: the
    profile's mailbox while a confirmation may leave, the account while it may sign up."""
    mailbox = None
    if state is not None and state.email is not None and state.step in _CONFIRMING_STEPS:
        mailbox = mailbox_subject(state.email, providers)
    account = account_subject(user_id) if state is None or state.step == Step.WELCOME else None
    return mailbox, account
