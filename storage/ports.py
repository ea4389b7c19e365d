"""What the shell needs from persistence, whatever the database behind it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from conversations.model import Effect, Participant

# Re-exported: the stores' callers name them from here.
from conversations.outgoing import TelegramKind as TelegramKind
from conversations.outgoing import TelegramMessage as TelegramMessage
from conversations.phases import OperationState
from conversations.quotas import Usage


class StaleWrite(Exception):
    """The participant changed since it was loaded: the save would overwrite a newer state."""


class DuplicateUpdate(Exception):
    """This platform update was already processed: acting on it again would act twice."""


class ContactTaken(Exception):
    """Another account already has this phone number, as the platform vouched, or has
    confirmed this email address."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class NewerSchemaError(Exception):
    """The database was migrated by a newer version of the bot than this one."""


@dataclass(frozen=True)
class OutboxEmail:
    key: str
    kind: str
    recipient: str
    language: str
    params: dict[str, str]
    attempts: int


class Outbox(Protocol):
    """The emails waiting to be sent, written by the same transactions as the steps."""

    async def due(
        self, now: datetime, limit: int, only_kinds: Collection[str] | None = None
    ) -> list[OutboxEmail]:
        """Up to `limit` emails due for sending, oldest first; only of `only_kinds` if given."""
        ...

    async def start_sending(self, key: str, now: datetime, sent_before: str | None) -> bool:
        """Mark one email as leaving now, and `sent_before` as sent, in one transaction;
        False, changing nothing, when the email is no longer waiting (cancelled)."""
        ...

    async def mark_sent(self, key: str, now: datetime) -> None: ...

    async def retry_later(self, key: str, attempts: int, at: datetime, error: str) -> None: ...

    async def mark_failed(self, key: str, attempts: int, error: str) -> None: ...

    async def kept(self, keys: list[str]) -> set[str]:
        """Which of these keys still have a row."""
        ...

    async def mark_interrupted(self) -> int:
        """After a crash, give up the emails that were leaving: they may have left, and sending
        them again could send them twice."""
        ...


class ParticipantStore(Protocol):
    def serving(self, user_id: int) -> AbstractAsyncContextManager[ParticipantStore]:
        """This store within one person's turn: whoever else serves them, in this process or
        another, waits until the block commits."""
        ...

    @property
    def key(self) -> bytes:
        """The secret key of the keyed hashes (codes, links, addresses)."""
        ...

    async def load(self, user_id: int) -> Participant | None: ...

    async def load_for_step(self, user_id: int) -> tuple[Participant | None, OperationState]:
        """The person's state and the operation's, read together."""
        ...

    async def usage(self, state: Participant | None, user_id: int, now: datetime) -> Usage:
        """The quota counts a step on `state` may need (conversations/quotas.py)."""
        ...

    async def operation(self) -> OperationState:
        """Whether an admin closed entries early, and whether the draw is done."""
        ...

    async def save(
        self,
        state: Participant,
        expected_version: int,
        effects: Sequence[Effect],
        update_id: int | None,
        now: datetime,
        replies: str | None = None,
        before: Participant | None = None,
    ) -> int:
        """Write the state and its effects in one transaction; return the new version.

        `replies` (the shell's encoding of the step's replies) is kept with the update's id.
        `before`, the state as loaded for this version: friends and entry rows equal to its own
        are not written again.

        Raises StaleWrite, DuplicateUpdate or ContactTaken, having written nothing.
        """
        ...

    async def mark_processed(
        self,
        update_id: int | None,
        now: datetime,
        replies: str | None = None,
        unblock: int | None = None,
    ) -> None:
        """Record an update that changed nothing; raises DuplicateUpdate if it was seen."""
        ...

    async def export(self, user_id: int) -> dict[str, Any]:
        """Everything stored about one person, as JSON-ready data."""
        ...


class TelegramStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    # The person blocked the bot: never tried again.
    BLOCKED = "blocked"
    FAILED = "failed"
    # The bot stopped while sending it: it may have been delivered, so it is not sent again.
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class QueuedTelegram:
    message: TelegramMessage
    attempts: int


class TelegramOutbox(Protocol):
    """The messages waiting for people's chats, written by the transactions that decide them."""

    async def due(self, now: datetime, limit: int, hold_campaign: bool) -> list[QueuedTelegram]:
        """Up to `limit` messages due by `now`, oldest first; no campaign message if held."""
        ...

    async def start_sending(self, key: str) -> bool:
        """Mark one message as leaving; False, changing nothing, when it is no longer waiting
        (cancelled, or its person erased)."""
        ...

    async def mark_sent(self, key: str, now: datetime) -> None: ...

    async def mark_blocked(self, key: str, attempts: int, now: datetime | None = None) -> None:
        """Give the message up; with `now`, remember that the person blocked the bot."""
        ...

    async def retry_later(self, key: str, attempts: int, at: datetime, error: str) -> None: ...

    async def mark_failed(self, key: str, attempts: int, error: str) -> None: ...
