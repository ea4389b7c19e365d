"""Effects the admin tools ask the shell for, as data: an audit entry, a message to one person."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Audit:
    """An entry in the admins' hash-chained audit log; `details` names tickets, never people."""

    admin_id: int
    action: str
    details: str


@dataclass(frozen=True)
class TellPerson:
    """A message for one person's chat, through the Telegram outbox (`TelegramMessage`): a
    catalogue key and its values, rendered in the wording staff have when it is sent."""

    # Names the message for its purpose: queued twice, sent once.
    key: str
    user_id: int
    language: str
    text_key: str
    params: tuple[tuple[str, str], ...] = ()
