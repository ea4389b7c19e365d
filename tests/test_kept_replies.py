"""The kept replies' progress on every backend: what several steps note at once is written
together (a group commit, one round trip on a server), each caller returning once its own
progress is committed; the replies go once all have left, and a failed write fails its callers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.kept_replies import KeptReplies, KeptStep, encode
from conversations.model import Reply
from storage import Storage, open_storage
from storage.database import Statement
from storage.migrator import migrate
from tests.conftest import NOW
from tests.test_storage import BACKENDS, backend_url

STEP = KeptStep((Reply("Bonjour Zoé"), Reply("Votre adresse\u202f?")))


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await open_storage(backend_url(request, tmp_path))
    await migrate(opened.database, NOW)
    yield opened
    await opened.close()


@pytest.fixture
async def kept(store: Storage) -> AsyncIterator[KeptReplies]:
    for update_id in range(1, 6):
        await store.database.run(
            [
                (
                    "INSERT INTO processed_updates (update_id, processed_at, replies)"
                    " VALUES (?, '2026-11-27T10:00:00+00:00', ?)",
                    (update_id, encode(STEP)),
                )
            ]
        )
    yield KeptReplies(store.database)


async def rows(store: Storage) -> list[tuple[int, int, bool]]:
    found = await store.database.fetch(
        "SELECT update_id, replies_sent, replies IS NULL FROM processed_updates ORDER BY 1"
    )
    return [(row[0], row[1], bool(row[2])) for row in found]


def counted(store: Storage, monkeypatch: pytest.MonkeyPatch, fail: int = 0) -> list[int]:
    """Each write's statement count, in order; the first `fail` writes fail."""
    writes: list[int] = []
    run = store.database.run

    async def counting(statements: Sequence[Statement], *args: Any, **kwargs: Any) -> list[int]:
        writes.append(len(statements))
        if len(writes) <= fail:
            raise ConnectionResetError("the server went away")
        return await run(statements, *args, **kwargs)

    monkeypatch.setattr(store.database, "run", counting)
    return writes


async def test_progress_noted_together_is_one_write_and_forgets_only_what_has_all_left(
    store: Storage,
    kept: KeptReplies,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes = counted(store, monkeypatch)
    await asyncio.gather(
        kept.sent(1, 1), kept.sent(2, 2, done=True), kept.sent(3, 1), kept.sent(4, 2, done=True)
    )
    assert len(writes) == 1
    assert await rows(store) == [
        (1, 1, False),
        (2, 2, True),
        (3, 1, False),
        (4, 2, True),
        (5, 0, False),
    ]
    assert await kept.unsent(1) == (STEP, 1) and await kept.unsent(2) is None
    # Alone, as before: one statement.
    await kept.sent(5, 2, done=True)
    assert writes == [writes[0], 1] and await kept.unsent(5) is None


async def test_progress_noted_while_a_write_is_on_its_way_goes_in_the_next_one(
    store: Storage,
    kept: KeptReplies,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes = counted(store, monkeypatch)
    first = asyncio.create_task(kept.sent(1, 2, done=True))
    await asyncio.sleep(0)  # the first write has left
    await asyncio.gather(kept.sent(2, 1), kept.sent(3, 2, done=True), first)
    assert len(writes) == 2
    assert (await rows(store))[:3] == [(1, 2, True), (2, 1, False), (3, 2, True)]


async def test_a_failed_write_fails_its_callers_and_the_next_one_writes(
    store: Storage,
    kept: KeptReplies,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted(store, monkeypatch, fail=1)
    failed = await asyncio.gather(
        kept.sent(1, 2, done=True), kept.sent(2, 1), return_exceptions=True
    )
    assert [type(error) for error in failed] == [ConnectionResetError, ConnectionResetError]
    assert (await rows(store))[:2] == [(1, 0, False), (2, 0, False)]  # nothing counted as left
    await kept.sent(1, 2, done=True)
    assert (await rows(store))[0] == (1, 2, True)


async def test_a_caller_cancelled_while_waiting_leaves_the_write_to_finish(
    store: Storage,
    kept: KeptReplies,
) -> None:
    waiting = asyncio.create_task(kept.sent(1, 2, done=True))
    await asyncio.sleep(0)
    waiting.cancel()
    await kept.sent(2, 1)  # written after the first one's write
    assert (await rows(store))[:2] == [(1, 2, True), (2, 1, False)]
