"""The key of every keyed hash (addresses, confirmation codes and links): from the environment
(`SECRET_KEY`) or a key file, never from the database it protects.

The key file is created at first start, mode 0600. A database made before the key file keeps its
key in a `secrets` table: it is moved to the file once, and migration 10 then drops the table.
A database that holds hashes with no key to check them is refused: new hashes under a new key
would silently stop matching every old one (invitations, unsubscriptions, pending codes).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bot.settings import Settings, SettingsError
from storage import sqlite_path
from storage.database import Database
from storage.participants import holds_hashes, key_matches, legacy_secret_key

log = logging.getLogger(__name__)
T = TypeVar("T")

# For PostgreSQL, in the working directory (the state directory of the service).
POSTGRES_KEY_FILE = "coffeebot.key"


class MissingKeyFile(SettingsError):
    """The database holds hashes made with a key that is nowhere to be found."""


class WrongSecretKey(SettingsError):
    """The key found is not the one the database was used with."""


async def check_secret_key(settings: Settings, database: Database, key: bytes) -> None:
    """Refuses a key other than the one the (migrated) database was first used with."""
    if not await key_matches(database, key):
        where = "SECRET_KEY" if settings.secret_key else f"the key file {key_file(settings)}"
        raise WrongSecretKey(
            f"{where} is not the key this database was used with: restore the right one"
            " (every replica needs the same SECRET_KEY), then start again"
        )


def key_file(settings: Settings) -> Path | None:
    """Where the key is kept: SECRET_KEY_FILE, else beside a SQLite file, else in the working
    directory; None for an in-memory database, whose hashes die with it."""
    if settings.secret_key_file:
        return Path(settings.secret_key_file)
    path = sqlite_path(settings.database_url)
    if path is None:
        return Path(POSTGRES_KEY_FILE)
    if path == ":memory:":
        return None
    return Path(path).with_suffix(".key")


async def load_secret_key(settings: Settings, database: Database) -> bytes:
    """The key, from the environment or the key file; the file is made on a database with no
    hashes yet, or from the key a former version kept in the database."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = key_file(settings)
    legacy = await legacy_secret_key(database)
    if path is None:
        return (legacy or secrets.token_hex(32)).encode()
    kept = _on_file(path, lambda: read_key_file(path) if path.exists() else None)
    if kept is not None:
        if legacy is not None and legacy != kept:
            raise MissingKeyFile(
                f"the key file {path} does not hold the key this database's hashes were made"
                " with: restore the right one, or move this one away to let the bot move the"
                " database's own key there"
            )
        return kept.encode()
    if legacy is None and await holds_hashes(database):
        raise MissingKeyFile(
            f"the key file {path} is missing but the database holds hashes made with it:"
            " restore it from your backup (or set SECRET_KEY to its content), then start again"
        )
    made = legacy or secrets.token_hex(32)
    return _on_file(path, lambda: write_key_file(path, made)).encode()


def _on_file(path: Path, action: Callable[[], T]) -> T:
    """A key file that cannot be read or written is a setting to fix: one line, status 2."""
    try:
        return action()
    except (OSError, UnicodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not a key (not ASCII text)"
        raise MissingKeyFile(
            f"cannot use the key file {path}: {reason or error} (see SECRET_KEY_FILE)"
        ) from None


def read_key_file(path: Path) -> str:
    # Restored from a backup with looser rights, say.
    if path.is_file() and path.stat().st_mode & 0o077:
        path.chmod(0o600)
        log.warning("the key file %s was readable by others: now by its owner only", path)
    key = path.read_text(encoding="ascii").strip()
    if not key:
        raise MissingKeyFile(f"the key file {path} is empty: restore it from your backup")
    return key


def write_key_file(path: Path, key: str) -> str:
    """Writes the key readable by its owner only, atomically: two processes starting together
    on a new database end up with one key, whichever wrote it first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as out:
            out.write(key + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:
            return read_key_file(path)
    finally:
        draft.unlink(missing_ok=True)
    return key
