"""An admin's `/annonce`: a message to supporters, as a transition table.

The admin types the message, chooses the audience (every entrant, those who agreed to news on
Telegram, or by email), sees it as it will be sent with the number of recipients, and confirms — a
second admin confirms when the draw's second-admin rule applies. Once sending, it can be
cancelled. Nothing starts or leaves during electoral silence. The text is the admin's, sent as
plain text: never read as markup, never filled as a template. `announcements.mmd` beside this
file draws the same table; keep them in step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Any

from conversations.admin_effects import Audit
from conversations.catalogue import Catalogue
from conversations.dates import long_datetime
from conversations.model import Button, ConsentKind, Participant, Press, Reply, Text
from conversations.phases import Calendar

# Telegram refuses a longer message (counted in UTF-16 code units, as its API does).
TELEGRAM_MAX_LENGTH = 4096


@dataclass(frozen=True)
class AnnouncementRules:
    # ANNOUNCEMENT_MAX_LENGTH
    max_length: int = TELEGRAM_MAX_LENGTH

    def __post_init__(self) -> None:
        if not 0 < self.max_length <= TELEGRAM_MAX_LENGTH:
            raise ValueError(f"ANNOUNCEMENT_MAX_LENGTH must be 1 to {TELEGRAM_MAX_LENGTH}")


class Audience(StrEnum):
    ENTRANTS = "entrants"
    NEWS_TELEGRAM = "news_telegram"
    # By email, to the confirmed address of each entrant who agreed to news by email.
    NEWS_EMAIL = "news_email"


class Channel(StrEnum):
    TELEGRAM = "telegram"
    EMAIL = "email"


def channel_of(audience: Audience) -> Channel:
    return Channel.EMAIL if audience == Audience.NEWS_EMAIL else Channel.TELEGRAM


def in_audience(person: Participant, audience: Audience) -> bool:
    """Whom an audience reaches; the shell counts and selects with the same rule (the shell
    also leaves out, on Telegram, whoever blocked the bot since they last wrote to it)."""
    if audience == Audience.ENTRANTS:
        return person.entry is not None
    if audience == Audience.NEWS_EMAIL:
        return person.entry is not None and person.has_consented(ConsentKind.NEWS_EMAIL)
    return person.has_consented(ConsentKind.NEWS_TELEGRAM)


class AnnouncementStep(StrEnum):
    TEXT = "text"
    AUDIENCE = "audience"
    PREVIEW = "preview"
    AWAITING_SECOND_ADMIN = "awaiting_second_admin"
    SENDING = "sending"
    # Set by the shell once the outbox has sent (or given up on) every message of the batch.
    SENT = "sent"
    CANCELLED = "cancelled"


# An announcement in one of these steps is a draft its author may replace with a new one.
DRAFT = (AnnouncementStep.TEXT, AnnouncementStep.AUDIENCE, AnnouncementStep.PREVIEW)
OVER = (AnnouncementStep.SENT, AnnouncementStep.CANCELLED)


@dataclass(frozen=True)
class Announcement:
    # Given by the shell (e.g. the row's id): names the outbox batch.
    number: int
    requested_by: int
    started_at: datetime
    step: AnnouncementStep = AnnouncementStep.TEXT
    text: str = ""
    audience: Audience | None = None
    # The count shown in the preview, for the audit log.
    recipients: int = 0
    confirmed_by: int | None = None

    @property
    def batch(self) -> str:
        return f"announce:{self.number}"


@dataclass(frozen=True)
class AnnouncementContext:
    now: datetime
    texts: Catalogue
    # The language of the admin acting.
    language: str
    rules: AnnouncementRules
    calendar: Calendar
    zone: tzinfo
    second_admin_required: bool
    # How many people each audience reaches now, counted by the shell.
    recipients: Mapping[Audience, int]


@dataclass(frozen=True)
class QueueBroadcast:
    """Queue the text for everyone in the audience, once each, as the outbox batch `batch`:
    campaign messages (held during silence) with `MESSAGE_KEY` and the text as its value."""

    batch: str
    audience: Audience
    text: str


@dataclass(frozen=True)
class CancelBroadcast:
    """Drop the batch's messages not yet sent."""

    batch: str


