"""What the shell needs from persistence, whatever the database behind it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from conversations.model import Effect, Participant


class StaleWrite(Exception):
    """The participant changed since it was loaded: the save would overwrite a newer state."""


class DuplicateUpdate(Exception):
    """This platform update was already processed: acting on it again would act twice."""


class ContactTaken(Exception):
    """Another account already uses this phone number or email address."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class NewerSchemaError(Exception):
    """The database was migrated by a newer version of the bot than this one."""


class ParticipantStore(Protocol):
    async def load(self, user_id: int) -> Participant | None: ...

    async def save(
        self,
        state: Participant,
        expected_version: int,
        effects: Sequence[Effect],
        update_id: int | None,
    ) -> int:
        """Write the state and its effects in one transaction; return the new version.

        Raises StaleWrite, DuplicateUpdate or ContactTaken, having written nothing.
        """
        ...

    async def mark_processed(self, update_id: int, now: datetime) -> None:
        """Record an update that changed nothing; raises DuplicateUpdate if it was seen."""
        ...

    async def export(self, user_id: int) -> dict[str, Any]:
        """Everything stored about one person, as JSON-ready data."""
        ...
