"""A step's replies kept with its processed-update record until they have all left.

Telegram retries a webhook update until it gets a 2xx, and the bot answers 2xx only once the
replies have left. If the process dies after the step's commit, the retry finds the update
processed (DuplicateUpdate) and sends the replies that had not left, so none is lost and none
is sent again — but for the one in flight at the kill, which may have left: it is sent again
(a repeated message beats a person left without their next question).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conversations.model import Button, Reply
from storage.database import Database, Dialect, Statement

_UNSENT = "SELECT replies, replies_sent FROM processed_updates WHERE update_id = ?"
_PROGRESS = "UPDATE processed_updates SET replies_sent = ? WHERE update_id = ?"
# Replies quote what the person gave (their address, their name): gone once all have left.
_DONE = "UPDATE processed_updates SET replies_sent = ?, replies = NULL WHERE update_id = ?"
# Several updates' progress in one statement whose text does not depend on how many (a server
# prepares it once): the arrays hold each update's id, items sent, and whether that was all.
_PROGRESS_OF_MANY = (
    "UPDATE processed_updates AS p SET replies_sent = v.sent,"
    " replies = CASE WHEN v.done THEN NULL ELSE p.replies END"
    " FROM unnest(CAST(? AS BIGINT[]), CAST(? AS INTEGER[]), CAST(? AS BOOLEAN[]))"
    " AS v(update_id, sent, done) WHERE p.update_id = v.update_id"
)


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


@dataclass(frozen=True)
class _Progress:
    update_id: int
    items: int
    done: bool
    written: asyncio.Future[None]


class KeptReplies:
    """Reads and advances the kept replies.

    Progress is written as a group commit: what the steps of every person note while one write
    is on its way goes in the next write, one statement and one round trip for all of them
    (on PostgreSQL, where a write waits for the server). Each caller still returns only once
    its own progress is committed, so a reply is never counted as left before it has, nor the
    next one sent before the previous one is recorded."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._waiting: list[_Progress] = []
        self._writer: asyncio.Task[None] | None = None

    async def unsent(self, update_id: int) -> tuple[KeptStep, int] | None:
        """The update's kept step and how many of its items already left; None if none kept."""
        rows: Sequence[Any] = await self._database.fetch(_UNSENT, (update_id,))
        if not rows or rows[0][0] is None:
            return None
        return decode(rows[0][0]), int(rows[0][1])

    async def sent(self, update_id: int, items: int, done: bool = False) -> None:
        """Record that the first `items` items of the update have left; when that is all of
        them (`done`), the replies are forgotten."""
        written = asyncio.get_running_loop().create_future()
        self._waiting.append(_Progress(update_id, items, done, written))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        # Shielded: a caller cancelled meanwhile leaves the group's write to finish.
        await asyncio.shield(written)

    async def _write(self) -> None:
        """Write what waits, then what came meanwhile, until nothing waits."""
        group: list[_Progress] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    await self._database.run(self._statements(group))
                except Exception as error:
                    for progress in group:
                        if not progress.written.done():
                            progress.written.set_exception(error)
                else:
                    for progress in group:
                        if not progress.written.done():
                            progress.written.set_result(None)
        except BaseException:
            # Cancelled (the loop closing): nobody is left waiting for a write that will not come.
            for progress in [*group, *self._waiting]:
                progress.written.cancel()
            self._waiting = []
            raise
        finally:
            self._writer = None

    def _statements(self, group: Sequence[_Progress]) -> list[Statement]:
        if len(group) > 1 and self._database.dialect is Dialect.POSTGRESQL:
            ids, items, done = zip(*((p.update_id, p.items, p.done) for p in group), strict=True)
            return [(_PROGRESS_OF_MANY, (list(ids), list(items), list(done)))]
        return [((_DONE if p.done else _PROGRESS), (p.items, p.update_id)) for p in group]