@dataclass(frozen=True)
class AskAdmins:
    """Show every admin but `except_id` this reply: a second admin's confirmation is awaited."""

    reply: Reply
    except_id: int


# The catalogue text an announcement is sent with: `{text}` alone, filled in one pass, so the
# admin's braces are never expanded.
MESSAGE_KEY = "announce.message"

AnnouncementEffect = QueueBroadcast | CancelBroadcast | AskAdmins | Audit


@dataclass(frozen=True)
class AnnouncementOutcome:
    # None when the draft was discarded.
    announcement: Announcement | None
    replies: tuple[Reply, ...] = ()
    effects: tuple[AnnouncementEffect, ...] = ()


AnnouncementInput = Text | Press


def telegram_length(text: str) -> int:
    """The length Telegram counts: UTF-16 code units, so an emoji counts two."""
    return len(text.encode("utf-16-le")) // 2


def _say(ctx: AnnouncementContext, key: str, **params: str) -> str:
    return ctx.texts.render(ctx.language, key, **params)


def _silenced(ctx: AnnouncementContext) -> str | None:
    ends = ctx.calendar.silence_ends(ctx.now)
    if ends is None:
        return None
    until = long_datetime(ctx.texts, ctx.language, ends, ctx.zone)
    return _say(ctx, "admin.announce.silence", until=until)


def start(
    current: Announcement | None, number: int, admin_id: int, ctx: AnnouncementContext
) -> AnnouncementOutcome:
    """`/annonce`: a new draft, replacing a draft not yet confirmed."""
    if current is not None and current.step not in (*DRAFT, *OVER):
        # Awaiting a second admin or sending: what stops it is at hand.
        cancel = (
            Button(
                _say(ctx, "admin.announce.button.cancel"), _numbered("announce.cancel", current)
            ),
        )
        busy = Reply(_say(ctx, f"admin.announce.busy.{current.step}"), (cancel,))
        return AnnouncementOutcome(current, (busy,))
    silence = _silenced(ctx)
    if silence is not None:
        return AnnouncementOutcome(current, (Reply(silence),))
    new = Announcement(number, admin_id, ctx.now)
    return AnnouncementOutcome(new, (_prompt(new, ctx),))


def _numbered(key: str, announcement: Announcement) -> str:
    """A confirm or cancel button's key, naming the announcement it was shown for."""
    return f"{key}:{announcement.number}"


def awaits_text(announcement: Announcement | None, admin_id: int) -> bool:
    """Whether this admin's next text message is the announcement's."""
    return (
        announcement is not None
        and announcement.step == AnnouncementStep.TEXT
        and announcement.requested_by == admin_id
    )


def announce_step(
    announcement: Announcement, admin_id: int, event: AnnouncementInput, ctx: AnnouncementContext
) -> AnnouncementOutcome:
    """Return the announcement after an admin's message or press, what to reply, and effects."""
    if isinstance(event, Press) and ":" in event.key:
        # A button names its announcement: one left from an earlier one acts on no later one.
        key, _, number = event.key.partition(":")
        if number != str(announcement.number):
            return AnnouncementOutcome(announcement, (Reply(_say(ctx, "remind.stale_button")),))
        event = Press(key)
    if event == Press("announce.cancel"):
        return _cancel(announcement, admin_id, ctx)
    mine = announcement.requested_by == admin_id
    if announcement.step in DRAFT and not mine:
        return AnnouncementOutcome(announcement, (Reply(_say(ctx, "admin.announce.not_yours")),))
    return TABLE[announcement.step](announcement, admin_id, event, ctx)


