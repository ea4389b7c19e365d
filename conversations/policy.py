"""The operation's rules and limits, and what a step needs to know besides the state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from conversations.catalogue import Catalogue
from conversations.model import Area, Profile, Travel
from conversations.phases import Calendar, OperationState, Phase, phase_at
from conversations.quotas import Usage
from conversations.validators import TAG_IGNORING_PROVIDERS

DEFAULT_TRAVEL: Mapping[Area, Travel] = {
    Area.PARIS: Travel.NONE,
    Area.ILE_DE_FRANCE: Travel.NONE,
    Area.PROVINCE: Travel.TRAIN,
    # No rail link to the mainland: the campaign books the journey.
    Area.CORSICA: Travel.ARRANGED,
    Area.OVERSEAS: Travel.ARRANGED,
}


@dataclass(frozen=True)
class Limits:
    name_max_length: int = 60
    question_max_length: int = 500
    max_friends: int = 3
    # Anything longer is refused before any step looks at it.
    message_max_length: int = 1000
    check_deliverability: bool = False
    confirmation_valid_for: timedelta = timedelta(days=7)
    confirmation_sends_per_hour: int = 3
    code_attempts_per_hour: int = 5
    # Confirmation emails one mailbox receives in a day, from every account together: an
    # erase-and-redo loop cannot flood a stranger's mailbox.
    confirmation_emails_per_address_per_day: int = 5
    # Erasures of a completed signup after which the account may not sign up again until the
    # week that began with the first of them has passed (the erasure itself is never refused).
    erasures_per_week: int = 2
    # Mail providers delivering local+tag@ to local@: one mailbox, one key.
    address_tag_providers: tuple[str, ...] = TAG_IGNORING_PROVIDERS
    # Domains and addresses that are the campaign's own, refused as friends.
    campaign_addresses: frozenset[str] = frozenset()


class SecretSource(Protocol):
    """Fresh random values for a step. The shell draws each only when a step reads it, since
    most steps use none."""

    @property
    def token(self) -> str: ...

    @property
    def code(self) -> str: ...

    @property
    def referral_code(self) -> str: ...

    @property
    def ticket(self) -> str: ...


@dataclass(frozen=True)
class Secrets:
    """Secrets given in advance, as tests and replays need them."""

    token: str
    code: str
    referral_code: str
    ticket: str


@dataclass(frozen=True)
class Context:
    now: datetime
    profile: Profile
    texts: Catalogue
    limits: Limits
    travel: Mapping[Area, Travel]
    secrets: SecretSource
    bot_username: str
    calendar: Calendar = field(default_factory=Calendar)
    operation: OperationState = field(default_factory=OperationState)
    # Every date shown to a person is written in this zone, and names it.
    zone: tzinfo = UTC
    # The counts that outlive erasure, as read before the step (conversations/quotas.py).
    usage: Usage = field(default_factory=Usage)
    # The key of the confirmation code's and link's hashes; the shell keeps it outside the
    # database, so that a copy of the database alone cannot test the million codes.
    hash_key: bytes = b""

    @property
    def phase(self) -> Phase:
        return phase_at(self.calendar, self.operation, self.now)
