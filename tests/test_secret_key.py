"""The key of the keyed hashes lives outside the database: a key file made at first start (0600)
or the environment; a former database's key is moved out once; a lost key file stops the bot."""

from __future__ import annotations

import hashlib
import stat
from contextlib import closing
from pathlib import Path

import pytest

from bot.bootstrap import open_migrated_storage
from bot.secret_key import MissingKeyFile, WrongSecretKey, key_file
from bot.settings import Settings
from conversations.confirmation import digest
from storage import migrations, open_storage
from storage.copy import CopyRefused, copy_database
from storage.migrator import migrate, schema_version
from storage.participants import legacy_secret_key
from tests.conftest import NOW, run_sql
from tests.telegram_fakes import FakeBotApi, Updates, running_bot
from tests.test_console import coffeebot
from tests.test_privacy import eventually, mailed_code, mails
from tests.test_telegram import USER_ID, signup_updates


async def test_the_first_start_makes_a_private_key_file_that_later_starts_reuse(
    settings: Settings,
) -> None:
    path = key_file(settings)
    assert path is not None and not path.exists()
    store = await open_migrated_storage(settings, lambda: NOW)
    first = store.participants.address_hash("ami@orange.fr")
    await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) == 64
    store = await open_migrated_storage(settings, lambda: NOW)
    try:
        assert store.participants.address_hash("ami@orange.fr") == first
        assert store.participants.key == path.read_text().strip().encode()
    finally:
        await store.close()


async def test_a_key_from_the_environment_needs_no_file(settings: Settings) -> None:
    keyed = settings.replace(secret_key="a long random string from the vault")
    store = await open_migrated_storage(keyed, lambda: NOW)
    await store.close()
    assert store.participants.key == b"a long random string from the vault"
    path = key_file(keyed)
    assert path is not None and not path.exists()


def test_the_former_name_of_the_key_is_still_read() -> None:
    settings = Settings.from_env({"ADDRESS_HASH_KEY": "kept from last year"})
    assert settings.secret_key == "kept from last year"
    named = Settings.from_env({"ADDRESS_HASH_KEY": "old", "SECRET_KEY": "new"})
    assert named.secret_key == "new"


def test_the_key_file_sits_beside_a_sqlite_file_or_in_the_working_directory() -> None:
    assert key_file(Settings(database_url="sqlite:////srv/cafe/coffeebot.db")) == Path(
        "/srv/cafe/coffeebot.key"
    )
    assert key_file(Settings(database_url="postgresql://db/cafe")) == Path("coffeebot.key")
    chosen = Settings(database_url="postgresql://db/cafe", secret_key_file="/etc/cafe/key")
    assert key_file(chosen) == Path("/etc/cafe/key")
    assert key_file(Settings(database_url="sqlite:///:memory:")) is None


async def former_database(settings: Settings) -> None:
    """A database as the version before 10 left it, with its `secrets` table."""
    former = tuple(m for m in migrations.MIGRATIONS if m.version < 10)
    # Its own patch: undoing the test's would undo the isolation's change of directory too.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("storage.migrator.MIGRATIONS", former)
        patch.setattr("storage.migrator.LATEST_VERSION", former[-1].version)
        old = await open_storage(settings.database_url)
        try:
            await migrate(old.database, NOW)
        finally:
            await old.close()


async def test_a_database_with_its_key_inside_gives_it_to_the_key_file_once(
    settings: Settings,
) -> None:
    await former_database(settings)
    legacy = "9f" * 32
    await run_sql(
        settings.database_url,
        f"INSERT INTO secrets VALUES ('address_hash_key', '{legacy}')",
        "INSERT INTO address_hashes VALUES ('h', 'invited', 'x')",
    )

    store = await open_migrated_storage(settings, lambda: NOW)
    try:
        path = key_file(settings)
        assert path is not None and path.read_text().strip() == legacy
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert store.participants.key == legacy.encode()
        assert await schema_version(store.database) == migrations.LATEST_VERSION
        tables = await store.database.tables()
        assert "secrets" not in tables and "address_hashes" in tables
    finally:
        await store.close()
    # The next start reads the file; the database no longer has a key to give.
    again = await open_migrated_storage(settings, lambda: NOW)
    await again.close()
    assert again.participants.key == legacy.encode()