def _prompt(announcement: Announcement, ctx: AnnouncementContext) -> Reply:
    cancel = (
        Button(
            _say(ctx, "admin.announce.button.cancel"), _numbered("announce.cancel", announcement)
        ),
    )
    if announcement.step == AnnouncementStep.TEXT:
        maximum = str(ctx.rules.max_length)
        return Reply(_say(ctx, "admin.announce.ask_text", max=maximum), (cancel,))
    if announcement.step == AnnouncementStep.AUDIENCE:
        rows = tuple(
            (
                Button(
                    _say(ctx, f"admin.announce.audience.{audience}", count=str(count)),
                    f"announce.audience.{audience}",
                ),
            )
            for audience in Audience
            for count in (ctx.recipients.get(audience, 0),)
        )
        return Reply(_say(ctx, "admin.announce.ask_audience"), (*rows, cancel))
    confirm = Button(
        _say(ctx, "admin.announce.button.confirm"), _numbered("announce.confirm", announcement)
    )
    audience = _say(ctx, f"admin.announce.audience_name.{announcement.audience}")
    text = _say(
        ctx, "admin.announce.preview", audience=audience, count=str(announcement.recipients)
    )
    return Reply(text, ((confirm,), cancel))


def _to(
    announcement: Announcement, ctx: AnnouncementContext, **changes: Any
) -> AnnouncementOutcome:
    new = replace(announcement, **changes)
    return AnnouncementOutcome(new, (_prompt(new, ctx),))


def _refuse(
    announcement: Announcement, ctx: AnnouncementContext, key: str, **params: str
) -> AnnouncementOutcome:
    """Say what is wrong and, for a draft, ask its question again; change nothing."""
    text = _say(ctx, key, **params)
    if announcement.step not in DRAFT:
        return AnnouncementOutcome(announcement, (Reply(text),))
    question = _prompt(announcement, ctx)
    return AnnouncementOutcome(
        announcement, (Reply(f"{text}\n\n{question.text}", question.buttons),)
    )


def _text(
    announcement: Announcement, admin_id: int, event: AnnouncementInput, ctx: AnnouncementContext
) -> AnnouncementOutcome:
    """The message, as typed: only its length is checked."""
    if not isinstance(event, Text):
        return _refuse(announcement, ctx, "remind.stale_button")
    if not event.text.strip():
        return _refuse(announcement, ctx, "admin.announce.empty")
    if telegram_length(event.text) > ctx.rules.max_length:
        maximum = str(ctx.rules.max_length)
        return _refuse(announcement, ctx, "admin.announce.too_long", max=maximum)
    return _to(announcement, ctx, step=AnnouncementStep.AUDIENCE, text=event.text)


def _audience(
    announcement: Announcement, admin_id: int, event: AnnouncementInput, ctx: AnnouncementContext
) -> AnnouncementOutcome:
    """The audience chosen: the preview shows the message exactly as it will leave."""
    chosen = {f"announce.audience.{audience}": audience for audience in Audience}
    if not isinstance(event, Press) or event.key not in chosen:
        return _refuse(announcement, ctx, "remind.use_buttons")
    audience = chosen[event.key]
    count = ctx.recipients.get(audience, 0)
    if count == 0:
        return _refuse(announcement, ctx, "admin.announce.nobody")
    new = replace(announcement, step=AnnouncementStep.PREVIEW, audience=audience, recipients=count)
    return AnnouncementOutcome(new, (Reply(new.text), _prompt(new, ctx)))


def _preview(
    announcement: Announcement, admin_id: int, event: AnnouncementInput, ctx: AnnouncementContext
) -> AnnouncementOutcome:
    if event != Press("announce.confirm"):
        return _refuse(announcement, ctx, "remind.use_buttons")
    silence = _silenced(ctx)
    if silence is not None:
        return AnnouncementOutcome(announcement, (Reply(silence),))
    if not ctx.second_admin_required:
        return _send(announcement, admin_id, ctx)
    new = replace(announcement, step=AnnouncementStep.AWAITING_SECOND_ADMIN)
    question = _say(
        ctx,
        "admin.announce.second_admin_asked",
        number=str(new.number),
        count=str(new.recipients),
    )
    buttons = (
        (Button(_say(ctx, "admin.announce.button.confirm"), _numbered("announce.confirm", new)),),
        (Button(_say(ctx, "admin.announce.button.cancel"), _numbered("announce.cancel", new)),),
    )
    effects = (
        AskAdmins(Reply(new.text), admin_id),
        AskAdmins(Reply(question, buttons), admin_id),
        Audit(admin_id, "announce.request", _details(new)),
    )
    waiting = Reply(_say(ctx, "admin.announce.second_admin_waiting"))
    return AnnouncementOutcome(new, (waiting,), effects)


