"""A step's replies kept with its processed-update record until they have all left.

Telegram retries a webhook update until it gets a 2xx, and the bot answers 2xx only once the
replies have left. If the process dies after the step's commit, the retry finds the update
processed (DuplicateUpdate) and sends the replies that had not left, so none is lost and none
is sent again — but for the one in flight at the kill, which may have left: it is sent again
(a repeated message beats a person left without their next question).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conversations.model import Button, Reply
from storage.database import Database

_UNSENT = "SELECT replies, replies_sent FROM processed_updates WHERE update_id = ?"
_PROGRESS = "UPDATE processed_updates SET replies_sent = ? WHERE update_id = ?"
# Replies quote what the person gave (their address, their name): gone once all have left.
_DONE = "UPDATE processed_updates SET replies_sent = ?, replies = NULL WHERE update_id = ?"


@dataclass(frozen=True)
class KeptStep:
    """What a step has to send: its replies, then the person's data file when asked."""

    replies: tuple[Reply, ...]
    personal_data: bool = False

    @property
    def items(self) -> int:
        return len(self.replies) + int(self.personal_data)


def encode(step: KeptStep) -> str:
    replies = [
        {
            "text": reply.text,
            "buttons": [[[b.label, b.key] for b in row] for row in reply.buttons],
            "contact": reply.contact_button,
            "replaces": reply.replaces_pressed,
        }
        for reply in step.replies
    ]
    return json.dumps({"replies": replies, "personal_data": step.personal_data})


def decode(raw: str) -> KeptStep:
    data: dict[str, Any] = json.loads(raw)
    return KeptStep(
        tuple(
            Reply(
                reply["text"],
                tuple(tuple(Button(label, key) for label, key in row) for row in reply["buttons"]),
                reply["contact"],
                reply["replaces"],
            )
            for reply in data["replies"]
        ),
        bool(data["personal_data"]),
    )


class KeptReplies:
    """Reads and advances the kept replies."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def unsent(self, update_id: int) -> tuple[KeptStep, int] | None:
        """The update's kept step and how many of its items already left; None if none kept."""
        rows: Sequence[Any] = await self._database.fetch(_UNSENT, (update_id,))
        if not rows or rows[0][0] is None:
            return None
        return decode(rows[0][0]), int(rows[0][1])

    async def sent(self, update_id: int, items: int, done: bool = False) -> None:
        """Record that the first `items` items of the update have left; when that is all of
        them (`done`), the replies are forgotten."""
        await self._database.run([(_DONE if done else _PROGRESS, (items, update_id))])
