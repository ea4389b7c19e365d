from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.settings import Settings
from bot.texts import load_catalogue
from conversations.catalogue import Catalogue
from conversations.model import Profile
from conversations.policy import Context, Secrets

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
SECRETS = Secrets(
    token="Tok3n-for_the-tests-22", code="123456", referral_code="REFcode1", ticket="TKT0000001"
)


# Read from the environment by the bot: none of the caller's may reach a test.
CALLER_SETTINGS = {field.name.upper() for field in fields(Settings)} | {"COFFEEBOT_ENV_FILE"}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test runs in its own folder with none of the caller's bot settings, so that an
    exported SMTP_URL sends no real mail and nothing lands in the working tree."""
    for name in CALLER_SETTINGS & set(os.environ):
        monkeypatch.delenv(name)
    monkeypatch.setenv("COFFEEBOT_ENV_FILE", str(tmp_path / "no.env"))
    monkeypatch.setenv("MAIL_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.chdir(tmp_path)
    yield


# The local server this machine kind runs (trust authentication); each session makes a database
# of its own there and drops it at the end.
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"
# `COFFEEBOT_TEST_DATABASE=postgresql` runs every test that takes `settings` on PostgreSQL.
ON_POSTGRES = os.environ.get("COFFEEBOT_TEST_DATABASE") == "postgresql"
_schemas = itertools.count(1)


def _execute(url: str, sql: str) -> None:
    """One statement, on a thread and loop of its own: fixtures may ask from inside a loop."""

    async def run() -> None:
        import asyncpg

        connection = await asyncpg.connect(url, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """This session's own database on the local server; skipped, with the reason shown, when
    there is no server, except under CI=true where that fails the run."""
    name = f"coffeebot_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        _execute(f"{POSTGRES_SERVER}/postgres", f"CREATE DATABASE {name}")
    except (OSError, ImportError) as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but no PostgreSQL at {POSTGRES_SERVER}: {error}")
        pytest.skip(f"no PostgreSQL server at {POSTGRES_SERVER} ({error})")
    yield f"{POSTGRES_SERVER}/{name}"
    _execute(f"{POSTGRES_SERVER}/postgres", f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """An empty schema of its own in the session's database, for one test."""
    schema = f"t{next(_schemas)}"
    _execute(postgres_database, f"CREATE SCHEMA {schema}")
    return f"{postgres_database}?search_path={schema}"


@pytest.fixture
def database_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if ON_POSTGRES:
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'coffeebot.db'}"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        telegram_bot_token="123456:TEST",
        database_url=database_url,
        mail_outbox_dir=str(tmp_path / "outbox"),
        telegram_max_messages_per_second=10_000,
        # Tests type far faster than people; the flood test sets its own limit.
        flood_max_messages=1_000,
    )


@pytest.fixture
def texts(settings: Settings) -> Catalogue:
    return load_catalogue(settings)


@pytest.fixture
def ctx(settings: Settings, texts: Catalogue) -> Context:
    profile = Profile("Zoé", "Martin", "fr")
    return Context(
        NOW,
        profile,
        texts,
        settings.limits,
        settings.travel,
        SECRETS,
        "coffee_test_bot",
        calendar=settings.calendar,
        zone=settings.zone,
        hash_key=b"the key of the tests",
    )


async def run_sql(url: str, *statements: str) -> None:
    """Statements run on the database behind the bot, whichever it is: to set up or tamper."""
    from storage import open_database

    database = await open_database(url)
    try:
        await database.run([(statement, ()) for statement in statements])
    finally:
        await database.close()


async def dump(url: str) -> str:
    """Every row of every table, as text: to look for what must, or must not, be stored."""
    from storage import open_database

    database = await open_database(url)
    try:
        tables = await database.tables()
        rows = [row for table in tables for row in await database.fetch(f"SELECT * FROM {table}")]
    finally:
        await database.close()
    return "\n".join(str(tuple(row)) for row in rows)