def _second_admin(
    announcement: Announcement, admin_id: int, event: AnnouncementInput, ctx: AnnouncementContext
) -> AnnouncementOutcome:
    if event != Press("announce.confirm"):
        return _refuse(announcement, ctx, "remind.use_buttons")
    if admin_id == announcement.requested_by:
        return _refuse(announcement, ctx, "admin.announce.second_admin")
    silence = _silenced(ctx)
    if silence is not None:
        return AnnouncementOutcome(announcement, (Reply(silence),))
    return _send(announcement, admin_id, ctx)


def _send(
    announcement: Announcement, admin_id: int, ctx: AnnouncementContext
) -> AnnouncementOutcome:
    assert announcement.audience is not None  # a preview has its audience
    new = replace(announcement, step=AnnouncementStep.SENDING, confirmed_by=admin_id)
    effects = (
        QueueBroadcast(new.batch, announcement.audience, new.text),
        Audit(admin_id, "announce.send", _details(new)),
    )
    reply = _say(ctx, "admin.announce.sending", count=str(new.recipients))
    return AnnouncementOutcome(new, (Reply(reply),), effects)


def _over(
    announcement: Announcement, admin_id: int, event: AnnouncementInput, ctx: AnnouncementContext
) -> AnnouncementOutcome:
    """Sending, sent or cancelled: only a cancellation while sending does anything."""
    return _refuse(announcement, ctx, f"admin.announce.busy.{announcement.step}")


def _cancel(
    announcement: Announcement, admin_id: int, ctx: AnnouncementContext
) -> AnnouncementOutcome:
    """A draft is discarded by its author, a request by any admin; a sending batch stops."""
    if announcement.step in OVER:
        return _refuse(announcement, ctx, f"admin.announce.busy.{announcement.step}")
    if announcement.step in DRAFT:
        if announcement.requested_by != admin_id:
            return AnnouncementOutcome(
                announcement, (Reply(_say(ctx, "admin.announce.not_yours")),)
            )
        return AnnouncementOutcome(None, (Reply(_say(ctx, "admin.announce.discarded")),))
    new = replace(announcement, step=AnnouncementStep.CANCELLED)
    effects: tuple[AnnouncementEffect, ...] = (Audit(admin_id, "announce.cancel", _details(new)),)
    if announcement.step == AnnouncementStep.SENDING:
        effects = (CancelBroadcast(new.batch), *effects)
    return AnnouncementOutcome(new, (Reply(_say(ctx, "admin.announce.cancelled")),), effects)


def _details(announcement: Announcement) -> str:
    """For the audit log: which batch, to whom, and a hash naming the exact text."""
    digest = hashlib.sha256(announcement.text.encode()).hexdigest()[:16]
    return (
        f"{announcement.batch} audience={announcement.audience}"
        f" recipients={announcement.recipients} text_sha256={digest}"
    )


TABLE: dict[
    AnnouncementStep,
    Callable[[Announcement, int, AnnouncementInput, AnnouncementContext], AnnouncementOutcome],
] = {
    AnnouncementStep.TEXT: _text,
    AnnouncementStep.AUDIENCE: _audience,
    AnnouncementStep.PREVIEW: _preview,
    AnnouncementStep.AWAITING_SECOND_ADMIN: _second_admin,
    AnnouncementStep.SENDING: _over,
    AnnouncementStep.SENT: _over,
    AnnouncementStep.CANCELLED: _over,
}
