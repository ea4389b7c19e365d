"""The participant's conversation state and the messages that go in and out of the core."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Step(StrEnum):
    WELCOME = "welcome"
    CONSENT = "consent"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    PHONE = "phone"
    EMAIL = "email"
    POSTCODE = "postcode"
    FRIENDS = "friends"
    FRIEND_EMAIL = "friend_email"
    QUESTION = "question"
    SUMMARY = "summary"
    COMPLETE = "complete"
    # After the email is confirmed: the engagement questionnaire.
    ENGAGE_ACTIONS = "engage_actions"
    ENGAGE_AVAILABILITY = "engage_availability"
    ENGAGE_NEWS = "engage_news"


class Area(StrEnum):
    PARIS = "paris"
    ILE_DE_FRANCE = "ile_de_france"
    PROVINCE = "province"
    CORSICA = "corsica"
    OVERSEAS = "overseas"


class Travel(StrEnum):
    """What the campaign pays for the journey to the coffee, by area class."""

    NONE = "none"
    TRAIN = "train"
    ARRANGED = "arranged"


class ConsentKind(StrEnum):
    # In alphabetical order, the order in which the store returns consents given together.
    ADULT = "adult"
    # Accepting the rules and the processing in one tick, as the signup asked before the two
    # were separated. It is no longer asked, but stays valid for the people who gave it: a
    # consent is given to the wording of its time, which its version names.
    DRAW = "draw"
    NEWS_EMAIL = "news_email"
    NEWS_SMS = "news_sms"
    # News sent to the person's Telegram chat: what an admin's /annonce may reach.
    NEWS_TELEGRAM = "news_telegram"
    # The processing of the data the signup asks for (GDPR art. 9(2)(a): explicit consent).
    PROCESSING = "processing"
    RULES = "rules"


SIGNUP_CONSENTS = (ConsentKind.ADULT, ConsentKind.PROCESSING, ConsentKind.RULES)
# What an entry keeps of the person's consents: today's signup consents, or the earlier
# bundled one with the adult tick.
ENTRY_CONSENTS = (*SIGNUP_CONSENTS, ConsentKind.DRAW)


def signup_consents_given(kinds: Collection[ConsentKind]) -> bool:
    """Whether these consents let a person into the draw: the adult tick, and the rules and the
    processing accepted, apart or (before they were separated) in the one "draw" tick."""
    rules_and_processing = {ConsentKind.RULES, ConsentKind.PROCESSING} <= set(kinds)
    return ConsentKind.ADULT in kinds and (rules_and_processing or ConsentKind.DRAW in kinds)


NEWS_CONSENTS = (ConsentKind.NEWS_EMAIL, ConsentKind.NEWS_SMS, ConsentKind.NEWS_TELEGRAM)


class Action(StrEnum):
    SHARE_ONLINE = "share_online"
    LEAFLETS = "leaflets"
    DOOR_TO_DOOR = "door_to_door"
    PHONE_CALLS = "phone_calls"
    HOST_MEETING = "host_meeting"
    EVENTS = "events"


class Availability(StrEnum):
    WEEKDAYS = "weekdays"
    EVENINGS = "evenings"
    WEEKENDS = "weekends"


@dataclass(frozen=True)
class Consent:
    kind: ConsentKind
    version: str
    given_at: datetime


@dataclass(frozen=True)
class Confirmation:
    """An email confirmation waiting for its link or code; only their hashes are kept.

    It is bound to the address it was sent to: opening it confirms that address, whatever the
    person has typed since.
    """

    address: str
    token_hash: str
    code_hash: str
    expires_at: datetime


@dataclass(frozen=True)
class Entry:
    """The person's part in the operation, made when their address is first confirmed.

    The draw, the statistics and the export read entries, never the step the person is on:
    editing the profile afterwards never removes an entry. Its address changes only when a new
    address is confirmed; its postcode and area class only while entries are open.
    """

    # None for an entry made after entries closed: the address is confirmed, but not drawn.
    ticket: str | None
    email: str
    phone: str
    postcode: str
    departement: str
    area: Area
    # The signup consents, with the version of the wording the person agreed to.
    consents: tuple[Consent, ...]
    entered_at: datetime
    excluded_reason: str | None = None


@dataclass(frozen=True)
class DrawPlace:
    role: str  # "winner" or "reserve"
    rank: int  # from 1, among winners or among reserves
    status: str  # waiting, notified, accepted, declined, expired, replaced
    # The entitlement frozen at the draw, whatever the settings or the postcode say since.
    travel: Travel | None = None


@dataclass(frozen=True)
class Participant:
    """Everything the conversation knows about one Telegram user, saved after every step."""

    user_id: int
    language: str
    created_at: datetime
    step: Step = Step.WELCOME
    version: int = 0
    paused: bool = False
    # An answer given from the summary returns to the summary instead of the next step.
    editing: bool = False
    consent_ticks: frozenset[ConsentKind] = frozenset()
    consents: tuple[Consent, ...] = ()
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    # Shared with the platform's contact button, which vouches that the number is the
    # sender's own: only such a number is unique among participants.
    phone_verified: bool = False
    email: str | None = None
    # A typed address waiting for the person to accept or refuse a spelling fix.
    pending_email: str | None = None
    postcode: str | None = None
    departement: str | None = None
    area: Area | None = None
    friends: tuple[str, ...] = ()
    question: str | None = None
    referrer: str | None = None
    completed_at: datetime | None = None
    confirmation: Confirmation | None = None
    entry: Entry | None = None
    # Times of recent wrong codes and of recent confirmation emails, for their hourly limits;
    # neither is reset by an edit or a new email.
    code_failures: tuple[datetime, ...] = ()
    confirmation_sends: tuple[datetime, ...] = ()
    referral_code: str | None = None
    # Friends ever invited: at most MAX_FRIENDS, however often the list is edited.
    friends_invited: int = 0
    actions: frozenset[Action] = frozenset()
    availability: frozenset[Availability] = frozenset()
    # Read, never written by a step: how many people this person referred have confirmed their
    # email, and this person's place in the draw once it is done.
    referrals_confirmed: int = 0
    draw_place: DrawPlace | None = None
    # Telegram said this person blocked the bot (no announcement goes to them): any update
    # from them clears it, in that update's transaction.
    blocked: bool = False

    def has_consented(self, kind: ConsentKind) -> bool:
        return any(consent.kind == kind for consent in self.consents)

    @property
    def is_confirmed(self) -> bool:
        """Some address of this person's was confirmed: they have an entry."""
        return self.entry is not None

    @property
    def email_change_pending(self) -> bool:
        """The profile's address differs from the entry's, and still waits for confirmation."""
        return (
            self.entry is not None
            and self.email is not None
            and self.email.casefold() != self.entry.email.casefold()
        )

    @property
    def ticket(self) -> str | None:
        return self.entry.ticket if self.entry else None


