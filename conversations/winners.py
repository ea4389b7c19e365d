"""The winners' lifecycle after the draw, as pure decisions: notify, accept, decline, the
deadline, promote the next reserve, replace by hand. Each returns what is to change, and the
shell writes it in one transaction with the messages and emails it queues."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from conversations.addenda import ReplacementReason, next_addendum
from conversations.catalogue import Catalogue
from conversations.dates import long_datetime
from conversations.model import Area, Participant, QueueEmail, Travel
from conversations.outgoing import TelegramKind, TelegramMessage

# The batch of the draw's results, for progress counts.
BATCH = "draw-result"
ANSWER_BUTTONS = (("button.accept", "win.accept"), ("button.decline", "win.decline"))


class Role(StrEnum):
    WINNER = "winner"
    RESERVE = "reserve"


class PlaceStatus(StrEnum):
    WAITING = "waiting"  # a reserve not (yet) promoted
    NOTIFIED = "notified"  # a winner told, with a deadline to answer
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"  # the deadline passed unanswered
    REPLACED = "replaced"  # by an admin, or because the person was erased


class Answer(StrEnum):
    ACCEPT = "win.accept"
    DECLINE = "win.decline"


@dataclass(frozen=True)
class Place:
    ticket: str
    rank: int
    role: Role
    status: PlaceStatus
    user_id: int | None
    deadline: datetime | None
    # The entry's area class and what it entitled to when the draw was made: later edits of the
    # postcode or of the settings change neither.
    area: Area | None = None
    travel: Travel | None = None


@dataclass(frozen=True)
class PlaceChange:
    """One place moves from the status it was read in to `status`; refused if it moved since."""

    place: Place
    status: PlaceStatus


@dataclass(frozen=True)
class Replacement:
    """A winner's place ends, the next reserve (if any) becomes a winner with a deadline, and
    the public addendum says so."""

    ended: PlaceChange
    # The reserve as read (the change is guarded by it), and as it becomes.
    reserve: Place | None
    promoted: Place | None
    addendum: dict[str, Any]


@dataclass(frozen=True)
class Refused:
    """No answer is expected from this person: `text_key` says why."""

    text_key: str


@dataclass(frozen=True)
class Notice:
    """What a winner is sent: the message with its buttons, a reminder, the same by email."""

    messages: tuple[TelegramMessage, ...]
    email: QueueEmail


def answer(places: Sequence[Place], user_id: int, key: str, now: datetime) -> Refused | PlaceChange:
    """A winner's tap on accept or decline: the change to their place, or why not."""
    mine = [p for p in places if p.user_id == user_id and p.role == Role.WINNER]
    pending = [p for p in mine if p.status == PlaceStatus.NOTIFIED]
    late = any(p.status == PlaceStatus.EXPIRED for p in mine) or any(
        p.deadline and now > p.deadline for p in pending
    )
    if late:
        return Refused("winner.too_late")
    if not pending or key not in set(Answer):
        return Refused("winner.no_answer_expected")
    accepted = key == Answer.ACCEPT
    return PlaceChange(pending[0], PlaceStatus.ACCEPTED if accepted else PlaceStatus.DECLINED)


def overdue(places: Sequence[Place], now: datetime) -> list[PlaceChange]:
    """The winners whose deadline passed unanswered."""
    return [
        PlaceChange(place, PlaceStatus.EXPIRED)
        for place in places
        if place.status == PlaceStatus.NOTIFIED and place.deadline and now > place.deadline
    ]


def replaceable(place: Place | None) -> str | None:
    """Why an admin cannot replace this place by hand (a catalogue key), or None."""
    if place is not None and place.role == Role.RESERVE:
        return "admin.replace.reserve"
    if place is None or place.status not in (PlaceStatus.NOTIFIED, PlaceStatus.ACCEPTED):
        return "admin.replace.not_a_winner"
    return None


def replacement(
    ended: PlaceChange,
    reason: ReplacementReason,
    places: Sequence[Place],
    certificate: Mapping[str, Any],
    addenda: Sequence[Mapping[str, Any]],
    deadline: datetime,
    now: datetime,
) -> Replacement:
    """The next reserve in the certificate's order is promoted, with a deadline to answer."""
    waiting = (p for p in places if p.role == Role.RESERVE and p.status == PlaceStatus.WAITING)
    reserve = next(waiting, None)
    promoted = (
        replace(reserve, role=Role.WINNER, status=PlaceStatus.NOTIFIED, deadline=deadline)
        if reserve
        else None
    )
    addendum = next_addendum(
        certificate, addenda, ended.place.ticket, reason, reserve.ticket if reserve else None, now
    )
    return Replacement(ended, reserve, promoted, addendum)


def respond_by(silence_ends: datetime | None, now: datetime, hours: int) -> datetime:
    """A winner's deadline: counted from the end of an electoral silence, if one is on, since
    their message waits for it."""
    return (silence_ends or now) + timedelta(hours=hours)


def notice(
    place: Place,
    person: Participant,
    texts: Catalogue,
    zone: tzinfo,
    remind_before: timedelta,
    now: datetime,
) -> Notice:
    """The winner's message with its buttons, the same by email to the confirmed address, and a
    reminder before the deadline unless they answer first."""
    assert place.deadline is not None and person.entry is not None
    language = person.language
    deadline = long_datetime(texts, language, place.deadline, zone)
    travel = place.travel or Travel.NONE
    travel_text = texts.render(language, f"travel.{travel}")
    if travel == Travel.TRAIN:
        travel_text += "\n" + texts.render(language, "winner.train_how")
    params = {
        "first_name": person.first_name or "",
        "ticket": place.ticket,
        "deadline": deadline,
        "travel": travel_text,
    }
    messages = [
        TelegramMessage(
            key=f"winner:{place.ticket}",
            user_id=person.user_id,
            kind=TelegramKind.DRAW_RESULT,
            language=language,
            text_key="winner.notify",
            params=params,
            buttons=ANSWER_BUTTONS,
            campaign=True,
            batch=BATCH,
        )
    ]
    remind_at = place.deadline - remind_before
    if remind_at > now:
        messages.append(
            TelegramMessage(
                key=f"deadline-reminder:{place.ticket}",
                user_id=person.user_id,
                kind=TelegramKind.DEADLINE_REMINDER,
                language=language,
                text_key="winner.deadline_reminder",
                params={"ticket": place.ticket, "deadline": deadline},
                buttons=ANSWER_BUTTONS,
                campaign=True,
                not_before=remind_at,
            )
        )
    # To the confirmed address, never one the person typed since.
    email = QueueEmail(
        "winner", person.entry.email, language, tuple(params.items()), f"winner:{place.ticket}"
    )
    return Notice(tuple(messages), email)
