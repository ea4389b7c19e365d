"""Messages for a person's Telegram chat, decided by the core and queued by the shell in the
transaction that decides them (the Telegram outbox)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class TelegramKind(StrEnum):
    """What a message queued for a person's chat is about."""

    DRAW_RESULT = "draw-result"
    DEADLINE_REMINDER = "deadline-reminder"
    ANNOUNCEMENT = "announcement"
    EXPENSE_REQUEST = "expense-request"
    EXPENSE_PAID = "expense-paid"
    EXPENSE_REFUSED = "expense-refused"


@dataclass(frozen=True)
class TelegramMessage:
    """A message for one person's chat, kept as a catalogue key and the values it needs: the
    text is rendered when it is sent, in the wording staff have then."""

    # Names the message for its purpose, e.g. `draw-result:{ticket}`: queued twice, sent once.
    key: str
    user_id: int
    kind: TelegramKind
    language: str
    text_key: str
    params: Mapping[str, str] = field(default_factory=dict)
    # Each (catalogue key of the label, callback data) pair is a button on its own row.
    buttons: tuple[tuple[str, str], ...] = ()
    # Campaign messages wait out electoral silence; direct answers to a person do not.
    campaign: bool = False
    not_before: datetime | None = None
    # Groups messages for progress counts and cancelling, e.g. 'draw-result' or 'announce:17'.
    batch: str | None = None
