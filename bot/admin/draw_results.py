"""What each entrant is told once the draw is done, queued in the transaction that records it.

Every entrant hears their own result exactly once, through the Telegram outbox: winners with
their deadline and buttons (and an email), reserves with their rank, everyone else with thanks
and what they can still do. Each message is keyed by its ticket, so a retry queues nothing new.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from bot.settings import Settings
from conversations.catalogue import Catalogue
from conversations.model import Participant
from conversations.winners import BATCH, Place, Role, notice, respond_by
from storage import Storage
from storage.database import Statement
from storage.ports import TelegramKind, TelegramMessage

__all__ = ["BATCH", "DrawResults"]


class DrawResults:
    def __init__(
        self,
        storage: Storage,
        texts: Catalogue,
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self._storage = storage
        self._texts = texts
        self._settings = settings
        self._clock = clock
        self._remind_before = timedelta(hours=settings.winner_reminder_hours)

    def respond_by(self, now: datetime) -> datetime:
        silence_ends = self._settings.calendar.silence_ends(now)
        return respond_by(silence_ends, now, self._settings.winner_response_hours)

    async def statements(self, places: list[Place], now: datetime) -> list[Statement]:
        """Everything the draw's transaction queues for the entrants, after the places."""
        statements: list[Statement] = []
        winners = sum(place.role == Role.WINNER for place in places)
        telegram = self._storage.telegram
        for place in places:
            person = await self._person(place)
            if person is None:
                continue  # erased since the freeze: the shell replaces such a winner
            if place.role == Role.WINNER:
                statements += self.winner_statements(place, person, now)
            else:
                reserve = self._reserve(place, place.rank - winners, person)
                statements += telegram.queue_statements([reserve], now)
        statements.append(telegram.not_drawn_statement("draw.result.not_drawn", BATCH, now))
        return statements

    async def _person(self, place: Place) -> Participant | None:
        """The place's holder, if still entered."""
        person = await self._storage.participants.load(place.user_id) if place.user_id else None
        return person if person is not None and person.entry is not None else None

    def winner_statements(
        self, place: Place, person: Participant, now: datetime
    ) -> list[Statement]:
        """The winner's message with its buttons, the same by email, and a reminder before the
        deadline unless they answer first: for the transaction that makes them a winner."""
        told = notice(place, person, self._texts, self._settings.zone, self._remind_before, now)
        participants = self._storage.participants
        return [
            *self._storage.telegram.queue_statements(told.messages, now),
            *participants.effect_statements(person.user_id, told.email, now),
            *participants.mail_queued(),
        ]

    async def promotion_statements(self, place: Place, now: datetime) -> list[Statement] | None:
        """What a promoted reserve is sent, for the promotion's transaction; None when they are
        no longer entered (the shell then replaces them in turn)."""
        person = await self._person(place)
        return self.winner_statements(place, person, now) if person is not None else None

    def _reserve(self, place: Place, rank: int, person: Participant) -> TelegramMessage:
        return TelegramMessage(
            key=f"draw-result:{place.ticket}",
            user_id=person.user_id,
            kind=TelegramKind.DRAW_RESULT,
            language=person.language,
            text_key="draw.result.reserve",
            params={"ticket": place.ticket, "rank": str(rank)},
            campaign=True,
            batch=BATCH,
        )