@dataclass(frozen=True)
class Profile:
    """What the messaging platform tells about the sender, offered as one-tap answers."""

    first_name: str | None = None
    last_name: str | None = None
    language_code: str | None = None


# Inputs: what the person did, already stripped of anything platform-specific.


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Command:
    name: str
    argument: str = ""


@dataclass(frozen=True)
class Press:
    """A press on a button; `key` is the button's key, possibly from an old message."""

    key: str


@dataclass(frozen=True)
class SharedContact:
    phone: str
    is_own: bool


@dataclass(frozen=True)
class Unsupported:
    """A sticker, photo, voice note, location… anything the conversation cannot read."""


@dataclass(frozen=True)
class Edited:
    """An edit of a message already answered."""


Input = Text | Command | Press | SharedContact | Unsupported | Edited
# What a step's own handler receives, once commands and unreadable input are dealt with.
Answer = Text | Press | SharedContact


# Replies: platform-neutral text and choices.


@dataclass(frozen=True)
class Button:
    label: str
    key: str


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    # Label of a button that shares the person's own phone number, where the platform has one.
    contact_button: str | None = None
    # Replace the message whose button was pressed instead of sending a new one.
    replaces_pressed: bool = False


# Effects: what must happen besides saving the new state.


@dataclass(frozen=True)
class RecordConsent:
    consent: Consent


@dataclass(frozen=True)
class ErasePersonalData:
    """Delete everything about the person; only anonymous counts remain."""


@dataclass(frozen=True)
class WithdrawConsent:
    kind: ConsentKind
    withdrawn_at: datetime


@dataclass(frozen=True)
class SendPersonalData:
    """Send the person a document with everything stored about them."""


@dataclass(frozen=True)
class QueueEmail:
    """Put an email in the outbox, in the same transaction as the step that causes it."""

    kind: str
    recipient: str
    language: str
    params: tuple[tuple[str, str], ...]
    # Never two emails with the same key.
    key: str


@dataclass(frozen=True)
class InviteFriends:
    """Invite each address once, unless anyone already invited it or it unsubscribed."""

    addresses: tuple[str, ...]
    referrer_first_name: str
    referral_code: str
    language: str


@dataclass(frozen=True)
class SuppressAddress:
    """Never invite again the address whose keyed hash this is."""

    address_hash: str


class Quota(StrEnum):
    # Confirmation emails (and "already in use" notices) to one mailbox, whoever asks.
    CONFIRMATION_EMAILS = "confirmation_emails"
    # Erasures of a completed signup by one Telegram account.
    ERASURES = "erasures"
    # Every email the bot sends, all recipients together.
    OUTGOING_EMAILS = "outgoing_emails"
    # The admins' warning that the hourly cap paused the emails: once a window.
    EMAIL_CAP_WARNING = "email_cap_warning"


@dataclass(frozen=True)
class CountUse:
    """Count one use of `quota` for `subject` (a plain value, hashed by the store).

    With a `limit`, the count is also the check: the core decided on a count read before the
    step, which another account's step may have raised meanwhile, so the store counts the use
    only if fewer than `limit` were counted, and otherwise refuses the whole step (StaleWrite),
    which is then taken again on the fresh count."""

    quota: Quota
    subject: str
    limit: int | None = None


Effect = (
    RecordConsent
    | WithdrawConsent
    | ErasePersonalData
    | SendPersonalData
    | QueueEmail
    | InviteFriends
    | SuppressAddress
    | CountUse
)


@dataclass(frozen=True)
class Outcome:
    state: Participant
    replies: tuple[Reply, ...] = ()
    effects: tuple[Effect, ...] = field(default=())
