"""Effects the admin tools ask the shell for, as data: an audit entry, a message to one person."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Audit:
    """An entry in the admins' hash-chained audit log; `details` names tickets, never people,
    and stays as long as the log. `note` is what the admin typed freely (a reason, a
    reference), which may name someone: erased with the person of `ticket`, and by the purge."""

    admin_id: int
    action: str
    details: str
    note: str = ""
    ticket: str | None = None


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
