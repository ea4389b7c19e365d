"""What holds across backends and processes: the same schema on SQLite and PostgreSQL,
migrations that wait for one another, each person's steps in turn across two processes, outbox
claims, the flat admin reads, and a whole campaign copied from SQLite to PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bot.admin.exports import write_export
from conversations.admin import statistics
from conversations.model import Action, Area
from storage import Storage, open_storage
from storage.copy import CopyRefused, copy_database
from storage.database import Dialect
from storage.migrator import migrate
from storage.participants import MAIL_CHANNEL
from tests.conftest import NOW
from tests.factories import entered
from tests.test_storage import BACKENDS, backend_url


async def opened(url: str) -> Storage:
    storage = await open_storage(url)
    await migrate(storage.database, NOW)
    storage.participants.use_key(b"key")
    return storage


def normalised(tables: dict[str, list[tuple[str, str, bool]]]) -> dict[str, list[object]]:
    # SQLite keeps the declared type; PostgreSQL names the same types in words.
    return {
        table: [(name, kind.replace("character varying", "text"), not_null)
                for name, kind, not_null in columns]
        for table, columns in tables.items()
    }  # fmt: skip


async def test_migrations_give_the_same_schema_on_sqlite_and_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    lite = await opened(f"sqlite:///{tmp_path / 'a.db'}")
    postgres = await opened(postgres_url)
    try:
        assert postgres.database.dialect is Dialect.POSTGRESQL
        assert normalised(await lite.database.tables()) == normalised(
            await postgres.database.tables()
        )
        assert await lite.database.indexes() == await postgres.database.indexes()
    finally:
        await lite.close()
        await postgres.close()


MIGRATE = (
    "import asyncio, sys; from datetime import datetime, UTC;"
    " from storage import open_storage; from storage.migrator import migrate\n"
    "async def main():\n"
    "    s = await open_storage(sys.argv[1]); await migrate(s.database, datetime.now(UTC));"
    " await s.close()\n"
    "asyncio.run(main())"
)


@pytest.mark.parametrize("backend", ["file", "postgresql"])
def test_processes_starting_together_on_a_new_database_all_migrate_it(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        request.getfixturevalue("postgres_url")
        if backend == "postgresql"
        else f"sqlite:///{tmp_path / 'new.db'}"
    )
    starts = [
        subprocess.Popen([sys.executable, "-c", MIGRATE, url], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for process in starts:
        _, errors = process.communicate(timeout=60)
        assert process.returncode == 0, errors


async def test_one_persons_steps_apply_in_turn_across_two_processes(postgres_url: str) -> None:
    """Two services with pools of their own, the same person's inputs arriving at both at
    once: each step reads the state the one before wrote, none is lost or applied twice."""
    first, second = await opened(postgres_url), await opened(postgres_url)
    try:
        await first.participants.save(entered(1, question=""), 0, [], None, NOW)

        async def step(storage: Storage, token: str) -> None:
            async with storage.participants.serving(1) as store:
                state = await store.load(1)
                assert state is not None
                await asyncio.sleep(0.001)  # the other process tries meanwhile
                changed = replace(state, question=f"{state.question} {token}")
                await store.save(changed, state.version, [], None, NOW)

        tokens = {name: [f"{name}{n}" for n in range(15)] for name in ("a", "b")}

        async def serve(storage: Storage, mine: list[str]) -> None:
            for token in mine:
                await step(storage, token)

        await asyncio.gather(serve(first, tokens["a"]), serve(second, tokens["b"]))
        person = await first.participants.load(1)
        assert person is not None and person.question is not None
        applied = person.question.split()
        assert sorted(applied) == sorted(tokens["a"] + tokens["b"])
        for mine in tokens.values():  # each process's inputs in the order they came
            assert [t for t in applied if t in mine] == mine
        assert person.version == 1 + len(applied)
    finally:
        await first.close()
        await second.close()


async def test_an_email_is_claimed_by_one_sender_of_two(postgres_url: str) -> None:
    first, second = await opened(postgres_url), await opened(postgres_url)
    try:
        woken = asyncio.Event()
        await second.database.on_change(MAIL_CHANNEL, woken.set)
        person = entered(1)
        await first.participants.save(person, 0, [], None, NOW)
        from conversations.model import QueueEmail

        email = QueueEmail("winner", "p1@free.fr", "fr", (), "winner:T1")
        await first.participants.save(person, 1, [email], None, NOW)
        await asyncio.wait_for(woken.wait(), 5)  # LISTEN/NOTIFY: the other process heard
        claims = await asyncio.gather(
            first.outbox.start_sending("winner:T1", NOW, None),
            second.outbox.start_sending("winner:T1", NOW, None),
        )
        assert sorted(claims) == [False, True]
    finally:
        await first.close()
        await second.close()


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    storage = await opened(backend_url(request, tmp_path))
    yield storage  # type: ignore[misc]
    await storage.close()


async def test_the_admin_reads_come_from_queries(store: Storage, tmp_path: Path) -> None:
    people = [
        entered(1, ticket="TK2", actions=frozenset({Action.LEAFLETS, Action.EVENTS})),
        entered(2, ticket="TK1", question="Et le train ?"),
        entered(3, ticket="TK3"),
        entered(4, entry=None, completed_at=None),
    ]
    for person in people:
        await store.participants.save(person, 0, [], None, NOW)
    assert await store.draws.exclude("TK3", "duplicate")
    entries = await store.draws.entries()
    assert entries.tickets == ["TK1", "TK2"]
    assert entries.excluded == [("TK3", "duplicate")]
    holders = await store.draws.holders(["TK1"])
    assert holders["TK1"].user_id == 2
    stats = await store.reports.statistics()
    assert (stats.started, stats.completed, stats.confirmed, stats.eligible) == (4, 3, 3, 2)
    assert (stats.engaged["leaflets"], stats.engaged["events"], stats.engaged["share_online"]) == (
        1,
        1,
        0,
    )
    assert await store.reports.questions(10) == [("69003", "Et le train ?")]
    path = tmp_path / "export.csv"
    assert await write_export(store, path) == 3
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("\ufeffticket;") and len(lines) == 4


async def test_a_campaign_moves_from_sqlite_to_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    source_url = f"sqlite:///{tmp_path / 'campaign.db'}"
    source = await opened(source_url)
    for user_id in range(1, 6):
        await source.participants.save(entered(user_id, ticket=f"TK{user_id}"), 0, [], None, NOW)
    await source.audit.log(9, "stats", "", NOW)
    await source.close()
    counts = await copy_database(source_url, postgres_url, NOW)
    assert counts["participants"] == 5 and counts["entries"] == 5 and counts["audit_log"] == 1
    target, again = await opened(postgres_url), await opened(source_url)
    try:
        assert (await target.draws.entries()).tickets == [f"TK{n}" for n in range(1, 6)]
        assert await target.participants.load(3) == await again.participants.load(3)
    finally:
        await target.close()
        await again.close()
    with pytest.raises(CopyRefused, match="not empty"):
        await copy_database(source_url, postgres_url, NOW)


async def test_the_sql_statistics_agree_with_the_cores(store: Storage) -> None:
    """conversations.admin.statistics is the specification; /stats computes it in SQL."""
    people = [
        entered(1, ticket="TK1", referral_code="R1", friends_invited=3),
        entered(2, ticket="TK2", referrer="R1", actions=frozenset({Action.LEAFLETS})),
        entered(3, ticket=None, referrer="nobody", area=Area.PARIS, departement="75"),
        entered(4, entry=None, completed_at=None),
        entered(5, entry=None),
    ]
    for person in people:
        await store.participants.save(person, 0, [], None, NOW)
    loaded = [await store.participants.load(person.user_id) for person in people]
    expected = statistics([person for person in loaded if person is not None])
    assert await store.reports.statistics() == expected