async def test_a_lost_key_file_stops_the_start_and_says_how_to_restore_it(
    settings: Settings,
) -> None:
    store = await open_migrated_storage(settings, lambda: NOW)
    await store.close()
    await run_sql(settings.database_url, "INSERT INTO address_hashes VALUES ('h', 'invited', 'x')")
    path = key_file(settings)
    assert path is not None
    kept = path.read_text()
    path.unlink()
    with pytest.raises(MissingKeyFile, match="restore it from your backup"):
        await open_migrated_storage(settings, lambda: NOW)
    assert not path.exists()  # no new key was made over the old hashes
    path.write_text(kept)
    path.chmod(0o644)  # as a careless restore leaves it
    restored = await open_migrated_storage(settings, lambda: NOW)
    await restored.close()
    assert restored.participants.key == kept.strip().encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_key_file_that_is_not_the_databases_is_refused(settings: Settings) -> None:
    await former_database(settings)
    await run_sql(settings.database_url, "INSERT INTO secrets VALUES ('address_hash_key', 'a')")
    path = key_file(settings)
    assert path is not None
    path.write_text("another key\n")
    with pytest.raises(MissingKeyFile, match="does not hold the key"):
        await open_migrated_storage(settings, lambda: NOW)


def test_the_command_line_refuses_in_one_line_with_status_2(tmp_path: Path) -> None:
    assert coffeebot(tmp_path, "migrate").returncode == 0
    database = tmp_path / "console.db"
    key = tmp_path / "console.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    import sqlite3

    with closing(sqlite3.connect(database)) as connection, connection:
        connection.execute("INSERT INTO address_hashes VALUES ('h', 'invited', 'x')")
    key.unlink()
    result = coffeebot(tmp_path, "migrate")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert str(key) in result.stderr and "restore it from your backup" in result.stderr


async def test_codes_and_links_are_kept_as_hashes_under_the_key(settings: Settings) -> None:
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(USER_ID, "Zoé")
    async with running_bot(settings, api) as bot:
        await bot.feed(*signup_updates(updates, user))
        await eventually(lambda: bool(mails(settings.mail_outbox_dir, "confirmation")))
    code = mailed_code(settings.mail_outbox_dir)
    path = key_file(settings)
    assert path is not None
    key = path.read_text().strip().encode()
    storage = await open_storage(settings.database_url)
    try:
        [row] = await storage.database.fetch(
            "SELECT confirmation_code_hash FROM participants WHERE user_id = ?", (USER_ID,)
        )
    finally:
        await storage.close()
    assert row[0] == digest(key, code)
    assert row[0] != hashlib.sha256(code.encode()).hexdigest()


async def test_copying_a_database_that_keeps_its_key_inside_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    await former_database(settings)
    await run_sql(settings.database_url, "INSERT INTO secrets VALUES ('address_hash_key', 'k')")
    with pytest.raises(CopyRefused, match="run `coffeebot migrate` on it first"):
        await copy_database(settings.database_url, f"sqlite:///{tmp_path / 'copy.db'}", NOW)
    assert await legacy_secret_key_of(settings) == "k"  # the source was left as it was


async def legacy_secret_key_of(settings: Settings) -> str | None:
    storage = await open_storage(settings.database_url)
    try:
        return await legacy_secret_key(storage.database)
    finally:
        await storage.close()


async def test_another_key_than_the_databases_is_refused(settings: Settings) -> None:
    store = await open_migrated_storage(settings, lambda: NOW)
    await store.close()
    # A replica given its own key, or a mistyped SECRET_KEY, on a database already in use.
    with pytest.raises(WrongSecretKey, match="SECRET_KEY is not the key this database"):
        await open_migrated_storage(settings.replace(secret_key="another key"), lambda: NOW)
    path = key_file(settings)
    assert path is not None
    path.write_text("f" * 64)
    with pytest.raises(WrongSecretKey, match="is not the key this database was used with"):
        await open_migrated_storage(settings, lambda: NOW)


@pytest.mark.parametrize("problem", ["a folder", "not ascii"])
def test_a_key_file_that_cannot_be_used_is_one_line_with_status_2(
    tmp_path: Path, problem: str
) -> None:
    key = tmp_path / "chosen.key"
    if problem == "a folder":
        key.mkdir()
    else:
        key.write_bytes(b"\xff\xfe cl\xe9")
        key.chmod(0o600)
    result = coffeebot(tmp_path, "migrate", env={"SECRET_KEY_FILE": str(key)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"cannot use the key file {key}" in result.stderr
