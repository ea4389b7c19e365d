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
from conversations.dates import long_datetime
from conversations.model import Participant, QueueEmail, Travel
from storage.ports import TelegramKind, TelegramMessage
from storage.sqlite import SqliteStore, Statement
from storage.sqlite_admin import Place
from storage.telegram_outbox import SqliteTelegramOutbox

BATCH = "draw-result"
_ANSWER_BUTTONS = (("button.accept", "win.accept"), ("button.decline", "win.decline"))


class DrawResults:
    def __init__(
        self,
        store: SqliteStore,
        texts: Catalogue,
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._outbox = SqliteTelegramOutbox(store)
        self._texts = texts
        self._settings = settings
        self._clock = clock
        self._remind_before = timedelta(hours=settings.winner_reminder_hours)

    def respond_by(self, now: datetime) -> datetime:
        """A winner's deadline: counted from the end of an electoral silence, if one is on,
        since their message waits for it."""
        start = self._settings.calendar.silence_ends(now) or now
        return start + timedelta(hours=self._settings.winner_response_hours)

    async def statements(self, places: list[Place], now: datetime) -> list[Statement]:
        """Everything the draw's transaction queues for the entrants, after the places."""
        statements: list[Statement] = []
        winners = sum(place.role == "winner" for place in places)
        for place in places:
            person = await self._store.load(place.user_id) if place.user_id else None
            if person is None or person.entry is None:
                continue  # erased since the freeze: the shell replaces such a winner
            if place.role == "winner":
                statements += self.winner_statements(place, person, now)
            else:
                reserve = self._reserve(place, place.rank - winners, person)
                statements += self._outbox.queue_statements([reserve], now)
        statements.append(self._outbox.not_drawn_statement("draw.result.not_drawn", BATCH, now))
        return statements

    def winner_statements(
        self, place: Place, person: Participant, now: datetime
    ) -> list[Statement]:
        """The winner's message with its buttons, the same by email, and a reminder before the
        deadline unless they answer first."""
        assert place.deadline is not None and person.entry is not None
        language = person.language
        deadline = long_datetime(self._texts, language, place.deadline, self._settings.zone)
        travel = self._travel(language, place)
        params = {
            "first_name": person.first_name or "",
            "ticket": place.ticket,
            "deadline": deadline,
            "travel": travel,
        }
        messages = [
            TelegramMessage(
                key=f"winner:{place.ticket}",
                user_id=person.user_id,
                kind=TelegramKind.DRAW_RESULT,
                language=language,
                text_key="winner.notify",
                params=params,
                buttons=_ANSWER_BUTTONS,
                campaign=True,
                batch=BATCH,
            )
        ]
        remind_at = place.deadline - self._remind_before
        if remind_at > now:
            messages.append(
                TelegramMessage(
                    key=f"deadline-reminder:{place.ticket}",
                    user_id=person.user_id,
                    kind=TelegramKind.DEADLINE_REMINDER,
                    language=language,
                    text_key="winner.deadline_reminder",
                    params={"ticket": place.ticket, "deadline": deadline},
                    buttons=_ANSWER_BUTTONS,
                    campaign=True,
                    not_before=remind_at,
                )
            )
        # To the confirmed address, never one the person typed since.
        email = QueueEmail(
            "winner", person.entry.email, language, tuple(params.items()), f"winner:{place.ticket}"
        )
        return [
            *self._outbox.queue_statements(messages, now),
            *self._store.effect_statements(person.user_id, email, now),
        ]

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

    def _travel(self, language: str, place: Place) -> str:
        travel = place.travel or Travel.NONE
        text = self._texts.render(language, f"travel.{travel}")
        if travel == Travel.TRAIN:
            text += "\n" + self._texts.render(language, "winner.train_how")
        return text
